"""Overview statistics of a pseudo-label store (``mllm3d inspect`` without a query): counts, rates, sizes.

Read-only: every complete query group is read once with ``with_features=False``; nothing is written.
"""

from __future__ import annotations

import math
import os
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mllm3d.shared.errors import StoreError
from mllm3d.shared.store import PseudoLabelStore

Progress = Callable[[int, int], None]  # (done, total)


# ---------------------------------------------------------------------------------------------- sizes
def dir_size(path: Path) -> int:
    """Total bytes of the regular files under ``path``."""
    total = 0
    for dirpath, _, files in os.walk(path):
        for name in files:
            try:
                total += os.stat(os.path.join(dirpath, name)).st_size
            except FileNotFoundError:  # a concurrent writer removed it
                continue
    return total


def array_stored_bytes(array_dir: Path) -> int:
    """Bytes of a Zarr v3 array's chunk files (its zarr.json metadata excluded)."""
    chunks = array_dir / "c"
    return dir_size(chunks) if chunks.is_dir() else 0


# ---------------------------------------------------------------------------------------------- overview
@dataclass
class StoreOverview:
    """Summary statistics of a whole store."""

    path: Path
    segmenter: dict[str, Any]
    num_scenes: int
    num_queries: int
    queries_per_scene: tuple[int, float, int]  # min, mean, max
    views_per_query: tuple[int, float, int]  # min, mean, max
    num_views_total: int
    has_seg_rate: float
    mean_confidence: float  # over views with [SEG]
    mean_attention: float  # over views with [SEG]
    mask_area: dict[str, float]  # fraction of image pixels, over views with [SEG]: mean/median/min/max/empty
    size_on_disk: int  # bytes of the whole store directory
    mask_raw_bytes: int  # bytes of the mask arrays uncompressed (1 byte per bool)
    mask_stored_bytes: int  # bytes of the mask arrays' chunk files
    kinds: dict[str, int] = field(default_factory=dict)
    temporary_groups: list[Path] = field(default_factory=list)
    # "scene/query" of complete groups that could not be read (left out of the statistics above)
    unreadable_groups: list[str] = field(default_factory=list)

    @property
    def compression_ratio(self) -> float:
        return self.mask_raw_bytes / self.mask_stored_bytes if self.mask_stored_bytes else float("nan")


def _min_mean_max(values: list[int]) -> tuple[int, float, int]:
    if not values:
        return (0, float("nan"), 0)
    return (int(min(values)), float(np.mean(values)), int(max(values)))


def _mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else float("nan")


def store_overview(store: PseudoLabelStore, progress: Progress | None = None) -> StoreOverview:
    """Read every complete query group once and summarise the store.

    A group that cannot be read (corrupt chunk or metadata) is listed in ``unreadable_groups`` and
    left out of the statistics; the overview goes on with the others (``check_store`` says why).
    """
    pairs = store.complete_pairs()
    scene_ids = store.scene_ids()
    per_scene = Counter(s for s, _ in pairs)
    views: list[int] = []
    conf: list[float] = []
    att: list[float] = []
    areas: list[float] = []
    has_seg_total = 0
    raw = stored = 0
    kinds: Counter[str] = Counter()
    unreadable: list[str] = []
    for n, (sid, qid) in enumerate(pairs):
        try:
            rec = store.read_query(sid, qid, with_features=False)
        except StoreError:
            unreadable.append(f"{sid}/{qid}")
            if progress is not None:
                progress(n + 1, len(pairs))
            continue
        k = rec.num_views
        views.append(k)
        seg = rec.has_seg.astype(bool)
        has_seg_total += int(seg.sum())
        conf.extend(rec.confidence[seg].astype(float).tolist())
        att.extend(rec.attention[seg].astype(float).tolist())
        if k:
            areas.extend(rec.masks.reshape(k, -1).mean(axis=1)[seg].tolist())
        raw += int(rec.masks.size)
        stored += array_stored_bytes(store.query_dir(sid, qid) / "masks")
        kinds[rec.query.kind or "unknown"] += 1
        if progress is not None:
            progress(n + 1, len(pairs))
    area = np.asarray(areas, dtype=np.float64)
    mask_area = {
        "mean": float(area.mean()) if area.size else float("nan"),
        "median": float(np.median(area)) if area.size else float("nan"),
        "min": float(area.min()) if area.size else float("nan"),
        "max": float(area.max()) if area.size else float("nan"),
        "empty": float(np.mean(area == 0)) if area.size else float("nan"),
    }
    total_views = int(sum(views))
    return StoreOverview(
        path=store.path,
        segmenter=dict(store.attrs.get("segmenter") or {}),
        num_scenes=len(scene_ids),
        num_queries=len(pairs),
        queries_per_scene=_min_mean_max([per_scene.get(s, 0) for s in scene_ids]),
        views_per_query=_min_mean_max(views),
        num_views_total=total_views,
        has_seg_rate=has_seg_total / total_views if total_views else float("nan"),
        mean_confidence=_mean(conf),
        mean_attention=_mean(att),
        mask_area=mask_area,
        size_on_disk=dir_size(store.path),
        mask_raw_bytes=raw,
        mask_stored_bytes=stored,
        kinds=dict(sorted(kinds.items())),
        temporary_groups=store.temporary_groups(),
        unreadable_groups=unreadable,
    )


def fmt_bytes(n: float) -> str:
    """Human-readable byte count (1024-based)."""
    if not math.isfinite(n):
        return "n/a"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"
