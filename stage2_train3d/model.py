"""The Stage 2 network: an spconv sparse U-Net (MinkUNet14A shape by default) with two 512-d heads,
plus the learned projections of the [SEG] query (W: 256->512) and of the 2D image features (W_img).

Everything trainable lives in :class:`Stage2Net`, so ``net.parameters()`` (the optimizer) and
``net.state_dict()`` (the checkpoint) include W and W_img — unlike the official code (docs/method.md, bug 4).

spconv-cu120 on CPU needs ``ConvAlgo.Native``; on GPU its default (MaskImplicitGemm) is faster.
The algorithm is chosen from the device of the input at every forward (weights are stored in
the same KRSC layout for both, so a checkpoint moves freely between CPU and GPU).
"""

from __future__ import annotations

import numpy as np
import spconv.pytorch as spconv
import torch
from spconv.pytorch import ConvAlgo
from torch import nn

from mllm3d.stage2_train3d.config import ModelConfig
from mllm3d.stage2_train3d.voxelize import input_channels


def _bn(channels: int, momentum: float) -> nn.BatchNorm1d:
    return nn.BatchNorm1d(channels, eps=1e-5, momentum=momentum)


class BasicBlock(spconv.SparseModule):
    """ResNet basic block of two 3x3x3 submanifold convs (1x1 projection when widths differ)."""

    def __init__(self, cin: int, cout: int, indice_key: str, bn_momentum: float) -> None:
        super().__init__()
        self.conv1 = spconv.SubMConv3d(cin, cout, 3, padding=1, bias=False, indice_key=indice_key)
        self.bn1 = _bn(cout, bn_momentum)
        self.conv2 = spconv.SubMConv3d(cout, cout, 3, padding=1, bias=False, indice_key=indice_key)
        self.bn2 = _bn(cout, bn_momentum)
        self.proj = None if cin == cout else nn.Sequential(nn.Linear(cin, cout, bias=False), _bn(cout, bn_momentum))
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: spconv.SparseConvTensor) -> spconv.SparseConvTensor:
        identity = x.features if self.proj is None else self.proj(x.features)
        out = self.conv1(x)
        out = out.replace_feature(self.relu(self.bn1(out.features)))
        out = self.conv2(out)
        return out.replace_feature(self.relu(self.bn2(out.features) + identity))


class SparseUNet(nn.Module):
    """MinkUNet-style sparse U-Net.

    stem (submanifold conv) -> for each level: stride-2 conv + ``blocks`` BasicBlocks ->
    for each level back up: inverse conv (restores the exact finer voxel set), concat skip,
    ``blocks`` BasicBlocks. With the defaults (stem 32, down 32/64/128/256, up 128/128/96/96,
    1 block) this is MinkUNet14A; output width = ``up[-1]``.
    """

    def __init__(self, in_channels: int, cfg: ModelConfig) -> None:
        super().__init__()
        m = cfg.bn_momentum
        levels = len(cfg.down)
        self.levels = levels
        stem_key = "subm0" if cfg.stem_kernel == 3 else "stem"
        self.stem = spconv.SparseSequential(
            spconv.SubMConv3d(
                in_channels, cfg.stem, cfg.stem_kernel, padding=cfg.stem_kernel // 2, bias=False, indice_key=stem_key
            ),
            _bn(cfg.stem, m),
            nn.ReLU(inplace=True),
        )
        self.down = nn.ModuleList()
        self.enc = nn.ModuleList()
        c = cfg.stem
        skip_channels = [cfg.stem]
        for i, cout in enumerate(cfg.down):
            self.down.append(
                spconv.SparseSequential(
                    spconv.SparseConv3d(c, cout, 2, stride=2, bias=False, indice_key=f"down{i}"),
                    _bn(cout, m),
                    nn.ReLU(inplace=True),
                )
            )
            self.enc.append(
                spconv.SparseSequential(
                    *[BasicBlock(cout, cout, f"subm{i + 1}", m) for _ in range(cfg.blocks)]
                )
            )
            c = cout
            skip_channels.append(cout)
        self.up = nn.ModuleList()
        self.dec = nn.ModuleList()
        for j, cout in enumerate(cfg.up):
            level = levels - 1 - j  # resolution level this stage returns to
            self.up.append(
                spconv.SparseSequential(
                    spconv.SparseInverseConv3d(c, cout, 2, bias=False, indice_key=f"down{level}"),
                    _bn(cout, m),
                    nn.ReLU(inplace=True),
                )
            )
            cin = cout + skip_channels[level]
            blocks = [BasicBlock(cin, cout, f"subm{level}", m)]
            blocks += [BasicBlock(cout, cout, f"subm{level}", m) for _ in range(cfg.blocks - 1)]
            self.dec.append(spconv.SparseSequential(*blocks))
            c = cout
        self.out_channels = c

    def forward(self, x: spconv.SparseConvTensor) -> spconv.SparseConvTensor:
        x = self.stem(x)
        skips = [x]
        for down, enc in zip(self.down, self.enc, strict=True):
            x = enc(down(x))
            skips.append(x)
        skips.pop()  # the deepest level is x itself
        for up, dec in zip(self.up, self.dec, strict=True):
            x = up(x)
            skip = skips.pop()
            x = x.replace_feature(torch.cat([x.features, skip.features], dim=1))
            x = dec(x)
        return x


