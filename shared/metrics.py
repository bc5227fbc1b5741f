"""Point-mask metrics of the Reason3D / SegPoint protocol (data.md)."""

from __future__ import annotations

from collections.abc import Sequence

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
