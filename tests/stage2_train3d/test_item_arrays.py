"""One query's item arrays (one mask gather, batched feature sampling) against a per-pair reference built
by hand from the store's records, on the toy store; the gather/fuse split against fuse_labels."""

from __future__ import annotations

import numpy as np
import pytest

from mllm3d.shared.geometry import Correspondences
from mllm3d.shared.store import open_store
from mllm3d.stage2_train3d.config import DataConfig
from mllm3d.stage2_train3d.dataset import StoreQueryDataset
from mllm3d.stage2_train3d.fusion import FusionConfig, fuse_labels, fuse_pairs, query_weights, visible_pairs
from mllm3d.stage2_train3d.item import query_arrays, sample_image_features, sample_view_features
from tests.stage2_toy import build_toy_store


@pytest.fixture(scope="module")
def toy_store(tmp_path_factory: pytest.TempPathFactory):
    return build_toy_store(tmp_path_factory.mktemp("s2item") / "store.zarr", n_scenes=2, image_features=True)


def _bilinear(fmap: np.ndarray, r: int, c: int, image_size: tuple[int, int]) -> np.ndarray:
    """Scalar bilinear sample of a (C,h,w) map at pixel (r, c) (float64, clamped at the border)."""
    _, h, w = fmap.shape
    y = min(max((r + 0.5) * h / image_size[0] - 0.5, 0.0), h - 1)
    x = min(max((c + 0.5) * w / image_size[1] - 0.5, 0.0), w - 1)
    y0, x0 = int(np.floor(y)), int(np.floor(x))
    y1, x1 = min(y0 + 1, h - 1), min(x0 + 1, w - 1)
    f = fmap.astype(np.float64)
    dy, dx = y - y0, x - x0
    return (f[:, y0, x0] * (1 - dx) * (1 - dy) + f[:, y0, x1] * dx * (1 - dy)
            + f[:, y1, x0] * (1 - dx) * dy + f[:, y1, x1] * dx * dy)


def _reference(scene, rec, fusion: FusionConfig) -> dict[str, np.ndarray]:
    """Pairs, weights, fused labels and features of one query, pair by pair from the records."""
    _, weights, _, _ = query_weights(rec, fusion)
    used = [i for i in range(rec.num_views) if weights[i] > 0]
    n = scene.num_points
    num, den = np.zeros(n), np.zeros(n)
    point, view, target, pw, f2d, f2d_pair = [], [], [], [], [], []
    for i in used:
        pidx, rows, cols = scene.correspondences.view(int(rec.view_index[i]))
        for p, r, c in zip(pidx.tolist(), rows.tolist(), cols.tolist(), strict=True):
            t = bool(rec.masks[i, r, c])
            if t:
                f2d_pair.append(len(point))
                f2d.append(_bilinear(rec.image_features[i], r, c, scene.image_size))
            point.append(p)
            view.append(i)
            target.append(float(t))
            pw.append(float(weights[i]) * len(used))
            num[p] += float(weights[i]) * t
            den[p] += float(weights[i])
    seen = den > 0
    prob = np.where(seen, num / np.where(seen, den, 1.0), 0.0)
    return {"pair_point": np.array(point), "pair_view": np.array(view), "pair_target": np.array(target),
            "pair_weight": np.array(pw), "f2d": np.array(f2d), "f2d_pair": np.array(f2d_pair),
            "fused_prob": prob, "seen": seen}


