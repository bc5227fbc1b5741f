"""Several ``mllm3d pseudolabel`` workers on one store at the same time give a single run's store.

The workers really overlap: ``MLLM3D_TEST_WRITE_BARRIER`` (tests/fault_injection/sitecustomize.py) holds
each one at its first group write, before the rename, until all of them have reached theirs.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mllm3d.shared.sources import open_source
from mllm3d.shared.store import open_store
from mllm3d.stage1_pseudolabel.runner import run_pseudolabels
from tests.stage1_helpers import hidden_entries, run_config, snapshot, start_cli

SOURCE = "synthetic:4:0"


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ref") / "store.zarr"
    assert run_pseudolabels(run_config(path), source=open_source(SOURCE)).ok
    return path


def run_together(argss: list[list[str]], summaries: list[Path], barrier: Path) -> list[dict]:
    """Start every worker at once; each waits at its first write until all are inside one."""
    env = {"MLLM3D_TEST_WRITE_BARRIER": f"{barrier}:{len(argss)}:120"}
    procs = [start_cli([*a, "--summary-json", str(s)], env=env) for a, s in zip(argss, summaries, strict=True)]
    for p in procs:
        _, err = p.communicate(timeout=240)
        assert p.returncode == 0, err
    arrived = sorted(f.name for f in barrier.iterdir())
    # every worker reached the barrier, none gave up waiting: all were mid-write at the same moment
    assert len(arrived) == len(argss) and not any(n.startswith("timeout-") for n in arrived), arrived
    assert sorted(n.rsplit("-", 1)[1] for n in arrived) == sorted(str(p.pid) for p in procs)
    return [json.loads(s.read_text())["summary"] for s in summaries]


def test_four_shards_at_once_equal_a_single_run(tmp_path: Path, reference: Path) -> None:
    store = tmp_path / "store.zarr"
    args = [["--source", SOURCE, "--store", str(store), "--shard", f"{i}/4"] for i in range(4)]
    sums = run_together(args, [tmp_path / f"w{i}.json" for i in range(4)], tmp_path / "barrier")
    assert [s["scenes_assigned"] for s in sums] == [1, 1, 1, 1]
    assert sum(s["queries_written"] for s in sums) == len(open_store(reference).complete_pairs())
    assert hidden_entries(store) == []
    assert snapshot(store) == snapshot(reference)


def test_two_workers_given_the_same_shard_do_not_corrupt_the_store(tmp_path: Path, reference: Path) -> None:
    store = tmp_path / "store.zarr"
    args = ["--source", "synthetic:2:0", "--store", str(store), "--shard", "0/1"]
    sums = run_together([args, args], [tmp_path / "a.json", tmp_path / "b.json"], tmp_path / "barrier")
    # the worker that came second to the first scene found it leased (its owner was held at the
    # barrier, mid-write) and went on to the other scene: the overlap was real
    assert sum(len(s["scenes_leased"]) + s["queries_lost_race"] for s in sums) >= 1, sums
    assert all(s["scenes_processed"] >= 1 for s in sums), sums
    ref_pairs = [p for p in open_store(reference).complete_pairs() if p[0] in ("synth_0000", "synth_0001")]
    assert open_store(store).complete_pairs() == ref_pairs
    # every group was published exactly once; whatever one worker skipped, the other did
    assert sum(s["queries_written"] for s in sums) == len(ref_pairs)
    assert sum(s["scene_groups_written"] for s in sums) == 2
    assert all(s["failed"] == [] for s in sums)
    assert hidden_entries(store) == []
    ref = snapshot(reference)
    wanted = {k: v for k, v in ref.items() if not k.startswith(("scenes/synth_0002", "scenes/synth_0003"))}
    assert snapshot(store) == wanted
