"""Inference with a trained Stage 2 run: per-point probabilities for a query.

``Predictor.from_checkpoint(path)`` restores the network, W, W_img and the run's config from a
Lightning ``.ckpt`` alone. At inference q comes from the same fusion as in training
(filter_views -> Token-for-Query on the query's views), t = W q, and the probability of a point
is sigmoid(f3D_p · t) of its voxel; ``threshold`` (default 0.5) binarises it.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mllm3d.shared.errors import BadInputError
from mllm3d.shared.store import QueryRecord, StoredScene
from mllm3d.stage2_train3d.config import TrainConfig, config_from_dict
from mllm3d.stage2_train3d.fusion import FusionConfig, query_weights
from mllm3d.stage2_train3d.model import Stage2Net, build_network
from mllm3d.stage2_train3d.voxelize import input_features, voxelize

__all__ = ["Predictor", "load_checkpoint", "resolve_checkpoint"]


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint file, or a run directory of ``mllm3d train`` -> the checkpoint that run selected.

    Label-free by default: a run's selected checkpoint is its last one unless it was trained with
    ``--select-by val-gt-miou``; a run directory without result.json stands for its ``last.ckpt``
    (a ``best-*.ckpt`` only when no last.ckpt exists)."""
    p = Path(path)
    if not p.is_dir():
        return p
    result = p / "result.json"
    if result.is_file():
        try:
            res = json.loads(result.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise BadInputError(f"{result}: not valid JSON ({exc})") from exc
        for key in ("checkpoint", "last_checkpoint"):  # "checkpoint" = the selected one (result.json v2)
            if not res.get(key):
                continue
            # as recorded, else by file name in this directory (the run directory was moved)
            for ckpt in (Path(res[key]), p / "checkpoints" / Path(res[key]).name):
                if ckpt.is_file():
                    return ckpt
    last = p / "checkpoints" / "last.ckpt"
    if last.is_file():
        return last
    best = sorted((p / "checkpoints").glob("best-*.ckpt"))
    if best:
        return best[-1]
    raise BadInputError(f"{p}: a directory without result.json or checkpoints/*.ckpt (not a Stage 2 run directory)")


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> tuple[TrainConfig, Stage2Net]:
    """(config, network with weights) from a Stage 2 Lightning checkpoint or a run directory."""
    cfg, net, _ = load_checkpoint_with_scenes(path, device)
    return cfg, net


def load_checkpoint_with_scenes(
    path: str | Path, device: str | torch.device = "cpu"
) -> tuple[TrainConfig, Stage2Net, list[str]]:
    """:func:`load_checkpoint` plus the scene ids the checkpoint was trained on ([] for older checkpoints)."""
    p = resolve_checkpoint(path)
    if not p.is_file():
        raise BadInputError(f"{p}: checkpoint not found")
    try:
        ckpt = torch.load(p, map_location="cpu", weights_only=False)  # our own Lightning checkpoint
    except Exception as exc:  # noqa: BLE001 - report any unpickling failure with the file name
        raise BadInputError(f"{p}: not a readable PyTorch checkpoint: {exc}") from exc
    hp = ckpt.get("hyper_parameters", {}) if isinstance(ckpt, dict) else {}
    if "config" not in hp or "state_dict" not in ckpt:
        raise BadInputError(f"{p}: not a Stage 2 checkpoint (no hyper_parameters.config / state_dict)")
    cfg = config_from_dict(hp["config"], where=f"{p}:hyper_parameters.config")
    net = build_network(cfg.model)
    state = {k.removeprefix("net."): v for k, v in ckpt["state_dict"].items() if k.startswith("net.")}
    missing, unexpected = net.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise BadInputError(f"{p}: weights do not match the config's network (missing {missing[:5]}, unexpected {unexpected[:5]})")
    net.to(device).eval()
    return cfg, net, [str(x) for x in ckpt.get("train_scenes", [])]


class Predictor:
    """Per-point query probabilities from a trained network."""

    def __init__(self, net: Stage2Net, config: TrainConfig, device: str | torch.device = "cpu") -> None:
        self.net = net.to(device).eval()
        self.config = config
        self.device = torch.device(device)
        self.threshold: float = float(config.threshold)
        self.train_scenes: list[str] = []  # the scenes the checkpoint was trained on, when it records them
        # the last cloud's per-voxel semantic features: f3D does not depend on the query, so the queries of
        # one scene (evaluation, several methods sharing this predictor) run the backbone once. The network is
        # frozen here: to use other weights, build another Predictor (changing self.net would serve stale f3D)
        self._cloud: tuple[bytes, torch.Tensor, np.ndarray] | None = None

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str = "cpu") -> Predictor:
        cfg, net, scenes = load_checkpoint_with_scenes(path, device)
        pred = cls(net, cfg, device)
        pred.train_scenes = scenes
        return pred

    @property
    def fusion_config(self) -> FusionConfig:
        return self.config.fusion

    def query_embedding(self, record: QueryRecord) -> np.ndarray:
        """q of the query, from its views exactly as in training."""
        q, _, _, _ = query_weights(record, self.config.fusion)
        return q

    def predict(self, scene: StoredScene, record: QueryRecord) -> np.ndarray:
        """(N,) float32 probabilities of the scene's points for the query."""
        return self.predict_points(scene.points, scene.colors, self.query_embedding(record))

    @torch.no_grad()
    def predict_points(self, points: np.ndarray, colors: np.ndarray, q: np.ndarray) -> np.ndarray:
        """(N,) float32 probabilities for a point cloud and a query embedding q (D,)."""
        pts = np.asarray(points, dtype=np.float32)
        if pts.ndim != 2 or pts.shape[1] != 3 or np.asarray(colors).shape != pts.shape:
            raise BadInputError(f"predict_points: points {pts.shape} and colors {np.asarray(colors).shape} must be (N,3)")
        q = np.asarray(q, dtype=np.float32).reshape(-1)
        if q.shape[0] != self.config.model.query_dim:
            raise BadInputError(f"predict_points: q has {q.shape[0]} dims, the model expects {self.config.model.query_dim}")
        if pts.shape[0] == 0:
            return np.zeros(0, np.float32)
        semantic, inverse = self._semantic_features(pts, colors)
        t = self.net.project_query(torch.from_numpy(q).to(self.device))
        prob = torch.sigmoid(self.net.score(semantic, t[None])[:, 0]).float().cpu().numpy()
        return prob[inverse].astype(np.float32)

    def _semantic_features(self, pts: np.ndarray, colors: np.ndarray) -> tuple[torch.Tensor, np.ndarray]:
        """Per-voxel f3D of a cloud and its point -> voxel map; the last cloud's are reused (keyed by a hash of
        its points and colours, so a changed cloud is never served stale features)."""
        digest = hashlib.blake2b(digest_size=16)
        for a in (np.ascontiguousarray(pts), np.ascontiguousarray(colors)):
            digest.update(f"{a.dtype}{a.shape}".encode())
            digest.update(a.data)
        key = digest.digest()
        if self._cloud is not None and self._cloud[0] == key:
            return self._cloud[1], self._cloud[2]
        vox = voxelize(pts, self.config.data.voxel_size)
        m = self.config.model
        feats = input_features(pts, colors, vox, m.use_normals, m.use_height, self.config.data.up_axis)
        coords = np.concatenate([np.zeros((vox.num_voxels, 1), np.int32), vox.coords], axis=1)
        out = self.net(
            torch.from_numpy(coords).to(self.device), torch.from_numpy(feats).to(self.device), batch_size=1
        )
        self._cloud = (key, out["semantic"], vox.inverse)
        return out["semantic"], vox.inverse

    def describe(self) -> dict[str, Any]:
        return {"threshold": self.threshold, "voxel_size": self.config.data.voxel_size, "name": self.config.name}
