"""The LightningModule: one shared ``model_step`` for train/val, SGD + cosine, val metrics.

The network (backbone, heads, W, W_img) is built outside and injected; it is the module's only
child, so the optimizer and the checkpoint both cover every projection.
"""

from __future__ import annotations

import math
import sys
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch

from mllm3d.shared.errors import Mllm3dError
from mllm3d.shared.metrics import point_iou, summarize
from mllm3d.stage2_train3d.config import TrainConfig, config_from_dict
from mllm3d.stage2_train3d.losses import (
    fused_loss,
    label_loss,
    mean_pairwise_cosine,
    mms_loss,
    spatial_contrastive_loss,
    spatial_prototype_loss,
    spatial_voxel_loss,
    voxel_feature_means,
)
from mllm3d.stage2_train3d.model import Stage2Net

TRAIN_AUDIT_EVENT = "mllm3d.train.batch_start"  # (epoch, batch_idx) before each training batch


class NonFiniteLossError(Mllm3dError, FloatingPointError):
    """The loss became NaN/inf; the message names the batch's scene/query pairs."""


class Stage2Module(pl.LightningModule):
    """Trains ``net`` on batches from :class:`~mllm3d.stage2_train3d.datamodule.StoreDataModule`."""

    def __init__(self, net: Stage2Net, config: dict[str, Any] | TrainConfig) -> None:
        super().__init__()
        cfg = config if isinstance(config, TrainConfig) else config_from_dict(config)
        self.cfg = cfg
        self.net = net
        self.save_hyperparameters({"config": cfg.to_dict()}, logger=False)
        if cfg.loss.spatial_form != "paper":  # the other forms are bias-free; fixed also freezes the weight
            net.image_proj.bias.requires_grad_(False)
            with torch.no_grad():
                net.image_proj.bias.zero_()
            net.image_proj.weight.requires_grad_(cfg.loss.spatial_form != "fixed")
        self._val_ious: list[float] = []
        self._val_proj_ious: list[float] = []
        # DDP needs every parameter in every step's graph; set in setup() when world_size > 1
        self.anchor_unused = False
        self.train_scenes: list[str] = []  # saved in the checkpoint: eval warns when it scores them

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["train_scenes"] = list(self.train_scenes)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.train_scenes = list(checkpoint.get("train_scenes", self.train_scenes))

    def setup(self, stage: str) -> None:
        self.anchor_unused = self.trainer.world_size > 1

    # ------------------------------------------------------------------ forward pieces
    def forward(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """Per-voxel features and the (query, point) logits s = f3D_{voxel(p)} · W q of every query.

        ``qp_logit`` follows the batch's per-(query, point) layout (item blocks, query-major).
        """
        out = self.net(batch["coords"], batch["feats"], int(batch["batch_size"]))
        sem = out["semantic"]
        t = self.net.project_query(batch["q"])  # (Q,F)
        vo, po, qo = batch["voxel_offset"].tolist(), batch["point_offset"].tolist(), batch["query_offset"].tolist()
        blocks = []
        for b in range(int(batch["batch_size"])):
            vox_logit = self.net.score(sem[vo[b] : vo[b + 1]], t[qo[b] : qo[b + 1]])  # (M_b, Q_b)
            inv = batch["point_voxel"][po[b] : po[b + 1]] - vo[b]
            blocks.append(vox_logit[inv].T.reshape(-1))  # (Q_b * N_b,), query-major
        out["qp_logit"] = torch.cat(blocks) if blocks else sem.new_zeros(0)
        return out

    def _pair_logits(self, batch: dict[str, Any], out: dict[str, torch.Tensor]) -> torch.Tensor:
        """s_pi of every pair: f3D_p·Wq with Token-for-Query, f3D_p·Wê_i (the view's own embedding) without."""
        if self.cfg.fusion.token_for_query or batch["pair_point"].numel() == 0:
            return out["qp_logit"][batch["pair_qp"]]
        t_view = self.net.project_query(batch["view_emb"])  # (V,F)
        vox = batch["point_voxel"][batch["pair_point"]]
        # an (M, V) logit table, then one gather per pair: no (P, F) copies (P ~ 10-50x M with many queries)
        return self.net.score(out["semantic"], t_view)[vox, batch["pair_view"]]

    def _spatial(self, batch: dict[str, Any], out: dict[str, torch.Tensor]) -> tuple[torch.Tensor, str]:
        mode = self.cfg.loss.spatial_mode
        has_f2d = batch["f2d"].numel() > 0
        if mode == "features" or (mode == "auto" and has_f2d):
            if not has_f2d:  # this batch's queries carry no image features
                return out["local"].sum() * 0.0, "features"
            return self._spatial_features(batch, out), "features"
        pair_voxel = batch["point_voxel"][batch["pair_point"]]
        positive = batch["pair_target"] > 0.5
        n_views = int(batch["view_offset"][-1])
        return spatial_prototype_loss(out["local"], pair_voxel, batch["pair_view"], positive, n_views), "prototype"

    def _spatial_features(self, batch: dict[str, Any], out: dict[str, torch.Tensor]) -> torch.Tensor:
        """The feature L_spatial in ``loss.spatial_form``; image features are averaged per voxel (per
        (voxel, view) for the contrastive form) before W_img, so W_img runs once per voxel, not per pair."""
        form = self.cfg.loss.spatial_form
        local = out["local"]
        idx = batch["f2d_pair"]
        keep = batch["pair_target"][idx] > 0.5  # image features are sampled on positive pairs
        pair_voxel = batch["point_voxel"][batch["pair_point"][idx[keep]]]
        f2d = batch["f2d"][keep].to(local.dtype)
        m = local.shape[0]
        if form == "contrastive":
            key = batch["pair_view"][idx[keep]] * m + pair_voxel  # view-major: one group per (voxel, view)
            groups, inverse = torch.unique(key, return_inverse=True)  # compact: only the groups that occur
            _, mean_f, _ = voxel_feature_means(f2d, inverse, len(groups))
            target = self.net.project_image(mean_f, form)
            return spatial_contrastive_loss(local[groups % m], target, torch.div(groups, m, rounding_mode="floor"))
        used, mean_f, counts = voxel_feature_means(f2d, pair_voxel, m)
        return spatial_voxel_loss(local[used], self.net.project_image(mean_f, form), counts)

    @torch.no_grad()
    def _local_feature_cosine(self, batch: dict[str, Any], out: dict[str, torch.Tensor]) -> torch.Tensor:
        """Collapse diagnostic: mean pairwise cosine of the local-head features over each scene's voxels,
        averaged over the batch's scenes (logged as ``*/local_cos``; ~1 = collapsed to one direction)."""
        vo = batch["voxel_offset"].tolist()
        vals = [mean_pairwise_cosine(out["local"][vo[b] : vo[b + 1]]) for b in range(int(batch["batch_size"]))]
        return torch.stack(vals).mean() if vals else out["local"].new_zeros(())

    # ------------------------------------------------------------------ shared step
    def model_step(self, batch: dict[str, Any], stage: str) -> dict[str, Any]:
        """Forward + losses for one batch; raises NonFiniteLossError on a NaN/inf loss."""
        cfg = self.cfg.loss
        out = self.forward(batch)
        if cfg.target == "fused":
            mms = fused_loss(out["qp_logit"], batch["fused_prob"], batch["seen"])
        else:
            weights = batch["pair_weight"] if cfg.pair_weighting == "omega" else None
            mms = mms_loss(self._pair_logits(batch, out), batch["pair_target"], weights, cfg.positive_weight)
        loss = mms
        parts: dict[str, torch.Tensor] = {"mms": mms.detach()}
        if cfg.spatial and cfg.spatial_weight > 0:
            spatial, mode = self._spatial(batch, out)
            loss = loss + cfg.spatial_weight * spatial
            parts["spatial"] = spatial.detach()
            parts["spatial_is_features"] = torch.tensor(float(mode == "features"))
        parts["local_cos"] = self._local_feature_cosine(batch, out)
        if cfg.with_labels:
            lab = label_loss(out["qp_logit"], batch["gt"], batch["qp_has_gt"])
            loss = loss + cfg.label_weight * lab
            parts["label"] = lab.detach()
        if self.anchor_unused:
            # some variants leave parameters out of the loss (no spatial loss: local head and W_img;
            # prototype mode or a batch without image features: W_img); a zero-valued term keeps them
            # in the graph so DDP's gradient reducer does not stop (find_unused_parameters not needed)
            loss = loss + 0.0 * sum(p.reshape(-1)[0] for p in self.net.parameters() if p.requires_grad)
        if not torch.isfinite(loss):
            pairs = ", ".join(f"{s}/{q}" for s, q in zip(batch["query_scene_ids"], batch["query_ids"], strict=True))
            detail = ", ".join(f"{k}={float(v):.4g}" for k, v in parts.items())
            raise NonFiniteLossError(
                f"non-finite {stage} loss {float(loss.detach())} ({detail}) at epoch {self.current_epoch}, "
                f"global step {self.global_step}, in the batch of scene/query: {pairs}. "
                "Check these queries' stored embeddings/features, or lower optim.lr / set trainer.gradient_clip_val."
            )
        return {"loss": loss, "parts": parts, "qp_logit": out["qp_logit"].detach()}

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        # An audit event (``sys.audit``, no cost without a hook): the tests' fault injection
        # (tests/fault_injection/) kills training at an exact (epoch, batch) from here.
        sys.audit(TRAIN_AUDIT_EVENT, self.current_epoch, batch_idx)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        res = self.model_step(batch, "train")
        b = int(batch["num_queries"])
        self.log("train/loss", res["loss"].detach(), prog_bar=True, batch_size=b)
        for k, v in res["parts"].items():
            self.log(f"train/{k}", v, batch_size=b)
        return res["loss"]

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        res = self.model_step(batch, "val")
        self.log("val/loss", res["loss"].detach(), batch_size=int(batch["num_queries"]), sync_dist=True)
        prob = torch.sigmoid(res["qp_logit"]).float().cpu().numpy()
        gt = batch["gt"].cpu().numpy() > 0.5
        fused = batch["fused_prob"].cpu().numpy()
        seen = batch["seen"].cpu().numpy()
        has_gt = batch["has_gt"].cpu().numpy()
        po, qo, qpo = (batch[k].tolist() for k in ("point_offset", "query_offset", "qp_offset"))
        for b in range(int(batch["batch_size"])):
            n = po[b + 1] - po[b]
            for j in range(qo[b + 1] - qo[b]):
                if not has_gt[qo[b] + j]:
                    continue
                sl = slice(qpo[b] + j * n, qpo[b] + (j + 1) * n)
                self._val_ious.append(point_iou(prob[sl] >= self.cfg.threshold, gt[sl]))
                proj = seen[sl] & (fused[sl] >= self.cfg.fusion.vote_threshold)
                self._val_proj_ious.append(point_iou(proj, gt[sl]))

    def on_validation_epoch_start(self) -> None:
        self._val_ious, self._val_proj_ious = [], []

    def _gather(self, values: list[float]) -> list[float]:
        """All ranks' per-query values (variable counts: padded with NaN for all_gather)."""
        local = torch.tensor(values, dtype=torch.float64, device=self.device)
        if self.trainer.world_size <= 1:
            return local.tolist()
        n_max = int(self.all_gather(torch.tensor(len(values), device=self.device)).max())
        padded = torch.full((n_max,), math.nan, dtype=torch.float64, device=self.device)
        padded[: len(values)] = local
        allv = self.all_gather(padded).reshape(-1)
        return allv[~torch.isnan(allv)].tolist()

    def on_validation_epoch_end(self) -> None:
        ious = self._gather(self._val_ious)
        proj = self._gather(self._val_proj_ious)
        m = summarize(ious)
        mp = summarize(proj)
        # NaN when no val query has ground truth (logged as-is; checkpoints then keep the last)
        self.log("val/miou", float(m["miou"]), prog_bar=True)
        self.log("val/acc25", float(m["acc25"]))
        self.log("val/acc50", float(m["acc50"]))
        self.log("val/n", float(m["n"]))
        self.log("val/proj_miou", float(mp["miou"]))
        self.log("val/proj_acc25", float(mp["acc25"]))
        self.log("val/proj_acc50", float(mp["acc50"]))

    # ------------------------------------------------------------------ optimisation
    def configure_optimizers(self) -> dict[str, Any]:
        o = self.cfg.optim
        params = [p for p in self.net.parameters() if p.requires_grad]  # a fixed W_img is not optimised
        if o.optimizer == "adamw":
            opt: torch.optim.Optimizer = torch.optim.AdamW(params, lr=o.lr, weight_decay=o.weight_decay)
        else:
            opt = torch.optim.SGD(
                params, lr=o.lr, momentum=o.momentum, dampening=o.dampening,
                weight_decay=o.weight_decay,
            )
        if o.scheduler == "none":
            return {"optimizer": opt}
        if o.scheduler_interval == "step":
            total = self.trainer.estimated_stepping_batches
            t_max = max(1, int(total)) if np.isfinite(total) else max(1, o.epochs)
        else:
            t_max = max(1, o.epochs)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=t_max, eta_min=o.min_lr)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": o.scheduler_interval}}
