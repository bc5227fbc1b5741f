"""Point-mask metrics of the Reason3D / SegPoint protocol (docs/evaluation.md)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np


def gt_mask(instance_ids: np.ndarray, target_ids: Sequence[int] | None) -> np.ndarray:
    """Ground-truth point mask: union of the target instances' points (empty for zero-target)."""
    if not target_ids:
        return np.zeros(instance_ids.shape[0], dtype=bool)
    return np.isin(instance_ids, np.asarray(list(target_ids), dtype=instance_ids.dtype))


def point_iou(pred: np.ndarray, gt: np.ndarray) -> float:
    """IoU of two boolean point masks; 1.0 when both are empty, 0.0 when only one is."""
    pred = np.asarray(pred, dtype=bool)
    gt = np.asarray(gt, dtype=bool)
    union = np.count_nonzero(pred | gt)
    if union == 0:
        return 1.0
    return float(np.count_nonzero(pred & gt) / union)


def summarize(ious: Sequence[float], thresholds: Sequence[float] = (0.25, 0.5)) -> dict[str, float]:
    """mIoU and Acc@k = share of queries with IoU strictly greater than k (percent-free, 0..1)."""
    arr = np.asarray(list(ious), dtype=np.float64)
    out: dict[str, float] = {"n": float(arr.size)}
    if arr.size == 0:
        out["miou"] = float("nan")
        for k in thresholds:
            out[f"acc{int(round(k * 100))}"] = float("nan")
        return out
    out["miou"] = float(arr.mean())
    for k in thresholds:
        out[f"acc{int(round(k * 100))}"] = float(np.mean(arr > k))
    return out


# ---------------------------------------------------------------------------------------------
# Per-query scores and the summaries the evaluation tables print (extensions; the functions above
# keep their signatures).

GROUNDED_THRESHOLD = 0.25  # "after successful grounding" = IoU > 0.25 (docs/evaluation.md: report both)


@dataclass
class QueryScore:
    """The evaluation result of one query: its IoU and what it was computed from."""

    scene_id: str
    query_id: str
    iou: float
    pred_points: int
    gt_points: int
    zero_target: bool  # the annotation has no target (empty GT by definition)
    kind: str | None = None
    missing_targets: bool = False  # targets annotated but none of their points is in the scene (IoU 0)
    # secondary breakdowns, name -> label, e.g. {"uniqueness": "unique", "difficulty": "hard"}
    groups: dict[str, str] = field(default_factory=dict)
    # IoU restricted to the points the query's views see / do not see (None: no GT and no prediction there)
    seen_iou: float | None = None
    unseen_iou: float | None = None
    target_seen_share: float | None = None  # share of the target's points that a view of the query sees

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def score_query(
    pred: np.ndarray,
    instance_ids: np.ndarray,
    target_ids: Sequence[int] | None,
    scene_id: str = "",
    query_id: str = "",
    kind: str | None = None,
    groups: dict[str, str] | None = None,
) -> QueryScore:
    """Score one binarised point-mask prediction against the union of the target instances.

    ``target_ids`` must be known (a list, possibly empty); ``None`` (unknown) is an error because the
    query cannot be scored. IoU = 1 with an empty GT only for a zero-target query (``target_ids == []``)
    that predicts nothing (docs/evaluation.md); a targeted query whose target instances have no point in the
    scene has unusable GT: it scores IoU 0 whatever is predicted and is flagged ``missing_targets``.
    """
    if target_ids is None:
        raise ValueError(f"query {scene_id}/{query_id}: target ids unknown, cannot score it")
    pred = np.asarray(pred, dtype=bool)
    if pred.shape != instance_ids.shape:
        raise ValueError(
            f"query {scene_id}/{query_id}: prediction has shape {pred.shape}, the scene has "
            f"{instance_ids.shape[0]} points"
        )
    gt = gt_mask(instance_ids, target_ids)
    zero = len(target_ids) == 0
    missing = (not zero) and not gt.any()
    return QueryScore(
        scene_id=scene_id,
        query_id=query_id,
        iou=0.0 if missing else point_iou(pred, gt),
        pred_points=int(np.count_nonzero(pred)),
        gt_points=int(np.count_nonzero(gt)),
        zero_target=zero,
        kind=kind,
        missing_targets=missing,
        groups=dict(groups or {}),
    )


