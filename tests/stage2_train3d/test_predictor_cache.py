"""Predictor reuses the backbone's features across queries of one cloud, and never for another cloud."""

from __future__ import annotations

import numpy as np
import torch

from mllm3d.stage2_train3d.config import TrainConfig, with_overrides
from mllm3d.stage2_train3d.model import build_network
from mllm3d.stage2_train3d.predictor import Predictor

TINY = ["model.stem=8", "model.down=[8,16]", "model.up=[16,8]", "model.feature_dim=16", "model.query_dim=8"]


def _predictor(seed: int = 0) -> tuple[Predictor, list[int]]:
    cfg = with_overrides(TrainConfig(), TINY)
    torch.manual_seed(seed)
    pred = Predictor(build_network(cfg.model), cfg)
    calls: list[int] = []
    pred.net.backbone.register_forward_hook(lambda *_: calls.append(1))
    return pred, calls


def test_queries_of_one_cloud_run_the_backbone_once_and_match_an_uncached_predictor() -> None:
    rng = np.random.default_rng(0)
    pts = rng.uniform(0, 3, (2000, 3)).astype(np.float32)
    colors = rng.uniform(0, 1, (2000, 3)).astype(np.float32)
    q1, q2 = rng.normal(size=8).astype(np.float32), rng.normal(size=8).astype(np.float32)
    cached, calls = _predictor()
    p1, p2 = cached.predict_points(pts, colors, q1), cached.predict_points(pts, colors, q2)
    assert len(calls) == 1
    fresh, _ = _predictor()  # same weights, nothing cached
    np.testing.assert_array_equal(p2, fresh.predict_points(pts, colors, q2))
    np.testing.assert_array_equal(p1, _predictor()[0].predict_points(pts, colors, q1))
    assert not np.array_equal(p1, p2)  # the queries do differ

    moved = colors.copy()
    moved[0, 0] += 0.5  # one colour changed in place: another cloud
    p3 = cached.predict_points(pts, moved, q1)
    assert len(calls) == 2
    np.testing.assert_array_equal(p3, _predictor()[0].predict_points(pts, moved, q1))
