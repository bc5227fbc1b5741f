"""Evaluation rows on a hand-made store whose per-query IoUs are known."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from shared.metrics import gt_mask
from stage2_train3d.evaluate import (
    BASELINE_NAME,
    NetworkMethod,
    ProjectionBaseline,
    evaluate,
    select_pairs,
    write_csv,
    write_json,
)
from stage2_train3d.fusion import FusionConfig
from tests.toy_store import SCENE, build_toy_store


@pytest.fixture
def store(tmp_path: Path):
    return build_toy_store(tmp_path / "toy.zarr")


class OraclePredictor:
    """Probability 0.9 on the GT points, 0.2 elsewhere (a hand-made 'network' for the row plumbing)."""

    threshold = 0.5

    def predict(self, scene, record) -> np.ndarray:
        gt = gt_mask(scene.instance_ids, record.query.target_ids or [])
        return np.where(gt, 0.9, 0.2).astype(np.float32)


def test_baseline_scores_by_hand(store) -> None:
    pairs, unknown = select_pairs(store)
    assert len(pairs) == 4 and unknown == []
    res = evaluate(store, pairs, [ProjectionBaseline(FusionConfig())])
    ious = {s.query_id: s.iou for s in res.row(BASELINE_NAME).scores}
    assert ious["chair"] == 1.0
    assert ious["table"] == pytest.approx(8 / 12)  # columns 8..19 predicted, 8..15 true
    assert ious["nothing"] == 1.0  # zero-target, nothing predicted
    assert ious["noseg"] == 0.0  # no view produced [SEG]: nothing predicted
    s = res.row(BASELINE_NAME).summary
    assert s["n"] == 4 and s["miou"] == pytest.approx((1 + 8 / 12 + 1 + 0) / 4)
    assert s["acc25"] == 0.75 and s["acc50"] == 0.75
    assert s["miou_grounded"] == pytest.approx((1 + 8 / 12 + 1) / 3)
    assert s["n_targeted"] == 3 and s["miou_targeted"] == pytest.approx((1 + 8 / 12) / 3)
    assert s["n_zero_target"] == 1 and s["zero_target_acc"] == 1.0
    kinds = res.row(BASELINE_NAME).by_kind
    assert set(kinds) == {"explicit", "spatial", "implicit"}
    assert kinds["implicit"]["n"] == 2 and kinds["implicit"]["miou"] == 0.5


def test_view_filter_matters_for_the_baseline(store) -> None:
    # uniform weights, vote threshold 0.3: unfiltered, the confidence-0.1 all-image view votes 1/3 for
    # every point outside columns 8..19, enough to mark the whole plane; filtered, it has no vote
    pairs = [(SCENE, "table")]
    uniform = FusionConfig(view_filter=False, token_for_query=False, vote_threshold=0.3)
    filtered = FusionConfig(view_filter=True, token_for_query=False, vote_threshold=0.3)
    a = evaluate(store, pairs, [ProjectionBaseline(uniform, name="unfiltered")]).rows[0].scores[0]
    b = evaluate(store, pairs, [ProjectionBaseline(filtered, name="filtered")]).rows[0].scores[0]
    assert a.iou == pytest.approx(8 / 32)  # the whole plane predicted
    assert b.iou == pytest.approx(8 / 12)


def test_rows_side_by_side_and_outputs(store, tmp_path: Path) -> None:
    pairs, _ = select_pairs(store, [SCENE, "missing_scene"])
    methods = [ProjectionBaseline(), NetworkMethod("oracle", OraclePredictor())]
    res = evaluate(store, pairs, methods, split="all")
    assert [r.name for r in res.rows] == [BASELINE_NAME, "oracle"]
    assert res.row("oracle").summary["miou"] == 1.0
    assert [s.query_id for s in res.row("oracle").scores] == [s.query_id for s in res.row(BASELINE_NAME).scores]
    data = json.loads(write_json(res, tmp_path / "r.json").read_text())
    assert data["num_pairs"] == 4 and data["rows"][1]["summary"]["acc50"] == 1.0
    assert len(data["rows"][0]["queries"]) == 4
    lines = list(csv.DictReader(open(write_csv(res, tmp_path / "r.csv"))))
    assert [(ln["method"], ln["subset"]) for ln in lines[:4]] == [
        (BASELINE_NAME, "all"),
        (BASELINE_NAME, "explicit"),
        (BASELINE_NAME, "implicit"),
        (BASELINE_NAME, "spatial"),
    ]
    assert float(lines[4]["miou"]) == 1.0


def test_unknown_targets_are_skipped(store) -> None:
    from tests.toy_store import make_record, region

    store.write_query(make_record("unknown", np.stack([region(slice(0, 8))] * 3), None))
    pairs, _ = select_pairs(store)
    res = evaluate(store, pairs, [ProjectionBaseline()])
    assert len(res.pairs) == 4 and res.skipped == [(SCENE, "unknown", "target ids unknown")]
    _, unknown = select_pairs(store, ["nope"])
    assert unknown == ["nope"]