class Stage2Net(nn.Module):
    """Backbone + semantic head f3D + local head + query projection W + image projection W_img."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.in_channels = input_channels(cfg.use_normals, cfg.use_height)
        self.backbone = SparseUNet(self.in_channels, cfg)
        width = self.backbone.out_channels
        self.semantic_head = nn.Linear(width, cfg.feature_dim)  # f3D
        self.local_head = nn.Linear(width, cfg.feature_dim)  # local feature for L_spatial
        self.query_proj = nn.Linear(cfg.query_dim, cfg.feature_dim)  # W: t = W q
        self.image_proj = nn.Linear(cfg.image_feature_dim, cfg.feature_dim)  # W_img
        if cfg.logit == "cosine":  # learned temperature (log-parametrised) and bias of the cosine logit
            self.log_logit_scale = nn.Parameter(torch.tensor(float(np.log(cfg.logit_scale))))
            self.logit_bias = nn.Parameter(torch.tensor(float(cfg.logit_bias)))
        self._gpu_algo = {
            name: mod.algo for name, mod in self.named_modules() if isinstance(mod, spconv.conv.SparseConvolution)
        }
        self._algo_device: str | None = None

    def set_conv_algo(self, device: torch.device) -> None:
        """Native spconv kernels on CPU (required by spconv-cu120), spconv's defaults on CUDA."""
        kind = device.type
        if kind == self._algo_device:
            return
        for name, mod in self.named_modules():
            if isinstance(mod, spconv.conv.SparseConvolution):
                mod.algo = ConvAlgo.Native if kind != "cuda" else self._gpu_algo[name]
        self._algo_device = kind

    def spatial_shape(self, coords: torch.Tensor) -> list[int]:
        """Grid size covering the coordinates, rounded up to a multiple of 2**levels."""
        mult = 2 ** self.backbone.levels
        hi = coords[:, 1:].max(dim=0).values.tolist() if coords.shape[0] else [0, 0, 0]
        return [int(np.ceil((h + 1) / mult) * mult) for h in hi]

    def forward(self, coords: torch.Tensor, feats: torch.Tensor, batch_size: int) -> dict[str, torch.Tensor]:
        """coords (M,4) int32 [batch, x, y, z], feats (M,C) -> per-voxel ``semantic`` and ``local`` (M,D)."""
        if feats.shape[1] != self.in_channels:
            raise ValueError(f"Stage2Net expects {self.in_channels} input channels, got {feats.shape[1]}")
        self.set_conv_algo(feats.device)
        coords = coords.to(device=feats.device, dtype=torch.int32)
        x = spconv.SparseConvTensor(feats, coords, self.spatial_shape(coords), batch_size)
        out = self.backbone(x)
        # the inverse convs restore the input voxel set in the input order
        f = out.features
        return {"semantic": self.semantic_head(f), "local": self.local_head(f)}

    def project_query(self, q: torch.Tensor) -> torch.Tensor:
        """t = W q: (..., query_dim) -> (..., feature_dim)."""
        return self.query_proj(q)

    def score(self, f3d: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Point logits from semantic features (M,F) and projected queries t (Q,F) -> (M,Q); see ModelConfig.logit."""
        if self.cfg.logit == "cosine":
            f3d = nn.functional.normalize(f3d, dim=-1, eps=1e-6)
            t = nn.functional.normalize(t, dim=-1, eps=1e-6)
        s = f3d @ t.T
        if self.cfg.logit == "cosine":
            s = self.log_logit_scale.exp() * s + self.logit_bias
        return s

    def project_image(self, f2d: torch.Tensor, form: str = "paper") -> torch.Tensor:
        """W_img f2D: (..., image_feature_dim) -> (..., feature_dim) in the given ``loss.spatial_form``.

        paper: the affine map (weight and bias); fixed / contrastive: the weight alone (bias-free; ``fixed``
        is frozen by the module); normalized: the weight made orthonormal by QR (columns when
        feature_dim >= image_feature_dim, else rows), so the map keeps (or only projects) cosines.
        """
        if form == "paper":
            return self.image_proj(f2d)
        w = self.image_proj.weight  # (feature_dim, image_feature_dim)
        if form == "normalized":
            if w.shape[0] >= w.shape[1]:
                return f2d @ torch.linalg.qr(w).Q.T
            return f2d @ torch.linalg.qr(w.T).Q
        return nn.functional.linear(f2d, w)


def build_network(cfg: ModelConfig) -> Stage2Net:
    """The network from its config (called outside the LightningModule, which receives it)."""
    return Stage2Net(cfg)
