"""Helpers for the Stage 1 runner tests: tiny synthetic sources, run configs, store snapshots."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mllm3d.shared.synthetic import SyntheticConfig, SyntheticSource
from mllm3d.stage1_pseudolabel.run_config import RunConfig

REPO = Path(__file__).resolve().parents[1]
TIMESTAMP_KEYS = ("written_at", "created_at")
TINY = SyntheticConfig(
    num_points=3000, num_views=6, image_size=(48, 64), num_queries=(3, 4), num_objects=(6, 9)
)


def tiny_source(num_scenes: int = 2, seed: int = 0) -> SyntheticSource:
    """A few small synthetic scenes (6 views of 48x64, ~3k points, 3-4 queries each)."""
    return SyntheticSource(num_scenes, seed=seed, cfg=TINY)


def run_config(store: Path, **kw: Any) -> RunConfig:
    kw.setdefault("progress", False)
    return RunConfig(store=str(store), **kw)


def _normalise(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _normalise(v) for k, v in obj.items() if k not in TIMESTAMP_KEYS}
    if isinstance(obj, list):
        return [_normalise(v) for v in obj]
    return obj


def snapshot(store: Path) -> dict[str, Any]:
    """Every file of a store: bytes, except zarr.json parsed with the timestamp attributes removed."""
    out: dict[str, Any] = {}
    for dirpath, _, files in os.walk(store):
        for name in files:
            p = Path(dirpath) / name
            rel = p.relative_to(store).as_posix()
            if name == "zarr.json":
                out[rel] = _normalise(json.loads(p.read_text(encoding="utf-8")))
            else:
                out[rel] = p.read_bytes()
    return out


def hidden_entries(store: Path) -> list[str]:
    """Temporary groups, trash and lease files anywhere in the store."""
    found = []
    for dirpath, dirs, files in os.walk(store):
        for name in list(dirs) + files:
            if name.startswith((".tmp-", ".trash-", ".lease-")):
                found.append((Path(dirpath) / name).relative_to(store).as_posix())
    return sorted(found)


def run_cli(
    args: list[str], env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess:
    """``python -m mllm3d.cli pseudolabel ARGS`` in a subprocess (repo root as working directory)."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "MLLM3D_TEST_"))}
    full_env.pop("RANK", None)
    full_env.pop("WORLD_SIZE", None)
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "mllm3d.cli", "pseudolabel", "--no-progress", *args],
        cwd=REPO,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def start_cli(args: list[str], env: dict[str, str] | None = None) -> subprocess.Popen:
    """Like :func:`run_cli` but returns the running process."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "MLLM3D_TEST_"))}
    full_env.pop("RANK", None)
    full_env.pop("WORLD_SIZE", None)
    full_env.update(env or {})
    return subprocess.Popen(
        [sys.executable, "-m", "mllm3d.cli", "pseudolabel", "--no-progress", *args],
        cwd=REPO,
        env=full_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@contextlib.contextmanager
def held_lease(path: Path) -> Iterator[subprocess.Popen]:
    """Another process holding the scene lease at ``path`` (the OS lock) until the block ends or it is killed."""
    code = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from mllm3d.stage1_pseudolabel.leases import SceneLease\n"
        "lease = SceneLease(Path(sys.argv[1]))\n"
        "print('held' if lease.try_acquire() else 'busy', flush=True)\n"
        "time.sleep(120)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code, str(path)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)
