"""Shard parsing, environment defaults, and the every-scene-exactly-once property; view sampling."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mllm3d.shared.errors import BadInputError
from mllm3d.stage1_pseudolabel.sharding import Shard, parse_shard, resolve_shard, shard_from_env, shard_scenes
from mllm3d.stage1_pseudolabel.view_sampling import parse_views, sample_views, view_seed

REPO = Path(__file__).resolve().parents[2]

SCENES = [f"scene{i:04d}_{j:02d}" for i in range(7) for j in range(2)] + ["synth_0003", "a", "b"]


@pytest.mark.parametrize("strategy", ["round_robin", "hash"])
@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_every_scene_exactly_once(n: int, strategy: str) -> None:
    parts = [shard_scenes(list(reversed(SCENES)), Shard(i, n), strategy) for i in range(n)]
    flat = [s for p in parts for s in p]
    assert sorted(flat) == sorted(SCENES) and len(flat) == len(set(flat))
    if strategy == "round_robin":
        assert max(map(len, parts)) - min(map(len, parts)) <= 1
    # deterministic: the same answer again, whatever the input order
    assert parts == [shard_scenes(SCENES, Shard(i, n), strategy) for i in range(n)]


def test_parse_shard() -> None:
    assert parse_shard("2/4") == Shard(2, 4)
    assert str(parse_shard(" 0/1 ")) == "0/1"
    for bad in ("4/4", "-1/3", "1", "a/b", "1/0", "1/2/3"):
        with pytest.raises(BadInputError):
            parse_shard(bad)


def test_slurm_shard_is_task_id_of_explicit_count() -> None:
    # the original array: --array=0-7 with MLLM3D_NUM_SHARDS=8
    for task in range(8):
        env = {"SLURM_ARRAY_TASK_ID": str(task), "SLURM_ARRAY_TASK_MIN": "0", "SLURM_ARRAY_TASK_COUNT": "8",
               "MLLM3D_NUM_SHARDS": "8"}
        assert shard_from_env(env) == Shard(task, 8)
    # resubmitting one failed task: --array=3 is a new array with MIN=3, COUNT=1 -> still shard 3/8
    env = {"SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_TASK_MIN": "3", "SLURM_ARRAY_TASK_MAX": "3",
           "SLURM_ARRAY_TASK_COUNT": "1", "MLLM3D_NUM_SHARDS": "8"}
    assert shard_from_env(env) == Shard(3, 8)
    # --array=3,5: MIN=3, COUNT=2; task 5 is shard 5/8 (was 5-3=2 of 2 -> invalid)
    env = {"SLURM_ARRAY_TASK_ID": "5", "SLURM_ARRAY_TASK_MIN": "3", "SLURM_ARRAY_TASK_MAX": "5",
           "SLURM_ARRAY_TASK_COUNT": "2", "MLLM3D_NUM_SHARDS": "8"}
    assert shard_from_env(env) == Shard(5, 8)
    assert resolve_shard(None, {"SLURM_ARRAY_TASK_ID": "0", "MLLM3D_NUM_SHARDS": " 2 "}) == Shard(0, 2)


def test_slurm_without_explicit_count_or_out_of_range_is_an_error() -> None:
    # the array's own size is never used: --array=3 alone would otherwise become shard 0/1 (every scene)
    for env in ({"SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_TASK_MIN": "3", "SLURM_ARRAY_TASK_COUNT": "1"},
                {"SLURM_ARRAY_TASK_ID": "1", "SLURM_ARRAY_TASK_COUNT": "3"},
                {"SLURM_ARRAY_TASK_ID": "1", "MLLM3D_NUM_SHARDS": ""}):
        with pytest.raises(BadInputError, match="MLLM3D_NUM_SHARDS=N"):
            shard_from_env(env)
    with pytest.raises(BadInputError, match=r"SLURM_ARRAY_TASK_ID=8 is not a shard of MLLM3D_NUM_SHARDS=8"):
        shard_from_env({"SLURM_ARRAY_TASK_ID": "8", "MLLM3D_NUM_SHARDS": "8"})
    with pytest.raises(BadInputError, match="not an integer"):
        shard_from_env({"SLURM_ARRAY_TASK_ID": "1", "MLLM3D_NUM_SHARDS": "eight"})
    # --shard still wins, even inside an array without a count
    assert resolve_shard("1/4", {"SLURM_ARRAY_TASK_ID": "3"}) == Shard(1, 4)
    # outside SLURM the variable does nothing
    assert shard_from_env({"MLLM3D_NUM_SHARDS": "8"}) is None


def test_torchrun_env_and_precedence() -> None:
    assert shard_from_env({"RANK": "3", "WORLD_SIZE": "8"}) == Shard(3, 8)
    assert shard_from_env({"RANK": "0"}) is None
    assert shard_from_env({}) is None
    # SLURM wins over torchrun, --shard wins over both, nothing -> 0/1
    env = {"SLURM_ARRAY_TASK_ID": "1", "MLLM3D_NUM_SHARDS": "2", "RANK": "0", "WORLD_SIZE": "4"}
    assert resolve_shard(None, env) == Shard(1, 2)
    assert resolve_shard("3/4", env) == Shard(3, 4)
    assert resolve_shard(None, {}) == Shard(0, 1)


def _run_slurm_script(tmp_path: Path, args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    """scripts/slurm_pseudolabel.sh in ``tmp_path`` with a stub ``.venv/bin/mllm3d`` that prints its shard."""
    stub = tmp_path / ".venv" / "bin" / "mllm3d"
    stub.parent.mkdir(parents=True, exist_ok=True)
    stub.write_text(
        "#!/usr/bin/env bash\n"
        f'echo "args: $*"\n'
        f'exec {sys.executable} -c "from mllm3d.stage1_pseudolabel.sharding import resolve_shard; '
        f'print(\'shard:\', resolve_shard(None))"\n'
    )
    stub.chmod(0o755)
    base = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "MLLM3D_"))}
    base.pop("RANK", None)
    base.pop("WORLD_SIZE", None)
    base["PYTHONPATH"] = str(REPO)
    return subprocess.run(["bash", str(REPO / "scripts" / "slurm_pseudolabel.sh"), *args], cwd=tmp_path,
                          env={**base, **env}, capture_output=True, text=True, timeout=60)


def test_slurm_script_passes_the_explicit_shard_count(tmp_path: Path) -> None:
    resubmit = {"SLURM_ARRAY_JOB_ID": "77", "SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_TASK_MIN": "3",
                "SLURM_ARRAY_TASK_COUNT": "1"}
    res = _run_slurm_script(tmp_path, ["cfg.yaml", "8", "--frame-stride", "10"], resubmit)
    assert res.returncode == 0, res.stderr
    assert "shard: 3/8" in res.stdout
    assert "--config cfg.yaml" in res.stdout and res.stdout.rstrip().count("--frame-stride 10") == 1
    assert "logs/stage1-summary-77_3.json" in res.stdout and (tmp_path / "logs").is_dir()
    res = _run_slurm_script(tmp_path, ["cfg.yaml"], {**resubmit, "MLLM3D_NUM_SHARDS": "8"})
    assert res.returncode == 0 and "shard: 3/8" in res.stdout, res.stderr
    res = _run_slurm_script(tmp_path, ["cfg.yaml"], resubmit)  # no count anywhere: refused
    assert res.returncode == 2 and "number of shards" in res.stderr


def test_view_sampling_is_seeded_per_query() -> None:
    usable = np.arange(0, 16, dtype=np.int32)
    a = sample_views(usable, 4, 0, "s", "q1")
    assert a.view_index.tolist() == sorted(set(a.view_index.tolist())) and len(a.view_index) == 4
    assert np.array_equal(a.view_index, sample_views(usable, 4, 0, "s", "q1").view_index)
    assert a.view_seed == view_seed(0, "s", "q1")
    # reproducible from the stored view_seed alone
    again = np.sort(np.random.default_rng(a.view_seed).choice(usable, 4, replace=False))
    assert np.array_equal(a.view_index, again)
    draws = {tuple(sample_views(usable, 4, s, "s", "q1").view_index) for s in range(20)}
    assert len(draws) > 15
    assert sample_views(usable[:3], 4, 0, "s", "q").view_index.tolist() == [0, 1, 2]
    assert sample_views(usable, None, 0, "s", "q").view_index.tolist() == list(range(16))


def test_parse_views() -> None:
    assert parse_views("all") is None and parse_views(None) is None
    assert parse_views("8") == 8 and parse_views(2) == 2
    for bad in ("0", "x", -1):
        with pytest.raises(BadInputError):
            parse_views(bad)
