"""View filtering, Token-for-Query and multi-view label fusion (plain numpy, no torch/Lightning).

Chain for one query on one scene (docs/method.md, "Filtering and Token-for-Query", "Unprojection and fusion")::

    keep, reasons = filter_views(record, cfg)             # drop no-[SEG], low-confidence, tiny masks
    q, weights    = token_for_query(e, alpha, keep, it)   # unified query embedding + view weights
    prob, seen    = fuse_labels(N, corr, masks, weights)  # weighted average of the views' votes

The 2D-projection baseline (ablation row "2D projection only") predicts
``fused.seen & (fused.prob >= cfg.vote_threshold)``.

Token-for-Query (our resolution of the paper's circular definition; [D] in docs/method.md)
------------------------------------------------------------------------------------------
With ê_i = e_i / ||e_i|| and α_i the view's confidence (SAM predicted IoU, clipped to >= 0)::

    q⁰      = Σ_kept α_i ê_i / Σ_kept α_i                   (confidence-weighted mean)
    ω_i^t   = α_i · max(0, ê_i · q^{t-1}) / Σ_j α_j · max(0, ê_j · q^{t-1})   (kept views; 0 elsewhere)
    q^t     = Σ_i ω_i^t ê_i

run for ``iterations`` fixed-point steps. If every product α_i·max(0, ê_i·q) is 0 (all kept views
point away from q), the weights fall back to the normalised confidences. q is *not* renormalised
(its norm ≤ 1 shrinks when views disagree; the learned projection W absorbs the scale).

"w/o Token-for-Query" (``token_for_query=False``): the paper's ablation uses each view's own e_i.
Label fusion needs one weight per view, so this module maps it to uniform weights over the kept
views and q = the plain mean of the kept ê_i. The training losses (mllm3d.stage2_train3d.losses) go further
and score each (point, view) pair against its own view's ê_i in that mode, as the official code does;
at inference the single q (plain mean) is used.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from mllm3d.shared.geometry import Correspondences
from mllm3d.shared.store import QueryRecord, StoredScene


@dataclass
class FusionConfig:
    """Options of view filtering, Token-for-Query and vote fusion."""

    view_filter: bool = True  # drop low-confidence and tiny masks (no-[SEG] views are always dropped)
    min_confidence: float = 0.5  # SAM predicted IoU below this -> dropped
    min_area: float = 0.001  # mask area as a fraction of the image below this -> dropped
    token_for_query: bool = True  # False: uniform weights, q = mean of the kept ê_i
    iterations: int = 3  # fixed-point iterations of Token-for-Query
    vote_threshold: float = 0.5  # fused prob >= this -> target (2D-projection baseline)


def filter_views(record: QueryRecord, cfg: FusionConfig) -> tuple[np.ndarray, list[str]]:
    """Which of the query's k views to use, and why each was kept or dropped.

    Returns ``keep`` (k,) bool and one reason per view: "kept", "no [SEG]",
    "confidence 0.12 < 0.5" or "mask area 0.0002 < 0.001". Views without [SEG] are dropped even
    when ``cfg.view_filter`` is off.
    """
    k = record.num_views
    keep = np.zeros(k, dtype=bool)
    reasons: list[str] = []
    if k:
        flat = record.masks.reshape(k, -1)
        # bool masks: the pixel count / pixels, equal to mean(axis=1) without a float pass over the masks
        areas = np.count_nonzero(flat, axis=1) / flat.shape[1] if flat.dtype == bool else flat.mean(axis=1)
    for i in range(k):
        conf = float(record.confidence[i])
        if not bool(record.has_seg[i]):
            reasons.append("no [SEG]")
        elif cfg.view_filter and not conf >= cfg.min_confidence:
            reasons.append(f"confidence {conf:.2f} < {cfg.min_confidence:g}")
        elif cfg.view_filter and not float(areas[i]) >= cfg.min_area:
            reasons.append(f"mask area {float(areas[i]):.2g} < {cfg.min_area:g}")
        else:
            keep[i] = True
            reasons.append("kept")
    return keep, reasons


def normalize_rows(embeddings: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """L2-normalise each row (zero rows stay zero)."""
    e = np.asarray(embeddings, dtype=np.float64)
    norm = np.linalg.norm(e, axis=-1, keepdims=True)
    return np.where(norm > eps, e / np.maximum(norm, eps), 0.0)


def token_for_query(
    embeddings: np.ndarray, confidence: np.ndarray, keep: np.ndarray, iterations: int = 3
) -> tuple[np.ndarray, np.ndarray]:
    """Unified query embedding q (D,) and view weights ω (k,) (Σω = 1 over kept views, 0 elsewhere).

    See the module docstring for the fixed-point scheme. Views with a zero embedding are treated
    as dropped. With no usable view, returns q = 0 and ω = 0.
    """
    e = np.asarray(embeddings, dtype=np.float64)
    if e.ndim != 2:
        raise ValueError(f"token_for_query: embeddings must be (k,D), got shape {e.shape}")
    k, d = e.shape
    keep = np.asarray(keep, dtype=bool).reshape(k)
    alpha = np.clip(np.nan_to_num(np.asarray(confidence, dtype=np.float64).reshape(k)), 0.0, None)
    e_hat = normalize_rows(e)
    usable = keep & (np.linalg.norm(e_hat, axis=1) > 0)
    weights = np.zeros(k, dtype=np.float64)
    if not usable.any():
        return np.zeros(d, dtype=np.float32), weights.astype(np.float32)
    a = np.where(usable, alpha, 0.0)
    base = a / a.sum() if a.sum() > 0 else usable / usable.sum()  # confidence weights (uniform if all 0)
    weights = base
    q = weights @ e_hat
    for _ in range(max(0, int(iterations))):
        s = a * np.clip(e_hat @ q, 0.0, None)
        weights = s / s.sum() if s.sum() > 0 else base
        q = weights @ e_hat
    return q.astype(np.float32), weights.astype(np.float32)


def uniform_query(embeddings: np.ndarray, keep: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """"w/o Token-for-Query": uniform weights over the kept (non-zero) views, q = mean of their ê_i."""
    e_hat = normalize_rows(embeddings)
    k, d = e_hat.shape
    usable = np.asarray(keep, dtype=bool).reshape(k) & (np.linalg.norm(e_hat, axis=1) > 0)
    if not usable.any():
        return np.zeros(d, dtype=np.float32), np.zeros(k, dtype=np.float32)
    weights = usable / usable.sum()
    return (weights @ e_hat).astype(np.float32), weights.astype(np.float32)


@dataclass
class VisiblePairs:
    """The (point, view) pairs of a query's views with ω > 0, in view order, each with its mask value."""

    used: np.ndarray  # (u,) int64: the query's views with ω > 0, ascending
    counts: np.ndarray  # (u,) int64: pairs of each used view
    point: np.ndarray  # (P,) int64
    view: np.ndarray  # (P,) int64: index into the query's k views
    rows: np.ndarray  # (P,) int32: pixel row in the view
    cols: np.ndarray  # (P,) int32: pixel column
    vote: np.ndarray  # (P,) bool: the view's mask at the pixel


