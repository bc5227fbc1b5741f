"""The end-to-end steps the demo and the benchmark share: synthetic Stage 1, and Stage 2 training that
reuses a finished run with the same settings (so re-running a command redoes nothing it already did)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console

from mllm3d.shared.errors import BadInputError

# The failure model of the Stage 1 stand-in (probabilities per query and view), as configs/stage1/synthetic.yaml
DEFAULT_FAILURES: dict[str, Any] = {
    "hallucination_rate": 0.15,
    "absent_hallucination_rate": 0.3,
    "miss_rate": 0.10,
    "boundary_rate": 0.30,
    "partial_rate": 0.15,
    "embedding_noise": 0.5,
}


def synthetic_stage1(
    num_scenes: int,
    seed: int,
    store: Path,
    views: int,
    backend_config: dict[str, Any],
    console: Console | None = None,
    view_pool: int | None = None,
) -> Path:
    """Stage 1 with the synthetic backend on ``synthetic:num_scenes:seed``; a finished store is reused
    (the runner skips complete queries), one written with another backend config is refused.
    ``view_pool``: k views per query drawn from a per-scene pool of this many frames (None: from all)."""
    from mllm3d.stage1_pseudolabel.runner import RunConfig, run_pseudolabels

    run = RunConfig(
        source=f"synthetic:{num_scenes}:{seed}",
        store=str(store),
        backend="synthetic",
        backend_config=dict(backend_config),
        views=views,
        seed=seed,
        view_pool=view_pool,
        shard="0/1",
        progress=False,
    )
    summary = run_pseudolabels(run, console=console)
    if not summary.ok:
        first = summary.failed[0]
        raise BadInputError(f"Stage 1 into {store} failed on scene {first.scene_id}: {first.reason}")
    return store


def train_or_reuse(
    config: str | Path | None,
    store: Path,
    run_dir: Path,
    overrides: Sequence[str],
    log: Any = None,
) -> tuple[str, bool]:
    """Train a Stage 2 run, or reuse the finished one in ``run_dir`` trained with the same config,
    overrides and store. Returns (the run's last checkpoint, reused): label-free, so no checkpoint is picked
    by a ground-truth metric. A stale or half-finished run is removed first."""
    from mllm3d.stage2_train3d.train import quiet_lightning, train_run

    stamp = {"config": None if config is None else str(config), "store": str(Path(store).resolve()),
             "overrides": list(overrides)}
    stamp_file = run_dir / "run-stamp.json"
    result_file = run_dir / "result.json"
    if stamp_file.is_file() and result_file.is_file():
        try:
            same = json.loads(stamp_file.read_text()) == stamp
            prev = json.loads(result_file.read_text())
        except ValueError:
            same, prev = False, {}
        ckpt = prev.get("last_checkpoint")
        if same and ckpt and Path(ckpt).is_file():
            return str(ckpt), True
    if run_dir.exists():
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True)
    stamp_file.write_text(json.dumps(stamp, indent=2))
    with quiet_lightning():  # the trainer's info lines would interleave with the caller's output
        res = train_run(config, store, run_dir, overrides=list(overrides), progress=False, evaluate_untrained=False,
                        log=log)
    ckpt = res.get("last_checkpoint")
    if not ckpt:
        raise BadInputError(f"training in {run_dir} produced no checkpoint")
    return str(ckpt), False
