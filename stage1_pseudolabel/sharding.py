"""Split the scenes of a run across independent workers (``--shard i/n``).

Every scene goes to exactly one shard for any n: the default ``round_robin`` assignment takes
``sorted(scene_ids)[i::n]`` (balanced, but every worker must see the same scene list - they do,
since they get the same arguments); ``hash`` assigns by a stable SHA-256 of the scene id (stable
when scenes are added, less balanced for few scenes). When ``--shard`` is not given, the shard
comes from a SLURM job array (``SLURM_ARRAY_TASK_ID`` of ``MLLM3D_NUM_SHARDS``) or torchrun (``RANK``
of ``WORLD_SIZE``), else 0/1.

Under SLURM the number of shards must be given explicitly (``MLLM3D_NUM_SHARDS``, which
scripts/slurm_pseudolabel.sh sets from its argument): the array's own size cannot be used, because a
resubmission of failed tasks (``sbatch --array=3`` or ``--array=3,5``) is a new array whose
``SLURM_ARRAY_TASK_COUNT``/``_MIN`` describe only the resubmitted tasks. The task id itself is the
shard index, so resubmitted task 3 redoes exactly shard 3.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from mllm3d.shared.errors import BadInputError
from mllm3d.stage1_pseudolabel.seeding import stable_seed

STRATEGIES = ("round_robin", "hash")
#: environment variable with the total number of shards of a SLURM array run
NUM_SHARDS_ENV = "MLLM3D_NUM_SHARDS"


@dataclass(frozen=True)
class Shard:
    """Worker ``index`` of ``count`` (0-based)."""

    index: int = 0
    count: int = 1

    def __post_init__(self) -> None:
        if self.count < 1 or not 0 <= self.index < self.count:
            raise BadInputError(f"invalid shard {self.index}/{self.count}: need 0 <= i < n and n >= 1")

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def parse_shard(text: str) -> Shard:
    """Parse ``"i/n"`` (0-based i)."""
    parts = str(text).strip().split("/")
    if len(parts) != 2:
        raise BadInputError(f"--shard must look like i/n (e.g. 0/4), got {text!r}")
    try:
        i, n = int(parts[0]), int(parts[1])
    except ValueError:
        raise BadInputError(f"--shard must look like i/n with integers (e.g. 0/4), got {text!r}") from None
    return Shard(i, n)


def _int_env(env: Mapping[str, str], name: str) -> int | None:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return None
    try:
        return int(raw)
    except ValueError:
        raise BadInputError(f"environment variable {name}={raw!r} is not an integer") from None


def shard_from_env(env: Mapping[str, str] | None = None) -> Shard | None:
    """The shard implied by SLURM array or torchrun variables, or None outside both.

    SLURM: shard ``SLURM_ARRAY_TASK_ID`` of ``MLLM3D_NUM_SHARDS`` (required; the array's own
    ``SLURM_ARRAY_TASK_COUNT``/``_MIN`` are ignored, see the module docstring). torchrun: ``RANK`` of
    ``WORLD_SIZE``. SLURM wins when both are set.
    """
    env = os.environ if env is None else env
    task = _int_env(env, "SLURM_ARRAY_TASK_ID")
    if task is not None:
        count = _int_env(env, NUM_SHARDS_ENV)
        if count is None:
            raise BadInputError(
                f"running as SLURM array task {task}, but the number of shards is not known: set "
                f"{NUM_SHARDS_ENV}=N (the shard index is SLURM_ARRAY_TASK_ID, so submit --array=0-(N-1) and "
                "resubmit failed indices as they are; scripts/slurm_pseudolabel.sh CONFIG N does this) "
                "or pass --shard i/n"
            )
        if count < 1 or not 0 <= task < count:
            raise BadInputError(
                f"SLURM_ARRAY_TASK_ID={task} is not a shard of {NUM_SHARDS_ENV}={count}: the array indices "
                f"must lie in 0-{max(count - 1, 0)} (the task id is the shard index)"
            )
        return Shard(task, count)
    rank = _int_env(env, "RANK")
    world = _int_env(env, "WORLD_SIZE")
    if rank is not None and world is not None:
        return Shard(rank, world)
    return None


def resolve_shard(text: str | None, env: Mapping[str, str] | None = None) -> Shard:
    """``--shard`` if given, else the environment's, else the single shard 0/1."""
    if text:
        return parse_shard(text)
    return shard_from_env(env) or Shard()


def shard_scenes(scene_ids: Sequence[str], shard: Shard, strategy: str = "round_robin") -> list[str]:
    """The scenes of ``shard``, in sorted order."""
    ids = sorted(set(scene_ids))
    if strategy == "round_robin":
        return ids[shard.index :: shard.count]
    if strategy == "hash":
        return [s for s in ids if stable_seed("shard", s) % shard.count == shard.index]
    raise BadInputError(f"unknown shard strategy {strategy!r}; known: {list(STRATEGIES)}")
