"""Test-time evidence fusion on hand-made cases: components, the score rule, instance resolution."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np

from mllm3d.pipeline.evidence import (
    EvidenceFusionMethod,
    combine_scores,
    resolve_instances,
    voxel_components,
)


def _blob(center, n=50, spread=0.08, seed=0):
    return np.random.default_rng(seed).uniform(-spread, spread, (n, 3)) + np.asarray(center)


def test_components_split_separated_blobs_and_join_a_diagonal_chain() -> None:
    pts = np.concatenate([_blob((0, 0, 0)), _blob((2, 0, 0), seed=1)])
    comp = voxel_components(pts, 0.1)
    assert len(np.unique(comp)) == 2 and len(np.unique(comp[:50])) == 1 and comp[0] != comp[50]
    chain = np.array([[0.05, 0.05, 0.05], [0.15, 0.15, 0.15], [0.25, 0.25, 0.05], [0.55, 0.05, 0.05]])
    # voxels (0,0,0)-(1,1,1)-(2,2,0) touch diagonally; (5,0,0) is alone
    assert voxel_components(chain, 0.1).tolist() == [0, 0, 0, 1]
    assert voxel_components(np.zeros((0, 3)), 0.1).shape == (0,)


def test_score_rule_by_hand() -> None:
    p = np.array([0.6, 0.6, 0.6, 0.3])
    seen = np.array([True, True, False, True])
    vote = np.array([0.0, 1.0, 1.0, 0.8])
    z = combine_scores(p, seen, vote)
    lg = lambda x: math.log(x / (1 - x))  # noqa: E731
    assert np.allclose(z, [lg(0.6) + lg(0.1), lg(0.6) + lg(0.9), lg(0.6), lg(0.3) + lg(0.8)])
    assert (z >= 0).tolist() == [False, True, True, True]  # a seen 0-vote overrules 0.6; a 0.8 vote lifts 0.3


def test_instances_touched_by_votes_are_kept_others_dropped() -> None:
    pts = np.concatenate([_blob((0, 0, 0)), _blob((2, 0, 0), seed=1), _blob((4, 0, 0), seed=2)])
    mask = np.r_[np.ones(100, bool), np.zeros(50, bool)]  # the network: both chairs, not the table
    anchors = np.zeros(150, bool)
    anchors[60] = True  # the views voted for one point of the second chair
    out = resolve_instances(mask, pts, anchors, 0.1)
    assert out.tolist() == [False] * 50 + [True] * 50 + [False] * 50
    assert resolve_instances(mask, pts, np.zeros(150, bool), 0.1).tolist() == mask.tolist()  # never seen


def test_method_end_to_end_on_the_toy_store(tmp_path) -> None:
    """The toy store's 'chair' views mask instance 1 exactly and see every point: a network that says
    0.7 everywhere is voted down wherever the views say no, which leaves exactly the chair."""
    from mllm3d.shared.store import open_store
    from tests.toy_store import SCENE, build_toy_store

    store = open_store(build_toy_store(tmp_path / "s.zarr").path, "r")
    scene, record = store.read_scene(SCENE), store.read_query(SCENE, "chair")
    gt = scene.instance_ids == 1
    net = SimpleNamespace(predict=lambda s, r: np.full(s.num_points, 0.7), threshold=0.5,
                          config=SimpleNamespace(fusion=None, data=SimpleNamespace(voxel_size=0.05)))
    method = EvidenceFusionMethod("net + views", net)
    out = method.predict_mask(scene, record)
    # seen non-chair points are voted down (0.7 with a 0 vote -> negative); the chair survives
    assert np.array_equal(out, gt)
    assert method.last["anchors"] == method.last["kept"] == int(gt.sum())


def test_evaluated_side_by_side_with_the_network_alone(tmp_path) -> None:
    """Through mllm3d.pipeline.evaluate: the network that says 0.7 everywhere scores the chair's share of
    the plane (8 of 32 columns: IoU 0.25); with the views' evidence the chair query becomes exact."""
    from mllm3d.pipeline.evaluate import NetworkMethod, evaluate
    from mllm3d.shared.store import open_store
    from tests.toy_store import SCENE, build_toy_store

    store = open_store(build_toy_store(tmp_path / "s.zarr").path, "r")
    net = SimpleNamespace(predict=lambda s, r: np.full(s.num_points, 0.7), threshold=0.5,
                          config=SimpleNamespace(fusion=None, data=SimpleNamespace(voxel_size=0.05)))
    res = evaluate(store, [(SCENE, "chair")], [NetworkMethod("net", net), EvidenceFusionMethod("net + views", net)])
    by_name = {row.name: row.scores[0].iou for row in res.rows}
    assert by_name["net"] == 0.25 and by_name["net + views"] == 1.0
