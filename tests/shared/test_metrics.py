"""Point-mask metrics on hand-made masks (docs/evaluation.md protocol)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mllm3d.shared.metrics import (
    breakdown_by_group,
    breakdown_by_kind,
    grounded_miou,
    gt_mask,
    point_iou,
    score_query,
    summarize,
    summarize_scores,
)

# 10 points: instance 1 = points 0..3, instance 2 = points 4..5, background -1 elsewhere
INST = np.array([1, 1, 1, 1, 2, 2, -1, -1, -1, -1], dtype=np.int32)


def test_gt_mask_is_union_of_targets() -> None:
    assert gt_mask(INST, [1]).sum() == 4
    assert np.array_equal(gt_mask(INST, [1, 2]), INST > 0)
    assert not gt_mask(INST, []).any()
    assert not gt_mask(INST, None).any()


def test_point_iou_by_hand() -> None:
    gt = gt_mask(INST, [1])
    pred = np.zeros(10, bool)
    pred[[2, 3, 4, 5]] = True  # 2 of 4 target points + 2 false positives: 2 / 6
    assert point_iou(pred, gt) == pytest.approx(2 / 6)
    assert point_iou(gt, gt) == 1.0


def test_empty_prediction_and_empty_target() -> None:
    empty = np.zeros(10, bool)
    assert point_iou(empty, gt_mask(INST, [1])) == 0.0  # nothing predicted, target exists
    assert point_iou(empty, empty) == 1.0  # zero-target, nothing predicted
    some = np.zeros(10, bool)
    some[7] = True
    assert point_iou(some, empty) == 0.0  # zero-target, something predicted


def test_acc_is_strictly_greater_than_k() -> None:
    s = summarize([0.25, 0.5, 0.5000001, 0.2500001])
    assert s["acc25"] == pytest.approx(0.75)  # 0.25 itself does not count
    assert s["acc50"] == pytest.approx(0.25)  # 0.5 itself does not count
    assert s["miou"] == pytest.approx((0.25 + 0.5 + 0.5000001 + 0.2500001) / 4)
    assert s["n"] == 4


def test_exact_quarter_and_half_ious_from_masks() -> None:
    inst = np.array([1, 1, 1, 1, -1, -1, -1, -1], dtype=np.int32)
    pred_quarter = np.array([1, 0, 0, 0, 0, 0, 0, 0], bool)  # 1/4
    pred_half = np.array([1, 1, 0, 0, 0, 0, 0, 0], bool)  # 2/4
    q = score_query(pred_quarter, inst, [1])
    h = score_query(pred_half, inst, [1])
    assert q.iou == 0.25 and h.iou == 0.5
    s = summarize_scores([q, h])
    assert s["acc25"] == 0.5 and s["acc50"] == 0.0
    assert s["n_grounded"] == 1 and s["miou_grounded"] == 0.5


def test_summarize_scores_separates_zero_target_queries() -> None:
    full = score_query(INST == 1, INST, [1], "s", "a", kind="explicit")
    miss = score_query(np.zeros(10, bool), INST, [2], "s", "b", kind="spatial")
    zero_ok = score_query(np.zeros(10, bool), INST, [], "s", "c", kind="implicit")
    zero_bad = score_query(INST == 2, INST, [], "s", "d", kind="implicit")
    assert zero_ok.zero_target and zero_ok.iou == 1.0 and zero_bad.iou == 0.0
    s = summarize_scores([full, miss, zero_ok, zero_bad])
    assert s["n"] == 4
    assert s["miou"] == pytest.approx(0.5)
    assert s["n_targeted"] == 2 and s["miou_targeted"] == pytest.approx(0.5)
    assert s["n_zero_target"] == 2 and s["zero_target_acc"] == pytest.approx(0.5)
    # grounded-only mIoU is over targeted queries: zero_ok's IoU 1 is not a grounding
    assert s["miou_grounded"] == 1.0 and s["n_grounded"] == 1
    by_kind = breakdown_by_kind([full, miss, zero_ok, zero_bad])
    assert sorted(by_kind) == ["explicit", "implicit", "spatial"]
    assert by_kind["spatial"]["miou"] == 0.0 and by_kind["implicit"]["n"] == 2


def test_grounded_miou_excludes_zero_target_queries() -> None:
    half = score_query(np.array([1, 1, 0, 0, 0, 0, 0, 0, 0, 0], bool), INST, [1])  # 2/4
    zero_ok = [score_query(np.zeros(10, bool), INST, []) for _ in range(3)]
    s = summarize_scores([half, *zero_ok])
    assert s["n_grounded"] == 1 and s["miou_grounded"] == 0.5  # not (0.5 + 3) / 4
    assert s["n_zero_target"] == 3 and s["zero_target_acc"] == 1.0
    assert math.isnan(summarize_scores(zero_ok)["miou_grounded"])


def test_missing_targets_score_zero_and_unknown_targets_rejected() -> None:
    # targets annotated, but instance 99 has no point in the scene: the GT is unusable -> IoU 0,
    # whether or not something is predicted (IoU 1 with an empty GT is for zero-target queries only)
    s = score_query(np.zeros(10, bool), INST, [99])
    assert s.missing_targets and not s.zero_target and s.gt_points == 0 and s.iou == 0.0
    some = score_query(INST == 1, INST, [99])
    assert some.missing_targets and some.iou == 0.0
    summary = summarize_scores([s, some, score_query(INST == 1, INST, [1])])
    assert summary["n_missing_targets"] == 2 and summary["n"] == 3
    assert summary["miou"] == pytest.approx(1 / 3) and summary["n_targeted"] == 3
    with pytest.raises(ValueError, match="s/q"):
        score_query(np.zeros(10, bool), INST, None, "s", "q")
    with pytest.raises(ValueError, match="shape"):
        score_query(np.zeros(3, bool), INST, [1], "s", "q")


def test_empty_inputs_give_nan() -> None:
    s = summarize_scores([])
    assert s["n"] == 0 and math.isnan(s["miou"]) and math.isnan(s["zero_target_acc"])
    assert math.isnan(grounded_miou([0.1, 0.2]))
    assert breakdown_by_kind([score_query(INST == 1, INST, [1])]) == {}
    assert breakdown_by_group([score_query(INST == 1, INST, [1])]) == {}


def test_breakdown_by_group_is_separate_from_kind() -> None:
    a = score_query(INST == 1, INST, [1], kind="explicit", groups={"uniqueness": "unique", "difficulty": "easy"})
    b = score_query(np.zeros(10, bool), INST, [2], kind="explicit", groups={"uniqueness": "multiple"})
    c = score_query(np.zeros(10, bool), INST, [], kind="explicit")
    g = breakdown_by_group([a, b, c])
    assert sorted(g) == ["difficulty", "uniqueness"]
    assert sorted(g["uniqueness"]) == ["multiple", "unique", "unknown"]
    assert g["uniqueness"]["unique"]["miou"] == 1.0 and g["uniqueness"]["multiple"]["miou"] == 0.0
    assert g["difficulty"]["easy"]["n"] == 1 and g["difficulty"]["unknown"]["n"] == 2
    assert list(breakdown_by_kind([a, b, c])) == ["explicit"]
    assert a.as_dict()["groups"] == {"uniqueness": "unique", "difficulty": "easy"}
