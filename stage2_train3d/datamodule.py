"""Streaming the pseudo-label store into batches: dataset, collate, samplers, LightningDataModule.

An item is one scene with up to ``data.queries_per_item`` of its queries (1 = one item per
(scene, query) pair, as in the paper; more queries share one backbone forward), as numpy arrays
(dict-in/dict-out, Pointcept style): optional augmentation of the coordinates, voxelisation with the
point->voxel inverse map, and per query: fusion (filter -> Token-for-Query -> fused labels), the
visible (point, view) pairs of the views with ω > 0 with their mask values and weights, image
features sampled at positive pairs (when the store has them) and the ground-truth mask (when the
scene has instance ids and the query target ids).

Batches concatenate items; ``*_offset`` arrays (B+1,) delimit each item's points / voxels /
queries / views / pairs, voxel coordinates carry the batch index in column 0, and every
cross-reference (point->voxel, pair->point/query/view) is shifted to global indices.

Only the listing of pairs touches every query (its small zarr.json); arrays are read per item, and
each worker keeps an LRU cache of a few decoded scenes (points, colors, correspondences).
"""

from __future__ import annotations

import logging
import math
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from mllm3d.shared.errors import StoreError
from mllm3d.shared.metrics import gt_mask
from mllm3d.shared.store import PseudoLabelStore, StoredScene, open_store
from mllm3d.stage2_train3d.config import DataConfig, TrainConfig
from mllm3d.stage2_train3d.fusion import FusionConfig, fuse_labels, normalize_rows, query_weights
from mllm3d.stage2_train3d.voxelize import augment_points, input_features, voxelize

Pair = tuple[str, str]


def split_pairs(pairs: Sequence[Pair], cfg: DataConfig) -> tuple[list[Pair], list[Pair]]:
    """Split (scene, query) pairs by scene: no scene is in both lists.

    ``cfg.val_scenes`` (if given) are the val scenes; otherwise round(val_fraction * #scenes) scenes
    (at least 1 when there are >= 2 scenes and val_fraction > 0) chosen by a seeded shuffle.
    """
    scenes = sorted({s for s, _ in pairs})
    if cfg.val_scenes:
        unknown = sorted(set(cfg.val_scenes) - set(scenes))
        if unknown:
            raise StoreError(f"data.val_scenes {unknown} are not in the store (it has {scenes[:10]}...)")
        val = set(cfg.val_scenes)
    else:
        n_val = int(round(cfg.val_fraction * len(scenes)))
        if cfg.val_fraction > 0 and len(scenes) >= 2:
            n_val = min(max(n_val, 1), len(scenes) - 1)
        order = np.random.default_rng(cfg.split_seed).permutation(len(scenes))
        val = {scenes[i] for i in order[:n_val]}
    train = [p for p in pairs if p[0] not in val]
    valp = [p for p in pairs if p[0] in val]
    return _limit(train, cfg.max_train_queries, cfg.split_seed), _limit(valp, cfg.max_val_queries, cfg.split_seed)


def _limit(pairs: list[Pair], n: int, seed: int) -> list[Pair]:
    if n <= 0 or len(pairs) <= n:
        return pairs
    keep = np.sort(np.random.default_rng(seed + 1).permutation(len(pairs))[:n])
    return [pairs[i] for i in keep]


