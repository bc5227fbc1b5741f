"""Evaluation rows on a hand-made store whose per-query IoUs are known."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from mllm3d.pipeline.evaluate import (
    BASELINE_NAME,
    NetworkMethod,
    ProjectionBaseline,
    evaluate,
    query_groups,
    select_pairs,
    uniqueness,
    write_csv,
    write_json,
)
from mllm3d.shared.errors import StoreError
from mllm3d.shared.metrics import gt_mask
from mllm3d.shared.scene import Query
from mllm3d.stage2_train3d.fusion import FusionConfig
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
    # grounded-only mIoU: targeted queries with IoU > 0.25 (chair, table), not the zero-target one
    assert s["miou_grounded"] == pytest.approx((1 + 8 / 12) / 2) and s["n_grounded"] == 2
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
    assert [(ln["method"], ln["breakdown"], ln["subset"]) for ln in lines if ln["method"] == BASELINE_NAME] == [
        (BASELINE_NAME, "all", "all"),
        (BASELINE_NAME, "kind", "explicit"),
        (BASELINE_NAME, "kind", "implicit"),
        (BASELINE_NAME, "kind", "spatial"),
        (BASELINE_NAME, "uniqueness", "unique"),
        (BASELINE_NAME, "uniqueness", "unknown"),
    ]
    oracle_all = next(ln for ln in lines if ln["method"] == "oracle" and ln["breakdown"] == "all")
    assert float(oracle_all["miou"]) == 1.0 and float(oracle_all["n_missing_targets"]) == 0


def test_unknown_targets_are_skipped(store) -> None:
    from tests.toy_store import make_record, region

    store.write_query(make_record("unknown", np.stack([region(slice(0, 8))] * 3), None))
    pairs, _ = select_pairs(store)
    res = evaluate(store, pairs, [ProjectionBaseline()])
    assert len(res.pairs) == 4 and res.skipped == [(SCENE, "unknown", "target ids unknown")]
    _, unknown = select_pairs(store, ["nope"])
    assert unknown == ["nope"]


def test_uniqueness_from_instance_labels() -> None:
    labels = {1: "chair", 2: "office chair", 3: "Office_Chair", 4: "table"}

    def q(targets, kind=None, **extra):
        return Query("s", "q", "text", targets, "x", kind, extra)

    assert uniqueness(q([1], object_name="chair"), labels) == "unique"
    assert uniqueness(q([2], object_name="office_chair"), labels) == "multiple"  # 2 and 3 after normalising
    assert uniqueness(q([2], instance_type="OFFICE  chair"), labels) == "multiple"
    assert uniqueness(q([4], obj_name="table"), labels) == "unique"
    # the annotation's class is not in the scene (Nr3D typo 'chfair'): the target instance's own label
    assert uniqueness(q([3], instance_type="chfair"), labels) == "multiple"
    assert uniqueness(q([1]), labels) == "unique"
    assert uniqueness(q([], object_name="chair"), labels) is None  # zero-target
    assert uniqueness(q([9], object_name="piano"), labels) is None  # neither name nor target known
    assert uniqueness(q([1], object_name="chair"), {}) is None  # no instance labels
    assert uniqueness(q([1], kind="multiple"), labels) == "multiple"  # an explicit kind is kept


def test_query_groups_reads_nr3d_flags() -> None:
    labels = {5: "sink", 6: "sink"}
    json_style = Query("s", "a", "t", [5], "nr3d", None, {"obj_name": "sink", "easy": True, "view_dep": False})
    csv_style = Query("s", "b", "t", [5], "nr3d", None,
                      {"instance_type": "sink", "is_easy_referit3d": "False", "is_vd_referit3d": "True"})
    assert query_groups(json_style, labels) == {
        "uniqueness": "multiple", "difficulty": "easy", "view": "view-independent"}
    assert query_groups(csv_style, labels) == {"uniqueness": "multiple", "difficulty": "hard", "view": "view-dependent"}
    assert query_groups(Query("s", "c", "t", [5], extra={"easy": "maybe"}), {}) == {}


def test_breakdowns_reach_json_and_csv(store, tmp_path: Path) -> None:
    from tests.toy_store import make_record, region

    rec = make_record("named", np.stack([region(slice(0, 8))] * 3), [1], kind=None)
    rec.query.extra = {"object_name": "Chair", "easy": False, "view_dep": True}
    store.write_query(rec)
    pairs, _ = select_pairs(store)
    res = evaluate(store, pairs, [ProjectionBaseline()])
    named = next(s for s in res.row(BASELINE_NAME).scores if s.query_id == "named")
    assert named.groups == {"uniqueness": "unique", "difficulty": "hard", "view": "view-dependent"}
    data = json.loads(write_json(res, tmp_path / "r.json").read_text())
    row = data["rows"][0]
    assert row["by_group"]["uniqueness"]["unique"]["n"] == 4  # chair, table, noseg, named
    assert row["by_group"]["uniqueness"]["unknown"]["n"] == 1  # the zero-target query
    assert row["by_group"]["difficulty"]["hard"]["miou"] == 1.0
    assert {q["query_id"]: q["groups"].get("uniqueness") for q in row["queries"]}["nothing"] is None
    lines = list(csv.DictReader(open(write_csv(res, tmp_path / "r.csv"))))
    assert ("view", "view-dependent") in {(ln["breakdown"], ln["subset"]) for ln in lines}


class _FlakyStore:
    """The toy store, except that some queries / scenes cannot be read."""

    def __init__(self, store, bad_queries=(), bad_scenes=()):
        self._store, self._bad_q, self._bad_s = store, set(bad_queries), set(bad_scenes)

    def __getattr__(self, name):
        return getattr(self._store, name)

    def read_scene(self, scene_id):
        if scene_id in self._bad_s:
            raise StoreError(f"{scene_id}: scene group is corrupt")
        return self._store.read_scene(scene_id)

    def read_query(self, scene_id, query_id, with_features=True):
        if query_id in self._bad_q:
            raise StoreError(f"{scene_id}/{query_id}: query group is corrupt")
        return self._store.read_query(scene_id, query_id, with_features=with_features)


def test_store_errors_skip_the_pair_and_continue(store) -> None:
    pairs, _ = select_pairs(store)
    res = evaluate(_FlakyStore(store, bad_queries={"table"}), pairs, [ProjectionBaseline(), NetworkMethod(
        "oracle", OraclePredictor())])
    assert [s.query_id for s in res.row("oracle").scores] == [q for _, q in res.pairs]
    assert len(res.pairs) == 3 and "table" not in {q for _, q in res.pairs}
    assert [(s, q) for s, q, _ in res.skipped] == [(SCENE, "table")]
    assert "query group is corrupt" in res.skipped[0][2]
    assert len(res.row(BASELINE_NAME).scores) == len(res.row("oracle").scores) == 3
    whole = evaluate(_FlakyStore(store, bad_scenes={SCENE}), pairs, [ProjectionBaseline()])
    assert whole.pairs == [] and len(whole.skipped) == 4 and "scene group is corrupt" in whole.skipped[0][2]


def test_seen_split_by_hand(tmp_path) -> None:
    """IoU on the points the views see vs the rest: every toy point is seen, so the whole IoU is the
    seen IoU and nothing is unseen; on a hand-made split the subset IoUs are counted by hand."""
    from mllm3d.pipeline.evaluate import ProjectionBaseline, evaluate
    from mllm3d.shared.metrics import seen_split, subset_iou
    from mllm3d.shared.store import open_store
    from tests.toy_store import SCENE, build_toy_store

    pred = np.array([1, 1, 0, 0, 1, 0], bool)
    gt = np.array([1, 0, 1, 0, 1, 1], bool)
    seen = np.array([1, 1, 1, 0, 0, 0], bool)
    assert subset_iou(pred, gt, seen) == 1 / 3  # seen: pred {0,1}, gt {0,2}: 1 / 3
    assert subset_iou(pred, gt, ~seen) == 1 / 2  # unseen: pred {4}, gt {4,5}: 1 / 2
    assert subset_iou(pred, gt, np.zeros(6, bool)) is None
    store = open_store(build_toy_store(tmp_path / "s.zarr").path, "r")
    res = evaluate(store, [(SCENE, "chair"), (SCENE, "table")], [ProjectionBaseline()])
    (row,) = res.rows
    for s in row.scores:
        assert s.target_seen_share == 1.0 and s.unseen_iou is None and s.seen_iou == s.iou
    split = seen_split(row.scores)
    assert split["seen_miou"] == row.summary["miou"] and split["target_seen_share"] == 1.0
    assert np.isnan(split["unseen_miou"])
