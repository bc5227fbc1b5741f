"""fuse_labels (float32 votes, one pass) against a float64 per-view reference on random scenes."""

from __future__ import annotations

import numpy as np

from mllm3d.shared.geometry import Correspondences
from mllm3d.stage2_train3d.fusion import fuse_labels


def _reference(n: int, corr: Correspondences, masks: np.ndarray, weights: np.ndarray):
    """The float64 per-view accumulation fuse_labels used before (independent implementation)."""
    num = np.zeros(n)
    den = np.zeros(n)
    for i in range(masks.shape[0]):
        w = float(weights[i])
        if w <= 0:
            continue
        p, r, c = corr.view(i)
        for pi, ri, ci in zip(p.tolist(), r.tolist(), c.tolist(), strict=True):
            num[pi] += w * float(masks[i][ri, ci])
            den[pi] += w
    seen = den > 0
    prob = np.zeros(n)
    prob[seen] = num[seen] / den[seen]
    return prob, seen


def _random_case(seed: int, n: int = 400, k: int = 5, hw: tuple[int, int] = (12, 16)):
    rng = np.random.default_rng(seed)
    parts = []
    for _ in range(k):
        pts = np.sort(rng.choice(n, rng.integers(0, n // 2), replace=False))
        parts.append((pts, rng.integers(0, hw[0], len(pts)), rng.integers(0, hw[1], len(pts))))
    masks = rng.random((k, *hw)) < 0.4
    weights = rng.random(k).astype(np.float32)
    weights[rng.integers(0, k)] = 0.0  # a dropped view
    return Correspondences.from_views(parts), masks, weights / weights.sum()


def test_float32_fusion_matches_float64_reference() -> None:
    for seed in range(6):
        corr, masks, w = _random_case(seed)
        prob, seen = fuse_labels(400, corr, masks, w)
        ref_prob, ref_seen = _reference(400, corr, masks, w)
        assert prob.dtype == np.float32
        assert np.array_equal(seen, ref_seen)
        np.testing.assert_allclose(prob, ref_prob, rtol=0, atol=1e-6)
        assert np.all(prob[~seen] == 0)


def test_all_weights_zero_sees_nothing() -> None:
    corr, masks, w = _random_case(1)
    prob, seen = fuse_labels(400, corr, masks, np.zeros_like(w))
    assert not seen.any() and not prob.any()
