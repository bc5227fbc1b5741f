"""ScanNet instance annotations: per-vertex object ids and labels from aggregation + segs files."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np

from mllm3d.shared.errors import BadInputError


def load_instances(
    aggregation: Path, segs: Path, num_vertices: int
) -> tuple[np.ndarray, dict[int, str]]:
    """Per-vertex instance ids (int32, -1 = none) and labels from ScanNet aggregation + segs files."""
    try:
        agg = json.loads(aggregation.read_text(encoding="utf-8-sig"))
        seg_indices = np.asarray(json.loads(segs.read_text(encoding="utf-8-sig"))["segIndices"], dtype=np.int64)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise BadInputError(f"{aggregation} / {segs}: cannot read instances: {exc}") from None
    if not isinstance(agg, dict):
        raise BadInputError(f"{aggregation}: expected a JSON object with segGroups, got {type(agg).__name__}")
    if seg_indices.shape != (num_vertices,):
        raise BadInputError(f"{segs}: {seg_indices.shape[0]} segIndices for a mesh of {num_vertices} vertices")
    groups = agg.get("segGroups")
    if not isinstance(groups, list):
        raise BadInputError(f"{aggregation}: no segGroups list")
    seg_to_obj: dict[int, int] = {}
    labels: dict[int, str] = {}
    shared: set[int] = set()
    for n, g in enumerate(groups):
        try:
            raw = g.get("objectId", g.get("id"))
            if isinstance(raw, bool):
                raise ValueError(f"objectId {raw!r}")
            oid = int(raw)
            raw_segments = g.get("segments", [])
            if not isinstance(raw_segments, list):  # a string would be read digit by digit
                raise TypeError(f"segments {raw_segments!r} is not a list")
            segments = [int(s) for s in raw_segments]
        except (TypeError, ValueError, AttributeError) as exc:
            raise BadInputError(f"{aggregation}: segGroups[{n}]: objectId and segments must be integers ({exc})") from None
        if not 0 <= oid <= 2**31 - 1:
            raise BadInputError(f"{aggregation}: segGroups[{n}]: objectId {oid} is outside 0..2**31-1 (-1 means none)")
        if oid in labels:
            raise BadInputError(f"{aggregation}: segGroups[{n}]: objectId {oid} appears twice")
        labels[oid] = str(g.get("label", ""))
        for s in segments:
            if seg_to_obj.setdefault(s, oid) != oid:
                shared.add(s)
    if shared:
        warnings.warn(f"{aggregation}: {len(shared)} segments belong to two objects (e.g. {sorted(shared)[:5]}); "
                      "the first object keeps them", stacklevel=2)
    uniq, inverse = np.unique(seg_indices, return_inverse=True)
    lut = np.array([seg_to_obj.get(int(s), -1) for s in uniq], dtype=np.int32)
    unknown = sorted(set(seg_to_obj) - {int(s) for s in uniq})
    if unknown:
        warnings.warn(f"{aggregation}: {len(unknown)} segments not in {segs.name} (e.g. {unknown[:5]}): ignored",
                      stacklevel=2)
    empty = sorted(set(labels) - {int(o) for o in lut})
    if empty:
        warnings.warn(f"{aggregation}: objects {empty[:10]} have no points (none of their segments is in "
                      f"{segs.name}); queries that target them have an empty ground truth", stacklevel=2)
    return lut[inverse].astype(np.int32), labels
