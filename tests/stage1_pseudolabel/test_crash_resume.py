"""SIGKILL ``mllm3d pseudolabel`` at exact points of the write path, rerun, compare with a clean run."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from mllm3d.shared.sources import open_source
from mllm3d.shared.store import open_store
from mllm3d.stage1_pseudolabel.runner import run_pseudolabels
from tests.stage1_helpers import hidden_entries, run_cli, run_config, snapshot

SOURCE = "synthetic:1:0"
# applied one after the other to the same store: each run resumes the previous crash
KILLS = [
    ("scene:1:before_publish", "scene group complete in its temp dir, not renamed"),
    ("scene:1:after_publish", "scene group just published, no query yet"),
    ("query:2:mid_write", "masks written, the other arrays not"),
    ("query:2:before_publish", "query group complete in its temp dir, not renamed"),
    ("query:1:before_write", "record assembled, nothing on disk"),
    ("query:3:after_publish", "right after a publish"),
]


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ref") / "store.zarr"
    summary = run_pseudolabels(run_config(path), source=open_source(SOURCE))
    assert summary.ok and summary.queries_written >= 8
    return path


def group_files(snap: dict, prefix: str) -> dict:
    return {k: v for k, v in snap.items() if k.startswith(prefix + "/")}


def test_killed_runs_resume_to_the_clean_result(tmp_path: Path, reference: Path) -> None:
    store_path = tmp_path / "store.zarr"
    ref = snapshot(reference)
    ref_pairs = open_store(reference).complete_pairs()
    args = ["--source", SOURCE, "--store", str(store_path), "--backend", "synthetic"]
    done_before = 0
    saw_temporaries = False
    for spec, what in KILLS:
        res = run_cli(args, env={"MLLM3D_TEST_KILL_AT": spec})
        assert res.returncode == -signal.SIGKILL, (
            f"{spec} ({what}) did not kill the run: {res.stderr[-2000:]}"
        )
        store = open_store(store_path)
        pairs = store.complete_pairs()
        # never a partial group visible as complete; everything visible equals the clean run
        assert set(pairs) <= set(ref_pairs)
        assert len(pairs) >= done_before
        done_before = len(pairs)
        snap = snapshot(store_path)
        for sid in store.scene_ids():
            scene_files = {
                k: v for k, v in group_files(snap, f"scenes/{sid}").items() if "/queries/" not in k
            }
            assert scene_files == {
                k: v for k, v in group_files(ref, f"scenes/{sid}").items() if "/queries/" not in k
            }
        for sid, qid in pairs:
            prefix = f"scenes/{sid}/queries/{qid}"
            assert group_files(snap, prefix) == group_files(ref, prefix), f"{spec}: {prefix} differs"
            store.read_query(sid, qid)
        saw_temporaries |= bool(store.temporary_groups())
    assert saw_temporaries and 0 < done_before < len(ref_pairs)

    res = run_cli(args)
    assert res.returncode == 0, res.stderr
    assert open_store(store_path).complete_pairs() == ref_pairs
    assert hidden_entries(store_path) == []
    assert snapshot(store_path) == ref

    again = run_cli(args)
    assert again.returncode == 0 and "nothing new to write" in again.stderr
