"""The training dataset: one item = one scene and up to ``data.queries_per_item`` of its queries.

An item is numpy arrays (dict-in/dict-out, Pointcept style): optional augmentation of the
coordinates, voxelisation with the point->voxel inverse map, and per query the arrays of
:func:`mllm3d.stage2_train3d.item.query_arrays`. Arrays are read per item; each worker opens its own
store and keeps an LRU cache of a few decoded scenes (points, colors, correspondences).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import Dataset

from mllm3d.shared.store import PseudoLabelStore, StoredScene, open_store
from mllm3d.stage2_train3d.config import DataConfig
from mllm3d.stage2_train3d.fusion import FusionConfig
from mllm3d.stage2_train3d.item import query_arrays, stack_queries
from mllm3d.stage2_train3d.voxelize import augment_points, input_features, voxelize

Pair = tuple[str, str]


def group_pairs(pairs: Sequence[Pair], queries_per_item: int) -> list[tuple[str, list[str]]]:
    """Group pairs by scene (first-seen order) and split each scene's queries into near-equal chunks
    of at most ``queries_per_item``: one chunk = one dataset item = one backbone forward."""
    by_scene: OrderedDict[str, list[str]] = OrderedDict()
    for scene_id, query_id in pairs:
        by_scene.setdefault(scene_id, []).append(query_id)
    qpi = max(1, int(queries_per_item))
    items = []
    for scene_id, queries in by_scene.items():
        for chunk in np.array_split(np.arange(len(queries)), math.ceil(len(queries) / qpi)):
            items.append((scene_id, [queries[i] for i in chunk]))
    return items


class StoreQueryDataset(Dataset):
    """Items of one scene and up to ``data.queries_per_item`` of its queries (1 = one item per pair).

    The backbone output does not depend on the query, so an item runs it once for all its queries.
    Keys are either an index or (epoch, index): the augmentation RNG is seeded by
    (seed, epoch, index), so an item is the same whatever worker builds it and after a resume.
    """

    def __init__(
        self,
        store_path: str | Path,
        pairs: Sequence[Pair],
        data: DataConfig,
        fusion: FusionConfig,
        train: bool,
        seed: int = 0,
        use_normals: bool = False,
        with_features: bool = True,
        use_height: bool = False,
    ) -> None:
        self.store_path = Path(store_path)
        self.pairs = list(pairs)
        self.items = group_pairs(self.pairs, data.queries_per_item)
        self.data = data
        self.fusion = fusion
        self.train = train
        self.seed = seed
        self.use_normals = use_normals
        self.use_height = use_height
        self.with_features = with_features
        self._store: PseudoLabelStore | None = None
        self._cache: OrderedDict[str, StoredScene] = OrderedDict()
        self.cache_hits = 0
        self.cache_misses = 0

    def __getstate__(self) -> dict[str, Any]:  # workers open their own store and cache
        state = dict(self.__dict__)
        state["_store"] = None
        state["_cache"] = OrderedDict()
        return state

    def __len__(self) -> int:
        return len(self.items)

    @property
    def store(self) -> PseudoLabelStore:
        if self._store is None:
            self._store = open_store(self.store_path, "r")
        return self._store

    def scene(self, scene_id: str) -> StoredScene:
        """Decoded scene geometry, from the per-worker LRU cache."""
        if scene_id in self._cache:
            self._cache.move_to_end(scene_id)
            self.cache_hits += 1
            return self._cache[scene_id]
        self.cache_misses += 1
        scene = self.store.read_scene(scene_id)
        self._cache[scene_id] = scene
        while len(self._cache) > max(1, self.data.scene_cache):
            self._cache.popitem(last=False)
        return scene

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        epoch, idx = (0, key) if isinstance(key, (int, np.integer)) else (int(key[0]), int(key[1]))
        scene_id, query_ids = self.items[idx]
        scene = self.scene(scene_id)
        points = scene.points
        if self.train and (self.data.rotate or self.data.flip):
            rng = np.random.default_rng([self.seed, epoch, idx])
            points = augment_points(points, rng, self.data.rotate, self.data.flip, self.data.up_axis)
        vox = voxelize(points, self.data.voxel_size)
        item: dict[str, Any] = {
            "scene_id": scene_id,
            "query_ids": list(query_ids),
            "coords": vox.coords,
            "feats": input_features(points, scene.colors, vox, self.use_normals, self.use_height, self.data.up_axis),
            "inverse": vox.inverse,
            "num_points": scene.num_points,
        }
        per_query = [self._query(scene, query_id) for query_id in query_ids]
        item.update(stack_queries(per_query))
        return item

    def _query(self, scene: StoredScene, query_id: str) -> dict[str, Any]:
        """Read one query of ``scene`` and build its arrays (:func:`~mllm3d.stage2_train3d.item.query_arrays`)."""
        rec = self.store.read_query(scene.scene_id, query_id, with_features=self.with_features)
        where = f"{self.store_path}: scene {scene.scene_id!r} query {query_id!r}"
        return query_arrays(scene, rec, self.fusion, where)
