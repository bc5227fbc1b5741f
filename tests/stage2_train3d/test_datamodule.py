"""Data: voxelisation round trip, scene split, per-item pairs, feature sampling, collate, samplers."""

from __future__ import annotations

import numpy as np
import pytest

from mllm3d.shared.store import open_store
from mllm3d.stage2_train3d.config import DataConfig, TrainConfig
from mllm3d.stage2_train3d.datamodule import (
    ShardedSampler,
    StoreDataModule,
    StoreQueryDataset,
    collate,
    group_pairs,
    sample_image_features,
    split_pairs,
)
from mllm3d.stage2_train3d.fusion import FusionConfig
from mllm3d.stage2_train3d.voxelize import (
    augment_points,
    devoxelize,
    input_features,
    voxel_mean,
    voxel_normals,
    voxelize,
)
from tests.stage2_toy import H, W, build_toy_store


@pytest.fixture(scope="module")
def toy_store(tmp_path_factory: pytest.TempPathFactory):
    return build_toy_store(tmp_path_factory.mktemp("s2data") / "store.zarr", n_scenes=3, image_features=True)


def test_voxelize_inverse_round_trip():
    rng = np.random.default_rng(0)
    pts = rng.uniform(-1, 2, size=(3000, 3)).astype(np.float32)
    vox = voxelize(pts, 0.25)
    assert vox.coords.dtype == np.int32 and vox.coords.min() == 0
    assert vox.inverse.shape == (3000,) and vox.counts.sum() == 3000
    # every point lies inside the voxel it maps to
    lo = np.floor(pts / 0.25).astype(np.int64)
    assert np.array_equal(vox.coords[vox.inverse], (lo - lo.min(axis=0)).astype(np.int32))
    # unique voxels, and per-voxel means scattered back reproduce a per-voxel constant exactly
    assert len(np.unique(vox.coords, axis=0)) == vox.num_voxels
    voxel_values = np.arange(vox.num_voxels, dtype=np.float32)[:, None]
    assert np.array_equal(devoxelize(voxel_values, vox), vox.inverse[:, None].astype(np.float32))
    const = devoxelize(voxel_mean(pts, vox), vox)
    assert np.abs(const - pts).max() <= 0.25 * np.sqrt(3)
    feats = input_features(pts, np.full((3000, 3), 255, np.uint8), vox)
    assert feats.shape == (vox.num_voxels, 3) and np.allclose(feats, 1.0)


def test_height_feature_survives_augmentation():
    rng = np.random.default_rng(4)
    pts = rng.uniform(0, 3, size=(2000, 3)).astype(np.float32)
    pts[:, 2] += 5.0  # the scene's lowest point is the reference, not z = 0
    colors = rng.integers(0, 256, size=(2000, 3)).astype(np.uint8)
    vox = voxelize(pts, 0.25)
    feats = input_features(pts, colors, vox, use_normals=True, use_height=True)
    assert feats.shape == (vox.num_voxels, 7)
    assert np.allclose(feats[:, 6], voxel_mean(pts[:, 2:] - pts[:, 2].min() - 1.0, vox)[:, 0], atol=1e-5)
    # at a voxel size where every point is alone, each point keeps its height under augmentation
    moved = augment_points(pts, np.random.default_rng(5), rotate=True, flip=True, up_axis=2)
    fine, fine_moved = voxelize(pts, 1e-3), voxelize(moved, 1e-3)
    assert fine.num_voxels == fine_moved.num_voxels == 2000
    h1 = devoxelize(input_features(pts, colors, fine, use_height=True)[:, 3], fine)
    h2 = devoxelize(input_features(moved, colors, fine_moved, use_height=True)[:, 3], fine_moved)
    assert np.allclose(h1, pts[:, 2] - pts[:, 2].min() - 1.0, atol=1e-5) and np.allclose(h1, h2, atol=1e-5)


def test_voxel_normals_of_a_plane():
    rng = np.random.default_rng(1)
    pts = np.column_stack([rng.uniform(0, 1, 2000), rng.uniform(0, 1, 2000), np.full(2000, 0.3)])
    vox = voxelize(pts, 0.2)
    n = voxel_normals(pts, vox)
    full = vox.counts >= 3
    assert np.allclose(n[full], [0, 0, 1], atol=1e-6)


def test_augmentation_rotates_about_up_axis_only():
    rng = np.random.default_rng(2)
    pts = rng.normal(size=(100, 3)).astype(np.float32)
    out = augment_points(pts, np.random.default_rng(3), rotate=True, flip=True, up_axis=2)
    assert np.allclose(out[:, 2], pts[:, 2])
    assert np.allclose(np.linalg.norm(out[:, :2], axis=1), np.linalg.norm(pts[:, :2], axis=1), atol=1e-5)
    d0 = np.linalg.norm(pts[:, None] - pts[None], axis=-1)
    d1 = np.linalg.norm(out[:, None] - out[None], axis=-1)
    assert np.allclose(d0, d1, atol=1e-4)  # rigid: every point-indexed array stays valid


