"""``mllm3d eval`` plumbing: checkpoint row names, the --split val fallback, table footnotes, JSON."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from click.testing import CliRunner

from mllm3d.pipeline.evaluate import BASELINE_NAME, NetworkMethod, ProjectionBaseline, evaluate, select_pairs
from mllm3d.pipeline.evaluate_cli import (
    FALLBACK_PREFIX,
    checkpoint_names,
    eval_cmd,
    parse_checkpoint,
    resolve_pairs,
    table_footnote,
)
from mllm3d.shared.errors import BadInputError
from mllm3d.stage2_train3d.config import DataConfig
from tests.toy_store import SCENE, build_toy_store, make_record, region


@pytest.fixture
def store(tmp_path: Path):
    return build_toy_store(tmp_path / "toy.zarr")


def test_two_checkpoints_of_one_run_get_distinct_names(tmp_path: Path) -> None:
    ckpt = tmp_path / "runs" / "r1" / "checkpoints"
    ckpt.mkdir(parents=True)
    (ckpt / "last.ckpt").write_bytes(b"")
    (ckpt / "epoch=3-step=40.ckpt").write_bytes(b"")
    specs = [str(ckpt / "last.ckpt"), str(ckpt / "epoch=3-step=40.ckpt")]
    names = checkpoint_names(specs)
    assert [n for n, _ in names] == ["r1 (last)", "r1 (epoch=3-step=40)"]
    assert [p.name for _, p in names] == ["last.ckpt", "epoch=3-step=40.ckpt"]  # '=' in a file name is a path
    assert parse_checkpoint(str(ckpt / "last.ckpt"))[0] == "r1"
    # a single checkpoint keeps the plain run name; explicit names are kept as given
    assert checkpoint_names(specs[:1]) == [("r1", ckpt / "last.ckpt")]
    assert [n for n, _ in checkpoint_names([f"best={specs[0]}", specs[1]])] == ["best", "r1"]
    assert [n for n, _ in checkpoint_names([f"r1={specs[0]}", specs[1]])] == ["r1", "r1 (epoch=3-step=40)"]
    with pytest.raises(BadInputError, match="NAME=PATH"):
        checkpoint_names(["=x.ckpt"])


def _net(val_fraction: float) -> NetworkMethod:
    predictor = SimpleNamespace(config=SimpleNamespace(data=DataConfig(val_fraction=val_fraction)), threshold=0.5)
    return NetworkMethod("net", predictor)


def test_split_val_falls_back_to_all_scenes_when_empty(store) -> None:
    pairs, desc = resolve_pairs(store, "val", None, [ProjectionBaseline(), _net(0.0)], None)
    assert sorted(pairs) == sorted(store.complete_pairs()) and len(pairs) == 4
    assert desc.startswith(FALLBACK_PREFIX) and "empty" in desc
    assert resolve_pairs(store, "all", None, [_net(0.0)], None) == (store.complete_pairs(), "all scenes")


def test_footnote_counts_skipped_and_missing_target_queries(store) -> None:
    store.write_query(make_record("unknown", np.stack([region(slice(0, 8))] * 3), None))
    store.write_query(make_record("gone", np.stack([region(slice(0, 8))] * 3), [77]))  # no points of 77
    pairs, _ = select_pairs(store)
    res = evaluate(store, pairs, [ProjectionBaseline()])
    note = table_footnote(res)
    assert "1 (scene, query) pairs skipped" in note and f"{SCENE}/unknown: target ids unknown" in note
    assert "1 targeted queries have no point of their target instances" in note and "IoU 0" in note
    assert "mIoU (targeted, IoU>0.25)" in note
    gone = next(s for s in res.rows[0].scores if s.query_id == "gone")
    assert gone.missing_targets and gone.iou == 0.0


def test_cli_records_the_split_used(store, tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    # the baseline alone uses the default training config's split: one scene -> no val scene
    res = CliRunner().invoke(eval_cmd, ["--store", str(store.path), "--json", str(out)])
    assert res.exit_code == 0, res.output
    flat = " ".join(res.output.split())  # rich wraps lines
    assert "note:" in flat and "evaluating all scenes instead" in flat
    data = json.loads(out.read_text())
    assert data["split_requested"] == "val" and data["split_used"] == "all"
    assert data["split"].startswith(FALLBACK_PREFIX) and data["num_pairs"] == 4
    assert data["rows"][0]["name"] == BASELINE_NAME and "by_group" in data["rows"][0]


def test_a_run_directory_stands_for_its_selected_checkpoint(tmp_path: Path) -> None:
    from mllm3d.stage2_train3d.predictor import resolve_checkpoint

    run = tmp_path / "runs" / "full"
    ck = run / "checkpoints"
    ck.mkdir(parents=True)
    (ck / "last.ckpt").write_bytes(b"")
    assert resolve_checkpoint(run) == ck / "last.ckpt"  # no result.json: last
    (ck / "best-epoch003-miou0.4000.ckpt").write_bytes(b"")
    assert resolve_checkpoint(run) == ck / "last.ckpt"  # a ground-truth "best" is never picked silently
    # an older result.json naming only a best checkpoint: still the last one (label-free)
    (run / "result.json").write_text(json.dumps({"best_checkpoint": str(ck / "best-epoch003-miou0.4000.ckpt"),
                                                 "last_checkpoint": str(ck / "last.ckpt")}))
    assert resolve_checkpoint(run) == ck / "last.ckpt"
    # result.json names the selected checkpoint; a moved run directory still finds it by file name
    (run / "result.json").write_text(json.dumps({"checkpoint": "/elsewhere/checkpoints/best-x.ckpt",
                                                 "last_checkpoint": str(ck / "last.ckpt")}))
    (ck / "best-x.ckpt").write_bytes(b"")
    assert resolve_checkpoint(run) == ck / "best-x.ckpt"
    assert resolve_checkpoint(ck / "last.ckpt") == ck / "last.ckpt"  # a file is itself
    (ck / "last.ckpt").unlink()
    (run / "result.json").unlink()
    assert resolve_checkpoint(run).name.startswith("best-")  # no last.ckpt at all: the only checkpoint there
    assert parse_checkpoint(str(run)) == ("full", run)
    with pytest.raises(BadInputError, match="not a Stage 2 run directory"):
        resolve_checkpoint(tmp_path)


def test_results_table_hides_zero_target_columns_without_such_queries(store) -> None:
    from mllm3d.pipeline.evaluate_cli import results_table

    def headers(pairs):
        res = evaluate(store, pairs, [ProjectionBaseline()])
        return [c.header for c in results_table(res).columns]

    with_zero = headers(store.complete_pairs())
    assert "zero-target" in with_zero and "mIoU targeted %" in with_zero
    without = headers([p for p in store.complete_pairs() if p[1] != "nothing"])
    assert "zero-target" not in without and "mIoU targeted %" not in without and "mIoU %" in without
