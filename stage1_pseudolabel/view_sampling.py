"""Which views of a scene each query sees: k random frames per query (k = 4 as in the paper).

The draw for one query depends only on (seed, scene_id, query_id) and the scene's usable frames,
never on the other queries or on sharding. The per-query seed, ``view_seed``, is stored in the
query group; ``np.random.default_rng(view_seed).choice(usable, k, replace=False)`` (sorted)
reproduces the draw.

Pooled sampling (``view_pool = P``, off by default): each query still gets k random views, but drawn
from a per-scene pool of P usable frames, itself drawn from (seed, scene_id) only; queries then share
views, so a view's CLIP/SAM encodings and LM prefix are computed once for every query that drew it.
The draw is reproduced by ``scene_view_pool(usable, P, seed, scene_id)`` then
``np.random.default_rng(view_seed).choice(pool, k, replace=False)`` (sorted).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from mllm3d.shared.errors import BadInputError
from mllm3d.shared.geometry import pose_problem
from mllm3d.shared.scene import View
from mllm3d.stage1_pseudolabel.seeding import stable_seed

ALL_VIEWS = "all"


@dataclass(frozen=True)
class ViewChoice:
    """The sampled views of one query: indices into the scene's frames (sorted) and the seed used."""

    view_index: np.ndarray  # (k,) int32
    view_seed: int


def parse_views(value: str | int | None) -> int | None:
    """``"all"``/None -> None (every frame), otherwise a positive int."""
    if value is None or (isinstance(value, str) and value.strip().lower() == ALL_VIEWS):
        return None
    try:
        k = int(value)
    except (TypeError, ValueError):
        raise BadInputError(f"--views must be a positive integer or 'all', got {value!r}") from None
    if k < 1:
        raise BadInputError(f"--views must be a positive integer or 'all', got {k}")
    return k


def view_seed(seed: int, scene_id: str, query_id: str) -> int:
    """The per-query seed of the view draw (fits in a signed 32-bit int for any JSON reader)."""
    return stable_seed("views", seed, scene_id, query_id) & 0x7FFFFFFF


def usable_frames(views: Sequence[View], min_valid_depth: float = 0.0) -> np.ndarray:
    """Indices of views with a valid rigid pose and at least ``min_valid_depth`` valid depth pixels.

    A lazy view sequence that offers ``pose_at(i)`` and ``valid_depth_fraction(i)`` (the ScanNet
    reader: pose and depth statistics from discovery) is answered without decoding any image; one that
    offers ``pose_at(i)`` and ``depth_at(i)`` is read depth only; anything else is indexed.
    """
    pose_at = getattr(views, "pose_at", None)
    fraction_at = getattr(views, "valid_depth_fraction", None)
    depth_at = getattr(views, "depth_at", None)
    keep = []
    for i in range(len(views)):
        if pose_at is not None and (fraction_at is not None or depth_at is not None):
            if pose_problem(pose_at(i)) is not None:
                continue
            if min_valid_depth > 0:
                share = fraction_at(i) if fraction_at is not None else _valid_share(depth_at(i))
                if share < min_valid_depth:
                    continue
            keep.append(i)
            continue
        v = views[i]
        if pose_problem(v.pose) is not None:
            continue
        if min_valid_depth > 0 and _valid_share(v.depth) < min_valid_depth:
            continue
        keep.append(i)
    return np.asarray(keep, dtype=np.int32)


def _valid_share(depth: np.ndarray) -> float:
    d = np.asarray(depth)
    return float(np.mean(np.isfinite(d) & (d > 0)))


def parse_pool(value: int | None, where: str = "view_pool") -> int | None:
    """None (off) or a positive int: the per-scene pool size of pooled view sampling."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise BadInputError(f"{where} must be a positive integer or null (off), got {value!r}")
    return value


def scene_view_pool(usable: np.ndarray, pool: int, seed: int, scene_id: str) -> np.ndarray:
    """The scene's pool: ``pool`` distinct usable frames (sorted) drawn from (seed, scene_id) alone."""
    usable = np.sort(np.asarray(usable, dtype=np.int32))
    if pool >= len(usable):
        return usable
    rng = np.random.default_rng(stable_seed("view-pool", seed, scene_id) & 0x7FFFFFFF)
    return np.sort(rng.choice(usable, size=pool, replace=False)).astype(np.int32)


def sample_views(usable: np.ndarray, k: int | None, seed: int, scene_id: str, query_id: str,
                 pool: int | None = None) -> ViewChoice:
    """k distinct frames out of ``usable`` (all of them when k is None or k >= len(usable)); with
    ``pool``, out of the scene's pool of that many frames (:func:`scene_view_pool`)."""
    s = view_seed(seed, scene_id, query_id)
    usable = np.asarray(usable, dtype=np.int32)
    if pool is not None and k is not None:
        usable = scene_view_pool(usable, pool, seed, scene_id)
    if k is None or k >= len(usable):
        return ViewChoice(np.sort(usable).astype(np.int32), s)
    picked = np.random.default_rng(s).choice(usable, size=k, replace=False)
    return ViewChoice(np.sort(picked).astype(np.int32), s)