def test_split_by_scene_has_no_overlap():
    pairs = [(f"s{i}", f"q{j}") for i in range(10) for j in range(3)]
    train, val = split_pairs(pairs, DataConfig(val_fraction=0.3, split_seed=4))
    ts, vs = {s for s, _ in train}, {s for s, _ in val}
    assert not ts & vs and len(vs) == 3 and len(ts) == 7
    assert len(train) + len(val) == len(pairs)
    assert split_pairs(pairs, DataConfig(val_fraction=0.3, split_seed=4)) == (train, val)  # deterministic
    train, val = split_pairs(pairs, DataConfig(val_scenes=["s1", "s5"]))
    assert {s for s, _ in val} == {"s1", "s5"} and not {s for s, _ in train} & {"s1", "s5"}
    _, val = split_pairs(pairs[:6], DataConfig(val_fraction=0.01))
    assert len({s for s, _ in val}) == 1  # at least one val scene


def test_sample_image_features_orientation():
    # non-square 2x4 grid: value = 10*row + col, over a 20x40 image
    fmap = (10 * np.arange(2)[:, None] + np.arange(4)[None, :]).astype(np.float32)[None]
    rows = np.array([0, 19, 0, 12])
    cols = np.array([0, 0, 39, 15])
    got = sample_image_features(fmap, rows, cols, (20, 40))[:, 0]
    # (row 0, col 0) -> cell (0,0); (19, 0) -> (1, 0); (0, 39) -> (0, 3); (12, 15): y=0.75, x=1.05
    assert got[:3] == pytest.approx([0.0, 10.0, 3.0])
    assert got[3] == pytest.approx(10 * 0.75 + 1.05 * 1, abs=1e-4)


def test_item_pairs_match_masks_and_skip_dropped_views(toy_store):
    store = open_store(toy_store)
    ds = StoreQueryDataset(toy_store, [("toy00", "q1")], DataConfig(), FusionConfig(), train=False)
    item = ds[0]
    rec = store.read_query("toy00", "q1")
    scene = store.read_scene("toy00")
    assert item["view_weight"][4] == 0 and not item["view_keep"][4]  # the low-confidence hallucination
    assert np.array_equal(item["view_confidence"], rec.confidence) and np.array_equal(item["view_attention"], rec.attention)
    assert set(np.unique(item["pair_view"]).tolist()) == {0, 1, 2, 3}
    corr = scene.correspondences.subset(rec.view_index)
    for v in range(4):
        pidx, rows, cols = corr.view(v)
        sel = item["pair_view"] == v
        assert np.array_equal(item["pair_point"][sel], pidx)
        assert np.array_equal(item["pair_target"][sel], rec.masks[v][rows, cols].astype(np.float32))
    # pair weights = k_used * omega: mean 1 over views
    assert np.unique(item["pair_weight"]).size == 4
    assert item["pair_weight"][item["pair_view"] == 0][0] == pytest.approx(4 * item["view_weight"][0])
    # image features only at positive pairs
    assert item["f2d"].shape == (int(item["pair_target"].sum()), 4)
    assert np.all(item["pair_target"][item["f2d_pair"]] == 1)
    assert item["has_gt"].tolist() == [True] and item["gt"].sum() == np.count_nonzero(scene.instance_ids == 1)
    assert item["coords"].shape[0] == item["feats"].shape[0] and item["inverse"].shape == (scene.num_points,)
    assert item["q"].shape == (1, 8) and item["seen"].dtype == bool and item["query_ids"] == ["q1"]


def test_collate_offsets_and_global_indices(toy_store):
    ds = StoreQueryDataset(
        toy_store, [("toy00", "q1"), ("toy01", "q2")], DataConfig(voxel_size=0.1), FusionConfig(), train=True
    )
    a, b = ds[(0, 0)], ds[(0, 1)]
    batch = collate([a, b])
    na, nb = a["num_points"], b["num_points"]
    ma = a["coords"].shape[0]
    assert batch["point_offset"].tolist() == [0, na, na + nb]
    assert batch["voxel_offset"].tolist() == [0, ma, ma + b["coords"].shape[0]]
    assert batch["coords"].dtype.is_floating_point is False and batch["coords"].shape[1] == 4
    assert batch["coords"][:ma, 0].eq(0).all() and batch["coords"][ma:, 0].eq(1).all()
    assert batch["point_voxel"][na:].min().item() >= ma
    pa = a["pair_point"].shape[0]
    assert np.array_equal(batch["pair_point"][pa:].numpy(), b["pair_point"] + na)
    assert np.array_equal(batch["pair_view"][pa:].numpy(), b["pair_view"] + a["num_views"])
    assert np.array_equal(batch["f2d_pair"][a["f2d"].shape[0] :].numpy(), b["f2d_pair"] + pa)
    assert batch["q"].shape == (2, 8) and batch["scene_ids"] == ["toy00", "toy01"]
    assert batch["view_confidence"].shape == batch["view_attention"].shape == (a["num_views"] + b["num_views"],)
    assert batch["query_ids"] == ["q1", "q2"] and batch["query_offset"].tolist() == [0, 1, 2]
    assert np.array_equal(batch["pair_qp"][pa:].numpy(), na + b["pair_point"])  # block of item b, query 0
    # the same key gives the same augmented item (seeded by (seed, epoch, index)); another epoch differs
    assert np.array_equal(ds[(0, 1)]["coords"], b["coords"])
    assert not np.array_equal(ds[(1, 1)]["coords"], b["coords"])