def grounded_miou(ious: Sequence[float], threshold: float = GROUNDED_THRESHOLD) -> float:
    """Mean IoU over the queries grounded successfully (IoU strictly greater than ``threshold``).

    Pass the IoUs of *targeted* queries only: a zero-target query's IoU 1 is not a grounding.
    """
    arr = np.asarray(list(ious), dtype=np.float64)
    ok = arr[arr > threshold]
    return float(ok.mean()) if ok.size else float("nan")


def summarize_scores(scores: Sequence[QueryScore], thresholds: Sequence[float] = (0.25, 0.5)) -> dict[str, float]:
    """Every number of one evaluation row.

    - ``miou`` / ``acc25`` / ``acc50`` / ``n``: over *all* scored queries (zero-target queries count
      with IoU 1 if nothing was predicted, else 0 — docs/evaluation.md; missing-target queries count with IoU 0);
    - ``n_targeted`` / ``miou_targeted``: the queries that have at least one target;
    - ``miou_grounded`` / ``n_grounded``: mean IoU over the *targeted* queries with IoU > 0.25 only
      (one reading of the paper's "after successful grounding"; zero-target queries never count);
    - ``n_zero_target`` / ``zero_target_acc``: zero-target queries and the share predicted empty;
    - ``n_missing_targets``: targeted queries whose target instances have no points in the scene
      (scored IoU 0, included in ``n`` and ``n_targeted``).
    """
    out = summarize([s.iou for s in scores], thresholds)
    targeted = [s.iou for s in scores if not s.zero_target]
    out["miou_grounded"] = grounded_miou(targeted)
    out["n_grounded"] = float(sum(iou > GROUNDED_THRESHOLD for iou in targeted))
    out["n_targeted"] = float(len(targeted))
    out["miou_targeted"] = float(np.mean(targeted)) if targeted else float("nan")
    zero = [s for s in scores if s.zero_target]
    out["n_zero_target"] = float(len(zero))
    out["zero_target_acc"] = float(np.mean([s.pred_points == 0 for s in zero])) if zero else float("nan")
    out["n_missing_targets"] = float(sum(s.missing_targets for s in scores))
    return out


def breakdown_by_kind(
    scores: Sequence[QueryScore], thresholds: Sequence[float] = (0.25, 0.5)
) -> dict[str, dict[str, float]]:
    """:func:`summarize_scores` per query kind (explicit / spatial / implicit, zt_w_d / mt …).

    Queries of unknown kind are grouped under ``"unknown"``; an empty dict when no query has a kind.
    """
    if not any(s.kind for s in scores):
        return {}
    groups: dict[str, list[QueryScore]] = {}
    for s in scores:
        groups.setdefault(s.kind or "unknown", []).append(s)
    return {k: summarize_scores(v, thresholds) for k, v in sorted(groups.items())}


def breakdown_by_group(
    scores: Sequence[QueryScore], thresholds: Sequence[float] = (0.25, 0.5)
) -> dict[str, dict[str, dict[str, float]]]:
    """:func:`summarize_scores` per label of every secondary breakdown in ``QueryScore.groups``.

    ``{"uniqueness": {"unique": {...}, "multiple": {...}, "unknown": {...}}, ...}``; queries without a
    label for a breakdown go to ``"unknown"``; breakdowns that no query has are absent.
    """
    names = sorted({g for s in scores for g in s.groups})
    out: dict[str, dict[str, dict[str, float]]] = {}
    for name in names:
        by_label: dict[str, list[QueryScore]] = {}
        for s in scores:
            by_label.setdefault(s.groups.get(name) or "unknown", []).append(s)
        out[name] = {k: summarize_scores(v, thresholds) for k, v in sorted(by_label.items())}
    return out


def subset_iou(pred: np.ndarray, gt: np.ndarray, where: np.ndarray) -> float | None:
    """IoU of ``pred`` and ``gt`` on the points in ``where``; None when neither has a point there."""
    p, g = np.asarray(pred, bool)[where], np.asarray(gt, bool)[where]
    union = int((p | g).sum())
    return None if union == 0 else float((p & g).sum()) / union


def seen_split(scores: Sequence[QueryScore]) -> dict[str, float]:
    """Mean IoU on the seen / unseen points (over the queries where it is defined) and the mean share
    of target points the views see: where the method's points come from."""
    def mean(vals: list[float]) -> float:
        return float(np.mean(vals)) if vals else float("nan")

    return {
        "seen_miou": mean([s.seen_iou for s in scores if s.seen_iou is not None]),
        "unseen_miou": mean([s.unseen_iou for s in scores if s.unseen_iou is not None]),
        "target_seen_share": mean([s.target_seen_share for s in scores if s.target_seen_share is not None]),
    }