def sample_image_features(
    fmap: np.ndarray, rows: np.ndarray, cols: np.ndarray, image_size: tuple[int, int]
) -> np.ndarray:
    """Bilinearly sample a (C,h,w) feature map at image pixels (rows, cols) of an (H,W) image -> (n,C).

    The feature grid is assumed to span the whole image: pixel centre (row+0.5, col+0.5) maps to
    ((row+0.5)·h/H − 0.5, (col+0.5)·w/W − 0.5) in feature cells — rows scale with h/H and columns
    with w/W (the official code swapped H and W, docs/method.md, bug 3).
    """
    c, h, w = fmap.shape
    big_h, big_w = image_size
    y = np.clip((rows.astype(np.float64) + 0.5) * h / big_h - 0.5, 0.0, h - 1)
    x = np.clip((cols.astype(np.float64) + 0.5) * w / big_w - 0.5, 0.0, w - 1)
    y0 = np.floor(y).astype(np.int64)
    x0 = np.floor(x).astype(np.int64)
    y1 = np.minimum(y0 + 1, h - 1)
    x1 = np.minimum(x0 + 1, w - 1)
    wy = (y - y0)[:, None]
    wx = (x - x0)[:, None]
    f = np.asarray(fmap, dtype=np.float32)
    top = f[:, y0, x0].T * (1 - wx) + f[:, y0, x1].T * wx
    bottom = f[:, y1, x0].T * (1 - wx) + f[:, y1, x1].T * wx
    return (top * (1 - wy) + bottom * wy).astype(np.float32)


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
        item.update(_stack_queries(per_query))
        return item

    def _query(self, scene: StoredScene, query_id: str) -> dict[str, Any]:
        """Fusion, (point, view) pairs, sampled image features and ground truth of one query."""
        rec = self.store.read_query(scene.scene_id, query_id, with_features=self.with_features)
        where = f"{self.store_path}: scene {scene.scene_id!r} query {query_id!r}"
        if tuple(rec.masks.shape[1:]) != tuple(scene.image_size):
            raise StoreError(f"{where}: masks are {rec.masks.shape[1:]}, the scene's image size is {scene.image_size}")
        if rec.num_views and (rec.view_index.min() < 0 or rec.view_index.max() >= scene.num_views):
            raise StoreError(f"{where}: view_index {rec.view_index.tolist()} out of range 0..{scene.num_views - 1}")
        q, weights, keep, _ = query_weights(rec, self.fusion)
        corr = scene.correspondences.subset(rec.view_index)
        n = scene.num_points
        prob, seen = fuse_labels(n, corr, rec.masks, weights)
        used = np.flatnonzero(weights > 0)
        pair_point, pair_view, pair_target, pair_weight = [], [], [], []
        f2d_list, f2d_pair = [], []
        n_pairs = 0
        for i in used:
            pidx, rows, cols = corr.view(int(i))
            target = rec.masks[i][rows, cols]
            pair_point.append(pidx.astype(np.int64))
            pair_view.append(np.full(len(pidx), i, np.int64))
            pair_target.append(target.astype(np.float32))
            pair_weight.append(np.full(len(pidx), float(weights[i]) * len(used), np.float32))
            if rec.image_features is not None and target.any():
                pos = np.flatnonzero(target)
                f2d_list.append(sample_image_features(rec.image_features[i], rows[pos], cols[pos], scene.image_size))
                f2d_pair.append(pos + n_pairs)
            n_pairs += len(pidx)
        has_gt = scene.instance_ids is not None and rec.query.target_ids is not None
        gt = gt_mask(scene.instance_ids, rec.query.target_ids).astype(np.float32) if has_gt else np.zeros(n, np.float32)
        c_img = 0 if rec.image_features is None else int(rec.image_features.shape[1])
        return {
            "q": q.astype(np.float32),
            "view_emb": normalize_rows(rec.seg_embeddings).astype(np.float32),
            "view_weight": weights.astype(np.float32),
            "view_keep": keep,
            "view_confidence": rec.confidence.astype(np.float32),
            "view_attention": rec.attention.astype(np.float32),
            "pair_point": _cat(pair_point, np.int64),
            "pair_view": _cat(pair_view, np.int64),
            "pair_target": _cat(pair_target, np.float32),
            "pair_weight": _cat(pair_weight, np.float32),
            "f2d": np.concatenate(f2d_list) if f2d_list else np.zeros((0, c_img), np.float32),
            "f2d_pair": _cat(f2d_pair, np.int64),
            "fused_prob": prob,
            "seen": seen,
            "gt": gt,
            "has_gt": has_gt,
            "num_views": rec.num_views,
        }


def _stack_queries(per_query: list[dict[str, Any]]) -> dict[str, Any]:
    """One item's queries concatenated; pair/view/f2d references shifted to item-local indices.

    Per-(query, point) arrays (fused_prob, seen, gt) are query-major: entry j*N + p.
    """
    wo = _offsets([d["num_views"] for d in per_query])
    pr = _offsets([d["pair_point"].shape[0] for d in per_query])
    dims = {d["f2d"].shape[1] for d in per_query if d["f2d"].shape[0]}
    c_img = max(dims) if dims else 0
    return {
        "num_queries": len(per_query),
        "q": np.stack([d["q"] for d in per_query]),
        "view_emb": np.concatenate([d["view_emb"] for d in per_query]),
        "view_weight": np.concatenate([d["view_weight"] for d in per_query]),
        "view_keep": np.concatenate([d["view_keep"] for d in per_query]),
        "view_confidence": np.concatenate([d["view_confidence"] for d in per_query]),
        "view_attention": np.concatenate([d["view_attention"] for d in per_query]),
        "view_query": np.repeat(np.arange(len(per_query)), [d["num_views"] for d in per_query]),
        "num_views": int(wo[-1]),
        "pair_point": np.concatenate([d["pair_point"] for d in per_query]),
        "pair_query": np.repeat(np.arange(len(per_query)), np.diff(pr)),
        "pair_view": np.concatenate([d["pair_view"] + wo[j] for j, d in enumerate(per_query)]),
        "pair_target": np.concatenate([d["pair_target"] for d in per_query]),
        "pair_weight": np.concatenate([d["pair_weight"] for d in per_query]),
        "f2d": np.concatenate([d["f2d"].reshape(-1, c_img) for d in per_query]).astype(np.float32)
        if c_img
        else np.zeros((0, 0), np.float32),
        "f2d_pair": np.concatenate([d["f2d_pair"] + pr[j] for j, d in enumerate(per_query)]),
        "fused_prob": np.concatenate([d["fused_prob"] for d in per_query]),
        "seen": np.concatenate([d["seen"] for d in per_query]),
        "gt": np.concatenate([d["gt"] for d in per_query]),
        "has_gt": np.array([d["has_gt"] for d in per_query], bool),
    }


