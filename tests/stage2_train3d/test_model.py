"""The spconv U-Net and the Stage 2 network: shapes, voxel order, CPU algorithm, W gradients."""

from __future__ import annotations

import numpy as np
import pytest
import spconv.pytorch as spconv
import torch
from spconv.pytorch import ConvAlgo

from mllm3d.stage2_train3d.config import ModelConfig, load_config
from mllm3d.stage2_train3d.model import SparseUNet, build_network

TINY = ModelConfig(stem=8, down=[8, 16], up=[16, 8], feature_dim=12, query_dim=6, image_feature_dim=5,
                   use_height=False, logit="dot")


def _cloud(n: int = 600, seed: int = 0, batch: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(seed)
    parts = []
    for b in range(batch):
        c = np.unique(rng.integers(0, 14, size=(n, 3)), axis=0)
        parts.append(np.concatenate([np.full((len(c), 1), b), c], axis=1))
    coords = np.concatenate(parts).astype(np.int32)
    return torch.from_numpy(coords), torch.randn(len(coords), 3, generator=torch.Generator().manual_seed(seed))


def test_tiny_unet_output_shapes_and_voxel_order():
    torch.manual_seed(0)
    net = build_network(TINY)
    coords, feats = _cloud()
    out = net(coords, feats, batch_size=2)
    assert out["semantic"].shape == (len(coords), 12)
    assert out["local"].shape == (len(coords), 12)
    # the decoder's inverse convs give back exactly the input voxels, in the input order
    x = spconv.SparseConvTensor(feats, coords, net.spatial_shape(coords), 2)
    y = net.backbone(x)
    assert torch.equal(y.indices, coords)
    assert y.features.shape == (len(coords), 8)


def test_paper_shape_is_minkunet14a():
    net = SparseUNet(3, load_config("paper").model)
    widths = [seq[0].out_channels for seq in net.down]
    assert net.stem[0].out_channels == 32 and widths == [32, 64, 128, 256]
    assert [seq[0].out_channels for seq in net.up] == [128, 128, 96, 96]
    assert net.out_channels == 96
    # decoder blocks take up + skip widths: 128+128, 128+64, 96+32, 96+32(stem)
    assert [dec[0].conv1.in_channels for dec in net.dec] == [256, 192, 128, 128]
    bns = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm1d)]
    assert bns and all(m.momentum == pytest.approx(0.05) for m in bns)


def test_cpu_forward_uses_native_algorithm():
    net = build_network(TINY)
    coords, feats = _cloud(200, batch=1)
    net(coords, feats, batch_size=1)
    convs = [m for m in net.modules() if isinstance(m, spconv.conv.SparseConvolution)]
    assert convs and all(m.algo == ConvAlgo.Native for m in convs)


def test_query_and_image_projections_get_gradients():
    torch.manual_seed(0)
    net = build_network(TINY)
    coords, feats = _cloud(300, batch=1)
    out = net(coords, feats, batch_size=1)
    t = net.project_query(torch.randn(6))
    f2d = net.project_image(torch.randn(4, 5))
    loss = (out["semantic"] @ t).sigmoid().mean() + (out["local"][:4] * f2d).sum()
    loss.backward()
    for p in (net.query_proj.weight, net.query_proj.bias, net.image_proj.weight):
        assert p.grad is not None and p.grad.abs().sum() > 0
    names = {n for n, _ in net.named_parameters()}
    assert {"query_proj.weight", "image_proj.weight", "semantic_head.weight", "local_head.weight"} <= names
    assert "query_proj.weight" in net.state_dict()


def test_wrong_input_width_is_reported():
    net = build_network(TINY)
    coords, _ = _cloud(100, batch=1)
    with pytest.raises(ValueError, match="3 input channels, got 6"):
        net(coords, torch.zeros(len(coords), 6), batch_size=1)


def test_cosine_logit_is_a_scaled_cosine_with_learned_scale_and_bias():
    from dataclasses import replace

    torch.manual_seed(0)
    net = build_network(replace(TINY, logit="cosine", logit_scale=5.0, logit_bias=-2.0))
    f, t = torch.randn(7, 12), torch.randn(3, 12)
    s = net.score(f, t)
    cos = torch.nn.functional.cosine_similarity(f[:, None], t[None], dim=-1)
    assert s.shape == (7, 3) and torch.allclose(s, 5.0 * cos - 2.0, atol=1e-5)
    assert torch.allclose(net.score(3 * f, t), s, atol=1e-5)  # scale-free in f
    # scale and bias are parameters: optimised, and in the checkpoint
    names = dict(net.named_parameters())
    assert {"log_logit_scale", "logit_bias"} <= set(names) and "logit_bias" in net.state_dict()
    s.sum().backward()
    assert names["log_logit_scale"].grad is not None and names["logit_bias"].grad is not None
    # the paper's dot product stays the default
    dot = build_network(TINY)
    assert torch.allclose(dot.score(f, t), f @ t.T) and "logit_bias" not in dot.state_dict()