def visible_pairs(
    corr: Correspondences, masks: np.ndarray, weights: np.ndarray, view_index: np.ndarray | None = None
) -> VisiblePairs:
    """Gather the masks once at every visible (point, view) pair of the views with ω > 0.

    View i of the query (``masks[i]``, ``weights[i]``) is ``corr``'s view ``view_index[i]``, or its view i
    when ``view_index`` is None (``corr`` then holds exactly the query's views).
    """
    k = masks.shape[0]
    used = np.flatnonzero(np.asarray(weights, dtype=np.float64).reshape(k) > 0)
    views = [corr.view(int(i) if view_index is None else int(view_index[i])) for i in used]
    counts = np.array([len(v[0]) for v in views], dtype=np.int64)
    if not views:
        empty = np.zeros(0, np.int32)
        return VisiblePairs(used, counts, empty.astype(np.int64), empty.astype(np.int64), empty, empty.copy(),
                            np.zeros(0, bool))
    rows = np.concatenate([v[1] for v in views])
    cols = np.concatenate([v[2] for v in views])
    view = np.repeat(used, counts)
    vote = np.asarray(masks)[view, rows, cols].astype(bool, copy=False)
    point = np.concatenate([v[0] for v in views]).astype(np.int64)
    return VisiblePairs(used, counts, point, view, rows, cols, vote)