@pytest.mark.parametrize("token_for_query", [True, False])
def test_query_arrays_match_a_per_pair_reference(toy_store, token_for_query: bool) -> None:
    store = open_store(toy_store)
    scene = store.read_scene("toy01")
    fusion = FusionConfig(token_for_query=token_for_query)
    for qid in ("q1", "q2", "q3"):
        rec = store.read_query("toy01", qid)
        rec.view_index = rec.view_index[[2, 0, 4, 1, 3]]  # query views in another order than the scene's
        rec.masks, rec.image_features = rec.masks[[2, 0, 4, 1, 3]], rec.image_features[[2, 0, 4, 1, 3]]
        got = query_arrays(scene, rec, fusion, "toy01/" + qid)
        ref = _reference(scene, rec, fusion)
        assert got["pair_point"].dtype == got["pair_view"].dtype == got["f2d_pair"].dtype == np.int64
        assert got["pair_target"].dtype == got["pair_weight"].dtype == got["f2d"].dtype == np.float32
        for key in ("pair_point", "pair_view", "pair_target", "f2d_pair", "seen"):
            assert np.array_equal(got[key], ref[key]), key
        assert np.array_equal(got["pair_weight"], ref["pair_weight"].astype(np.float32))
        np.testing.assert_allclose(got["fused_prob"], ref["fused_prob"], rtol=0, atol=1e-6)
        np.testing.assert_allclose(got["f2d"], ref["f2d"], rtol=0, atol=1e-6)
        assert got["f2d"].shape[0] == int(ref["pair_target"].sum()) > 0


def test_items_without_features_have_empty_f2d(toy_store) -> None:
    ds = StoreQueryDataset(toy_store, [("toy00", "q1"), ("toy00", "q2")], DataConfig(queries_per_item=2),
                           FusionConfig(), train=False, with_features=False)
    item = ds[0]
    assert item["f2d"].shape == (0, 0) and item["f2d_pair"].shape == (0,)
    assert item["pair_target"].sum() > 0


def test_visible_pairs_then_fuse_pairs_equals_fuse_labels() -> None:
    rng = np.random.default_rng(3)
    n, hw = 300, (9, 11)
    parts = []
    for _ in range(6):
        pts = np.sort(rng.choice(n, rng.integers(0, n // 2), replace=False))
        parts.append((pts, rng.integers(0, hw[0], len(pts)), rng.integers(0, hw[1], len(pts))))
    corr = Correspondences.from_views(parts)
    view_index = np.array([4, 1, 5, 0])
    masks = rng.random((4, *hw)) < 0.5
    weights = np.array([0.5, 0.0, 0.3, 0.2], np.float32)
    pairs = visible_pairs(corr, masks, weights, view_index)
    assert pairs.used.tolist() == [0, 2, 3] and pairs.counts.tolist() == [len(parts[v][0]) for v in (4, 5, 0)]
    prob, seen = fuse_pairs(n, pairs, weights)
    ref_prob, ref_seen = fuse_labels(n, corr.subset(view_index), masks, weights)
    assert np.array_equal(prob, ref_prob) and np.array_equal(seen, ref_seen)
    empty = visible_pairs(corr, masks, np.zeros(4, np.float32), view_index)
    assert empty.point.shape == (0,) and not fuse_pairs(n, empty, np.zeros(4, np.float32))[1].any()


def test_sample_view_features_equals_one_view_at_a_time() -> None:
    rng = np.random.default_rng(5)
    fmaps = rng.random((3, 5, 4, 6)).astype(np.float16)
    views = rng.integers(0, 3, 200)
    rows, cols = rng.integers(0, 16, 200), rng.integers(0, 24, 200)
    got = sample_view_features(fmaps, views, rows, cols, (16, 24))
    for v in range(3):
        sel = views == v
        assert np.array_equal(got[sel], sample_image_features(fmaps[v], rows[sel], cols[sel], (16, 24)))
        ref = np.stack([_bilinear(fmaps[v], r, c, (16, 24)) for r, c in zip(rows[sel], cols[sel], strict=True)])
        np.testing.assert_allclose(got[sel], ref, rtol=0, atol=1e-6)
    # a float64 map is sampled from its float32 values
    f64 = rng.random((5, 4, 6))
    assert np.array_equal(sample_image_features(f64, rows, cols, (16, 24)),
                          sample_image_features(f64.astype(np.float32), rows, cols, (16, 24)))
