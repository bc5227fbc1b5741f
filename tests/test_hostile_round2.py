"""Hostile inputs, round 2 (issue 13): each case gives a one-line error naming what is wrong, and
nothing already written (a store's pseudo-labels, an earlier training run) is lost."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from click.testing import CliRunner

from shared.cli import main as mllm3d
from shared.scene import Query
from shared.store import QueryRecord, open_store
from tests.fs_helpers import tree_digest


def invoke(*args: object):
    return CliRunner().invoke(mllm3d, [str(a) for a in args], catch_exceptions=False)


def one_line_error(res) -> str:
    """The error line of a failed command (no traceback)."""
    assert res.exit_code != 0, res.output
    assert "Traceback" not in res.output, res.output
    lines = [ln for ln in res.output.splitlines() if "error" in ln.lower()]
    assert lines, res.output
    return " ".join(res.output.split())


def _add_query(store_path: Path, scene_id: str, query_id: str = "q0") -> None:
    store = open_store(store_path, "a")
    h, w = store.scene_attrs(scene_id)["image_size"]
    store.write_query(QueryRecord(
        query=Query(scene_id, query_id, "the chair"), view_index=np.array([0], np.int32),
        masks=np.ones((1, h, w), bool), seg_embeddings=np.ones((1, 4), np.float32),
        confidence=np.array([0.9], np.float32), attention=np.array([0.5], np.float32),
        has_seg=np.array([True]),
    ))


# ---------------------------------------------------------------------------------------------- 1. synth --overwrite
def test_synth_overwrite_refuses_to_delete_pseudolabels(tmp_path: Path) -> None:
    store = tmp_path / "s.zarr"
    args = ("synth", "--num-scenes", 1, "--store", store, "--queries-out", tmp_path / "q.json")
    assert invoke(*args).exit_code == 0
    sid = open_store(store).scene_ids()[0]
    _add_query(store, sid)
    before = tree_digest(store)
    res = invoke(*args, "--overwrite")
    msg = one_line_error(res)
    assert "--discard-pseudolabels" in msg and "1 pseudo-label query group" in msg and sid in msg
    assert tree_digest(store) == before
    assert open_store(store).query_ids(sid) == ["q0"]
    # explicitly asked for: the scene is rewritten and its pseudo-labels go
    res = invoke(*args, "--overwrite", "--discard-pseudolabels")
    assert res.exit_code == 0, res.output
    assert open_store(store).query_ids(sid) == []


def test_synth_overwrite_without_pseudolabels_still_rewrites(tmp_path: Path) -> None:
    store = tmp_path / "s.zarr"
    args = ("synth", "--num-scenes", 1, "--store", store, "--queries-out", tmp_path / "q.json")
    assert invoke(*args).exit_code == 0
    res = invoke(*args, "--overwrite")
    assert res.exit_code == 0 and "1 scene(s) written" in " ".join(res.output.split()), res.output
