"""Shard parsing, environment defaults, and the every-scene-exactly-once property; view sampling."""

from __future__ import annotations

import numpy as np
import pytest

from shared.errors import BadInputError
from stage1_pseudolabel.sharding import Shard, parse_shard, resolve_shard, shard_from_env, shard_scenes
from stage1_pseudolabel.view_sampling import parse_views, sample_views, view_seed

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


def test_slurm_env_with_min_offset_and_max_fallback() -> None:
    env = {"SLURM_ARRAY_TASK_ID": "5", "SLURM_ARRAY_TASK_MIN": "3", "SLURM_ARRAY_TASK_COUNT": "4"}
    assert shard_from_env(env) == Shard(2, 4)
    assert shard_from_env({"SLURM_ARRAY_TASK_ID": "1", "SLURM_ARRAY_TASK_COUNT": "3"}) == Shard(1, 3)
    assert shard_from_env(
        {"SLURM_ARRAY_TASK_ID": "11", "SLURM_ARRAY_TASK_MIN": "10", "SLURM_ARRAY_TASK_MAX": "13"}
    ) == Shard(1, 4)
    with pytest.raises(BadInputError):
        shard_from_env({"SLURM_ARRAY_TASK_ID": "1"})


def test_torchrun_env_and_precedence() -> None:
    assert shard_from_env({"RANK": "3", "WORLD_SIZE": "8"}) == Shard(3, 8)
    assert shard_from_env({"RANK": "0"}) is None
    assert shard_from_env({}) is None
    # SLURM wins over torchrun, --shard wins over both, nothing -> 0/1
    env = {"SLURM_ARRAY_TASK_ID": "1", "SLURM_ARRAY_TASK_COUNT": "2", "RANK": "0", "WORLD_SIZE": "4"}
    assert resolve_shard(None, env) == Shard(1, 2)
    assert resolve_shard("3/4", env) == Shard(3, 4)
    assert resolve_shard(None, {}) == Shard(0, 1)


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