def test_multi_query_items_share_one_scene(toy_store):
    pairs = [("toy00", "q1"), ("toy00", "q2"), ("toy00", "q3"), ("toy01", "q1")]
    assert group_pairs(pairs, 2) == [("toy00", ["q1", "q2"]), ("toy00", ["q3"]), ("toy01", ["q1"])]
    assert [len(q) for _, q in group_pairs([("s", f"q{i}") for i in range(10)], 8)] == [5, 5]
    ds = StoreQueryDataset(toy_store, pairs, DataConfig(queries_per_item=3), FusionConfig(), train=False)
    assert len(ds) == 2
    item = ds[0]
    store = open_store(toy_store)
    scene = store.read_scene("toy00")
    n = scene.num_points
    assert item["query_ids"] == ["q1", "q2", "q3"] and item["q"].shape == (3, 8)
    assert item["gt"].shape == (3 * n,) and item["seen"].shape == (3 * n,)
    for j, obj in enumerate((1, 2, 3)):  # query-major blocks: query j's ground truth is gt[j*N:(j+1)*N]
        assert np.array_equal(item["gt"][j * n : (j + 1) * n] > 0, scene.instance_ids == obj)
    batch = collate([item, ds[1]])
    qp = batch["pair_qp"].numpy()
    first = batch["pair_offset"][1].item()
    assert np.array_equal(qp[:first] // n, batch["pair_query"][:first].numpy())
    assert np.array_equal(qp[:first] % n, batch["pair_point"][:first].numpy())
    assert batch["qp_offset"].tolist() == [0, 3 * n, 3 * n + ds.scene("toy01").num_points]
    assert set(np.unique(batch["pair_view"][:first].numpy() // 5).tolist()) == {0, 1, 2}  # 5 views per query


def test_scene_cache_is_reused(toy_store):
    pairs = [("toy00", "q1"), ("toy00", "q2"), ("toy00", "q3"), ("toy01", "q1")]
    ds = StoreQueryDataset(toy_store, pairs, DataConfig(scene_cache=1, queries_per_item=1), FusionConfig(), train=False)
    for i in range(4):
        ds[i]
    assert (ds.cache_misses, ds.cache_hits) == (2, 2)
    assert list(ds._cache) == ["toy01"]  # LRU of size 1


def test_sharded_sampler_deterministic_and_disjoint():
    s = ShardedSampler(10, shuffle=True, seed=3)
    s.set_epoch(2)
    first = list(s)
    s.set_epoch(2)
    assert list(s) == first and all(e == 2 for e, _ in first)
    s.set_epoch(3)
    assert [i for _, i in s] != [i for _, i in first]
    shards = [[i for _, i in ShardedSampler(10, True, 3, rank=r, world_size=3, pad=True)] for r in range(3)]
    assert all(len(x) == 4 for x in shards) and set(sum(shards, [])) == set(range(10))
    val = [[i for _, i in ShardedSampler(10, False, 3, rank=r, world_size=3, pad=False)] for r in range(3)]
    assert sorted(sum(val, [])) == list(range(10))


def test_datamodule_loaders(toy_store):
    cfg = TrainConfig()
    cfg.data.val_fraction = 0.34
    cfg.data.batch_size = 2
    dm = StoreDataModule(toy_store, cfg)
    dm.setup("fit")
    assert not {s for s, _ in dm.train_pairs} & {s for s, _ in dm.val_pairs}
    assert len(dm.train_pairs) == 6 and len(dm.val_pairs) == 3
    batch = next(iter(dm.train_dataloader()))
    assert batch["batch_size"] == 2 and batch["coords"].shape[1] == 4
    assert len(dm.val_dataloader()) == 1


def test_image_size_mismatch_is_reported(toy_store):
    ds = StoreQueryDataset(toy_store, [("toy00", "q1")], DataConfig(), FusionConfig(), train=False)
    scene = ds.scene("toy00")
    scene.image_size = (H + 1, W)
    with pytest.raises(Exception, match="toy00.*q1"):
        ds[0]
