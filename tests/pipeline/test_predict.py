"""predict: Stage 1 for a new query on a synthetic scene -> q -> network scores -> PLY (untrained net)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from mllm3d.pipeline.predict import (
    PredictConfig,
    new_query_id,
    parse_ids,
    predict_query,
    resolve_query,
    write_prediction_ply,
)
from mllm3d.shared.errors import BadInputError
from mllm3d.shared.ply import read_ply
from mllm3d.shared.synthetic import SyntheticSource
from mllm3d.stage1_pseudolabel.segment_loop import segment_one_query
from mllm3d.stage1_pseudolabel.segmenter import build_segmenter
from mllm3d.stage2_train3d.config import load_config
from mllm3d.stage2_train3d.fusion import FusionConfig
from mllm3d.stage2_train3d.model import build_network
from mllm3d.stage2_train3d.predictor import Predictor

SMALL = ["model.stem=8", "model.down=[8,16]", "model.up=[16,16]", "model.feature_dim=16", "model.query_dim=32"]


@pytest.fixture(scope="module")
def source() -> SyntheticSource:
    return SyntheticSource(1, seed=3)


@pytest.fixture(scope="module")
def scene(source):
    return source.load("synth_0000")


@pytest.fixture(scope="module")
def segmenter():
    return build_segmenter("synthetic", {"seed": 0, "embed_dim": 32, "miss_rate": 0.0, "hallucination_rate": 0.0})


def test_resolve_query_from_source_and_new_text(source) -> None:
    q0 = source.scene_queries("synth_0000")[0]
    got = resolve_query(source, PredictConfig(scene_id="synth_0000", query_id=q0.query_id))
    assert got == q0
    para = resolve_query(source, PredictConfig(scene_id="synth_0000", query_id=q0.query_id, text="a paraphrase"))
    assert para.text == "a paraphrase" and para.target_ids == q0.target_ids
    new = resolve_query(source, PredictConfig(scene_id="synth_0000", text="the lamp", target_ids=[2]))
    assert new.query_id == new_query_id("the lamp") and new.target_ids == [2]
    with pytest.raises(BadInputError, match="--target-ids"):
        resolve_query(source, PredictConfig(scene_id="synth_0000", text="the lamp"))
    with pytest.raises(BadInputError, match="no query 'nope'"):
        resolve_query(source, PredictConfig(scene_id="synth_0000", query_id="nope"))
    assert parse_ids("3, 7") == [3, 7] and parse_ids("") == [] and parse_ids(None) is None


def test_stage1_for_a_new_query_is_seeded(scene, segmenter, source) -> None:
    q = resolve_query(source, PredictConfig(scene_id="synth_0000", text="x", target_ids=[int(scene.instance_ids.max())]))
    a = segment_one_query(scene, q, segmenter, views=3, seed=5)
    b = segment_one_query(scene, q, segmenter, views=3, seed=5)
    assert a.num_views == 3 and np.array_equal(a.view_index, b.view_index)
    assert a.masks.shape[1:] == scene.views[0].depth_size
    assert np.array_equal(a.masks, b.masks) and a.has_seg.all()


def test_predict_query_scores_every_point_and_writes_ply(scene, segmenter, source, tmp_path: Path) -> None:
    torch.manual_seed(0)
    cfg = load_config(None, SMALL)
    predictor = Predictor(build_network(cfg.model), cfg)
    q = source.scene_queries("synth_0000")[0]
    pred = predict_query(scene, q, segmenter, predictor, FusionConfig(), views=4, seed=0)
    assert pred.prob.shape == (scene.num_points,) and np.all((pred.prob >= 0) & (pred.prob <= 1))
    assert pred.q.shape == (32,) and pred.keep.sum() >= 1
    np.testing.assert_allclose(pred.weights.sum(), 1.0, atol=1e-5)
    # q is the Token-for-Query embedding of the kept views, as in training
    from mllm3d.stage2_train3d.fusion import query_weights

    np.testing.assert_allclose(pred.q, query_weights(pred.record, FusionConfig())[0])
    path = write_prediction_ply(tmp_path / "p" / "pred.ply", scene, pred)
    data = read_ply(path)
    np.testing.assert_allclose(data["score"], pred.prob, rtol=1e-6)
    assert np.array_equal(data["mask"].astype(bool), pred.prob >= 0.5)
    red = (data["red"] == 255) & (data["green"] == 0) & (data["blue"] == 0)
    assert np.array_equal(red[pred.mask], np.ones(int(pred.mask.sum()), bool))
    dimmed = np.rint(scene.colors[~pred.mask].astype(np.float32) * 0.35).astype(np.uint8)
    assert np.array_equal(np.stack([data["red"], data["green"], data["blue"]], 1)[~pred.mask], dimmed)
