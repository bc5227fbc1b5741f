"""Serving the pseudo-label store to Lightning: the scene split, the samplers and the DataLoaders.

:class:`StoreDataModule` lists the store's complete (scene, query) pairs (small zarr.json files only),
splits them by scene (:func:`split_pairs`) and builds every DataLoader in one place
(``StoreDataModule._loader``) over :class:`~mllm3d.stage2_train3d.dataset.StoreQueryDataset` items,
ordered by :class:`ShardedSampler` and batched by :func:`~mllm3d.stage2_train3d.collate.collate`.
The dataset, collate and item helpers are re-exported here.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
from torch.utils.data import DataLoader, Sampler

from mllm3d.shared.errors import StoreError
from mllm3d.shared.store import open_store
from mllm3d.stage2_train3d.collate import collate
from mllm3d.stage2_train3d.config import DataConfig, TrainConfig
from mllm3d.stage2_train3d.dataset import Pair, StoreQueryDataset, group_pairs
from mllm3d.stage2_train3d.item import sample_image_features

__all__ = [
    "Pair",
    "ShardedSampler",
    "StoreDataModule",
    "StoreQueryDataset",
    "collate",
    "group_pairs",
    "sample_image_features",
    "split_pairs",
]


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
        # The epoch training starts at (set by a resume). Lightning builds the train iterator (and its
        # worker processes prefetch batches) before it calls set_epoch, so the sampler must start there.
        self.start_epoch = 0

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
        if train:
            sampler.set_epoch(self.start_epoch)
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