def fuse_pairs(num_points: int, pairs: VisiblePairs, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ω-weighted average of the gathered votes per point: (prob (N,) float32, 0 where unseen; seen (N,) bool).

    One weight per pair (its view's ω rounded to float32), summed by one ``bincount`` per numerator and
    denominator; bincount sums in float64 whatever the weights' type, so the weights are widened once up front.
    """
    if not pairs.used.size:
        return np.zeros(num_points, dtype=np.float32), np.zeros(num_points, dtype=bool)
    w = np.repeat(np.asarray(weights, dtype=np.float32)[pairs.used].astype(np.float64), pairs.counts)
    num = np.bincount(pairs.point, weights=w * pairs.vote, minlength=num_points)[:num_points]
    den = np.bincount(pairs.point, weights=w, minlength=num_points)[:num_points]
    seen = den > 0
    prob = np.divide(num, den, out=np.zeros(num_points), where=seen)
    return prob.astype(np.float32), seen


def fuse_labels(
    num_points: int, corr: Correspondences, masks: np.ndarray, weights: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """ω-weighted average of the votes of the views that see each point.

    ``corr`` holds exactly the query's k views in the order of ``masks`` (k,H,W) and ``weights`` (k,).
    A visible point votes 1 inside the view's mask, 0 outside. Returns prob (N,) float32
    (0 where unseen) and seen (N,) bool (seen by at least one view with ω > 0). The votes are gathered in
    one pass over all views (:func:`visible_pairs`), the weights rounded to float32, and both summed by one
    ``bincount`` per numerator/denominator (:func:`fuse_pairs`; no per-view N-sized float64 accumulators).
    """
    k = masks.shape[0]
    if corr.num_views != k or weights.shape[0] != k:
        raise ValueError(
            f"fuse_labels: {corr.num_views} correspondence views, {k} masks and {weights.shape[0]} weights must match"
        )
    return fuse_pairs(num_points, visible_pairs(corr, masks, weights), weights)


@dataclass
class FusedQuery:
    """Everything fusion says about one query (see :func:`fuse_query`)."""

    q: np.ndarray  # (D,) float32 unified query embedding
    weights: np.ndarray  # (k,) float32 ω
    keep: np.ndarray  # (k,) bool
    reasons: list[str] = field(default_factory=list)  # (k,) why each view was kept/dropped
    prob: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))  # (N,) fused label
    seen: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))  # (N,) seen by a weighted view


def query_weights(record: QueryRecord, cfg: FusionConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """(q, ω, keep, reasons) of one query: filtering then Token-for-Query (or uniform when off)."""
    keep, reasons = filter_views(record, cfg)
    if cfg.token_for_query:
        q, w = token_for_query(record.seg_embeddings, record.confidence, keep, cfg.iterations)
    else:
        q, w = uniform_query(record.seg_embeddings, keep)
    return q, w, keep, reasons


def fuse_query(scene: StoredScene, record: QueryRecord, cfg: FusionConfig) -> FusedQuery:
    """Filter the query's views, compute q and ω, and fuse the masks onto the scene's points."""
    q, w, keep, reasons = query_weights(record, cfg)
    corr = scene.correspondences.subset(record.view_index)
    prob, seen = fuse_labels(scene.num_points, corr, record.masks, w)
    return FusedQuery(q=q, weights=w, keep=keep, reasons=reasons, prob=prob, seen=seen)