def _cat(parts: list[np.ndarray], dtype: type) -> np.ndarray:
    return np.concatenate(parts).astype(dtype, copy=False) if parts else np.zeros(0, dtype)


def _offsets(counts: Sequence[int]) -> np.ndarray:
    out = np.zeros(len(counts) + 1, np.int64)
    out[1:] = np.cumsum(counts)
    return out


def collate(items: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Concatenate items with offsets (B+1,) and globally shifted cross-references; torch tensors out.

    Layout: points, voxels, queries, views and pairs are each concatenated over items;
    ``*_offset`` delimit the items. Per-(query, point) arrays are concatenated item blocks of
    Q_b*N_b entries (query-major), delimited by ``qp_offset``; ``pair_qp`` indexes them.
    """
    b = len(items)
    if b == 0:
        raise ValueError("collate: empty batch")
    po = _offsets([it["num_points"] for it in items])
    vo = _offsets([it["coords"].shape[0] for it in items])
    qo = _offsets([it["num_queries"] for it in items])
    wo = _offsets([it["num_views"] for it in items])
    pr = _offsets([it["pair_point"].shape[0] for it in items])
    qpo = _offsets([it["num_queries"] * it["num_points"] for it in items])
    coords = np.concatenate(
        [np.concatenate([np.full((len(it["coords"]), 1), i, np.int32), it["coords"]], 1) for i, it in enumerate(items)]
    ).astype(np.int32)
    dims = {it["f2d"].shape[1] for it in items if it["f2d"].shape[0]}
    if len(dims) > 1:
        raise StoreError(f"image features of different widths {sorted(dims)} in one batch: {_names(items)}")
    c_img = dims.pop() if dims else 0
    pair_qp = np.concatenate(
        [qpo[i] + it["pair_query"] * it["num_points"] + it["pair_point"] for i, it in enumerate(items)]
    )
    qp_has_gt = np.concatenate([np.repeat(it["has_gt"], it["num_points"]) for it in items])
    t = torch.from_numpy
    return {
        "scene_ids": [it["scene_id"] for it in items],
        "query_ids": [q for it in items for q in it["query_ids"]],
        "query_scene_ids": [it["scene_id"] for it in items for _ in it["query_ids"]],
        "batch_size": b,
        "num_queries": int(qo[-1]),
        "coords": t(coords),
        "feats": t(np.concatenate([it["feats"] for it in items]).astype(np.float32)),
        "point_voxel": t(np.concatenate([it["inverse"] + vo[i] for i, it in enumerate(items)])),
        "point_offset": t(po),
        "voxel_offset": t(vo),
        "query_offset": t(qo),
        "view_offset": t(wo),
        "pair_offset": t(pr),
        "qp_offset": t(qpo),
        "q": t(np.concatenate([it["q"] for it in items])),
        "view_emb": t(np.concatenate([it["view_emb"] for it in items])),
        "view_weight": t(np.concatenate([it["view_weight"] for it in items])),
        "view_confidence": t(np.concatenate([it["view_confidence"] for it in items])),
        "view_attention": t(np.concatenate([it["view_attention"] for it in items])),
        "view_query": t(np.concatenate([it["view_query"] + qo[i] for i, it in enumerate(items)])),
        "pair_point": t(np.concatenate([it["pair_point"] + po[i] for i, it in enumerate(items)])),
        "pair_query": t(np.concatenate([it["pair_query"] + qo[i] for i, it in enumerate(items)])),
        "pair_view": t(np.concatenate([it["pair_view"] + wo[i] for i, it in enumerate(items)])),
        "pair_qp": t(pair_qp.astype(np.int64)),
        "pair_target": t(np.concatenate([it["pair_target"] for it in items])),
        "pair_weight": t(np.concatenate([it["pair_weight"] for it in items])),
        "f2d": t(np.concatenate([it["f2d"].reshape(-1, c_img) for it in items]).astype(np.float32))
        if c_img
        else torch.zeros(0, 0),
        "f2d_pair": t(np.concatenate([it["f2d_pair"] + pr[i] for i, it in enumerate(items)])),
        "fused_prob": t(np.concatenate([it["fused_prob"] for it in items])),
        "seen": t(np.concatenate([it["seen"] for it in items])),
        "gt": t(np.concatenate([it["gt"] for it in items])),
        "qp_has_gt": t(qp_has_gt),
        "has_gt": t(np.concatenate([it["has_gt"] for it in items])),
    }


def _names(items: Sequence[dict[str, Any]]) -> str:
    return ", ".join(f"{it['scene_id']}/{q}" for it in items for q in it["query_ids"])


class ShardedSampler(Sampler):
    """Deterministic (seed, epoch) shuffling, sharded over ranks; yields (epoch, index) keys.

    Training shards are padded to equal length (DDP needs the same number of steps per rank);
    validation shards are not (every query is evaluated exactly once).
    """

    def __init__(self, n: int, shuffle: bool, seed: int, rank: int = 0, world_size: int = 1, pad: bool = True) -> None:
        self.n, self.shuffle, self.seed = n, shuffle, seed
        self.rank, self.world_size, self.pad = rank, world_size, pad
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def _indices(self) -> list[int]:
        order = np.random.default_rng([self.seed, self.epoch]).permutation(self.n) if self.shuffle else np.arange(self.n)
        idx = order.tolist()
        if self.pad and self.world_size > 1 and idx:
            total = math.ceil(len(idx) / self.world_size) * self.world_size
            idx += idx[: total - len(idx)]
        return idx[self.rank :: self.world_size]

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return iter((self.epoch, i) for i in self._indices())

    def __len__(self) -> int:
        return len(self._indices())


class StoreDataModule(pl.LightningDataModule):
    """Lists the store's complete pairs, splits them by scene and serves train/val loaders."""

    def __init__(self, store_path: str | Path, config: TrainConfig) -> None:
        super().__init__()
        self.store_path = Path(store_path)
        self.config = config
        self.train_pairs: list[Pair] = []
        self.val_pairs: list[Pair] = []
        self._listed = False

    def list_pairs(self) -> None:
        """Read the pair listing (cheap: small metadata files only) and split it."""
        if self._listed:
            return
        store = open_store(self.store_path, "r")
        pairs = store.complete_pairs()
        if not pairs:
            raise StoreError(f"{self.store_path}: the store has no complete (scene, query) pairs to train on")
        self.train_pairs, self.val_pairs = split_pairs(pairs, self.config.data)
        if not self.train_pairs:
            raise StoreError(f"{self.store_path}: no training pairs left after the scene split")
        if not self.val_pairs and self.config.data.val_fraction > 0 and not self.config.data.val_scenes:
            n = len({s for s, _ in pairs})
            logging.getLogger(__name__).warning(
                "%s: %d scene(s), so no scene is held out for validation (data.val_fraction %s needs >= 2 "
                "scenes): 0 validation queries, no val metrics", self.store_path, n, self.config.data.val_fraction)
        self._listed = True

    def setup(self, stage: str | None = None) -> None:
        self.list_pairs()

    def _dataset(self, pairs: list[Pair], train: bool) -> StoreQueryDataset:
        cfg = self.config
        need_features = cfg.loss.spatial and cfg.loss.spatial_mode != "prototype"
        return StoreQueryDataset(
            self.store_path,
            pairs,
            cfg.data,
            cfg.fusion,
            train=train,
            seed=cfg.trainer.seed,
            use_normals=cfg.model.use_normals,
            use_height=cfg.model.use_height,
            with_features=need_features,
        )

    def _rank_world(self) -> tuple[int, int]:
        trainer = getattr(self, "trainer", None)
        if trainer is None:
            return 0, 1
        return int(trainer.global_rank), int(trainer.world_size)

    def _loader(self, pairs: list[Pair], train: bool) -> DataLoader:
        d = self.config.data
        rank, world = self._rank_world()
        dataset = self._dataset(pairs, train)
        sampler = ShardedSampler(len(dataset), shuffle=train, seed=self.config.trainer.seed, rank=rank, world_size=world, pad=train)
        workers = max(0, int(d.num_workers))
        return DataLoader(
            dataset,
            batch_size=d.batch_size if train else d.val_batch_size,
            sampler=sampler,
            num_workers=workers,
            collate_fn=collate,
            persistent_workers=workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        self.list_pairs()
        return self._loader(self.train_pairs, train=True)

    def val_dataloader(self) -> DataLoader:
        self.list_pairs()
        return self._loader(self.val_pairs, train=False)
