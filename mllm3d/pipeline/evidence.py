"""Test-time evidence fusion: the trained network's scores combined with the test views' own masks.

At inference the method already runs the 2D MLLM on the test scene's views; the paper's inference uses
only their ``[SEG]`` tokens (q). This mode also uses their masks, with a rule fixed before any scoring
(docs/evidence_fusion.md; no ground truth chooses anything):

1. **Evidence.** Fuse the kept views' masks onto the points as in training (``fusion.fuse_query``):
   ``seen`` (a weighted view sees the point) and ``vote`` (the weighted share of views that say target).
   On seen points the views' vote is independent evidence: ``z = logit(p_net) + seen * logit(clip(vote,
   0.1, 0.9))`` (a product of experts in which a unanimous vote counts as at most 9:1 odds); unseen points
   keep the network's score. A point is positive when ``z >= logit(threshold)``.
2. **Which instance.** The 2D model did the spatial reasoning ("the chair closest to the window"); the
   network completes the object but segments by category. So: connected components of the positive
   points (26-neighbour voxels at the checkpoint's voxel size), and keep the components that contain a
   point the views voted for (``seen & vote >= vote_threshold``). When no component is touched (the
   target was never seen), the network's mask is kept as it is.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mllm3d.shared.store import QueryRecord, StoredScene
from mllm3d.stage2_train3d.fusion import FusionConfig, fuse_query

VOTE_CLIP = 0.1  # a unanimous vote is worth at most (1 - VOTE_CLIP) / VOTE_CLIP = 9:1 odds


def _logit(p: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64), eps, 1.0 - eps)
    return np.log(p) - np.log1p(-p)


def combine_scores(p_net: np.ndarray, seen: np.ndarray, vote: np.ndarray) -> np.ndarray:
    """(N,) combined logit: the network's, plus the clipped vote's logit on seen points."""
    z = _logit(p_net)
    v = np.clip(np.asarray(vote, dtype=np.float64), VOTE_CLIP, 1.0 - VOTE_CLIP)
    return z + np.where(np.asarray(seen, bool), _logit(v), 0.0)


def voxel_components(points: np.ndarray, voxel_size: float) -> np.ndarray:
    """(N,) int component label of each point: points whose voxels touch (26-neighbourhood) share one."""
    n = len(points)
    if n == 0:
        return np.zeros(0, np.int64)
    vox = np.floor(np.asarray(points, np.float64) / float(voxel_size)).astype(np.int64)
    vox -= vox.min(axis=0) - 1  # >= 1, so every neighbour offset stays >= 0
    dims = vox.max(axis=0) + 2
    key = (vox[:, 0] * dims[1] + vox[:, 1]) * dims[2] + vox[:, 2]
    uniq, inverse = np.unique(key, return_inverse=True)
    coords = np.stack(np.unravel_index(uniq, tuple(dims)), axis=1)
    src, dst = [], []
    offsets = [(a, b, c) for a in (-1, 0, 1) for b in (-1, 0, 1) for c in (-1, 0, 1) if (a, b, c) > (0, 0, 0)]
    for off in offsets:  # 13 forward offsets: each undirected edge once
        nb = coords + np.asarray(off)
        nkey = (nb[:, 0] * dims[1] + nb[:, 1]) * dims[2] + nb[:, 2]
        j = np.searchsorted(uniq, nkey)
        j = np.minimum(j, len(uniq) - 1)
        hit = uniq[j] == nkey
        src.append(np.nonzero(hit)[0])
        dst.append(j[hit])
    a, b = np.concatenate(src), np.concatenate(dst)
    labels = np.arange(len(uniq))
    while True:  # min-label propagation with pointer jumping: converges in O(log diameter) sweeps
        low = np.minimum(labels[a], labels[b])
        new = labels.copy()
        np.minimum.at(new, a, low)
        np.minimum.at(new, b, low)
        new = new[new]
        if np.array_equal(new, labels):
            break
        labels = new
    _, dense = np.unique(labels, return_inverse=True)
    return dense[inverse]


def resolve_instances(mask: np.ndarray, points: np.ndarray, anchors: np.ndarray, voxel_size: float) -> np.ndarray:
    """``mask`` reduced to its connected components that contain an anchor point (unchanged if none does)."""
    mask = np.asarray(mask, bool)
    idx = np.nonzero(mask)[0]
    if len(idx) == 0:
        return mask
    comp = voxel_components(points[idx], voxel_size)
    touched = np.unique(comp[np.asarray(anchors, bool)[idx]])
    if len(touched) == 0:
        return mask
    out = np.zeros_like(mask)
    out[idx[np.isin(comp, touched)]] = True
    return out


@dataclass
class EvidenceFusionMethod:
    """An evaluation method (see mllm3d.pipeline.evaluate.Method): the network plus the test views' masks."""

    name: str
    predictor: Any  # has predict(scene, record) -> (N,) probabilities, threshold, config (TrainConfig)
    fusion: FusionConfig | None = None  # None: the checkpoint's own fusion settings
    voxel_size: float | None = None  # None: the checkpoint's data.voxel_size
    checkpoint: str = ""
    last: dict[str, Any] = field(default_factory=dict)  # what the last call decided (for inspection)

    def predict_mask(self, scene: StoredScene, record: QueryRecord) -> np.ndarray:
        cfg = getattr(self.predictor, "config", None)
        fusion = self.fusion or getattr(cfg, "fusion", None) or FusionConfig()
        voxel = float(self.voxel_size or getattr(getattr(cfg, "data", None), "voxel_size", 0.1))
        p_net = np.asarray(self.predictor.predict(scene, record), dtype=np.float64)
        fused = fuse_query(scene, record, fusion)
        z = combine_scores(p_net, fused.seen, fused.prob)
        mask = z >= float(_logit(np.asarray(self.predictor.threshold)))
        anchors = fused.seen & (fused.prob >= fusion.vote_threshold)
        out = resolve_instances(mask, scene.points, anchors, voxel)
        self.last = {"combined": int(mask.sum()), "kept": int(out.sum()), "anchors": int(anchors.sum())}
        return out
