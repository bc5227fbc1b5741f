"""Benchmark 4: Stage 2 input pipeline — share of a training step spent waiting for data, and throughput.

The demo store (Stage 1 on ``synthetic:6:0`` with the synthetic backend and configs/stage1/synthetic.yaml)
is built in a temporary directory, then the product's training entry point ``train_run`` trains the
default config (configs/train/default.yaml when present, else the dataclass defaults) for a fixed number
of steps with a timing callback:

- *data wait* of a step = the time from the end of the previous step (``on_train_batch_end``) to the
  start of this one (``on_train_batch_start``): Lightning fetches the next batch in that gap;
- *compute* = ``on_train_batch_start`` → ``on_train_batch_end`` (forward, losses, backward, SGD step).

The first ``WARMUP_STEPS`` steps (worker start-up, first scene decodes, spconv first calls) are dropped;
figures are over the remaining steps (≥ 5): the wait fraction is Σwait / Σ(wait + compute), the
per-step times are medians. The baseline, measured in the same run, is ``num_workers=0`` (every batch
built synchronously in the training process). CPU only: no GPU is lent to this task.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import REPO_ROOT, fmt_rate, fmt_s, report, target  # noqa: E402

TARGET_WAIT_FRACTION = 0.10
WARMUP_STEPS = 1
MEASURED_STEPS = 8
FULL_BATCH: int | None = None  # None = the config's batch size
# quick mode: a tiny U-Net so the whole benchmark takes seconds (NOT the product figures)
QUICK_MODEL = ["model.stem=8", "model.down=[8,8,16,16]", "model.up=[16,16,8,8]", "model.feature_dim=32"]
DEMO_STAGE1_CONFIG = REPO_ROOT / "configs" / "stage1" / "synthetic.yaml"
DEFAULT_TRAIN_CONFIG = REPO_ROOT / "configs" / "train" / "default.yaml"


class StepTimer:
    """Lightning callback recording per-step data wait and compute time, and batch sizes."""

    def __init__(self) -> None:
        self.waits: list[float] = []
        self.computes: list[float] = []
        self.points: list[int] = []
        self.voxels: list[int] = []
        self.items: list[int] = []
        self._last_end: float | None = None
        self._start: float = 0.0
        self.fit_start: float = 0.0
        self.threads: int = 0

    def as_callback(self) -> Any:
        """The pytorch_lightning Callback wrapping this timer."""
        import pytorch_lightning as pl

        timer = self

        class _Cb(pl.Callback):
            def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
                import torch

                timer.threads = torch.get_num_threads()
                timer._last_end = time.perf_counter()

            def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int) -> None:
                now = time.perf_counter()
                timer.waits.append(now - (timer._last_end if timer._last_end is not None else now))
                timer._start = now
                timer.points.append(int(batch["point_offset"][-1]))
                timer.voxels.append(int(batch["voxel_offset"][-1]))
                timer.items.append(int(batch["batch_size"]))

            def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
                now = time.perf_counter()
                timer.computes.append(now - timer._start)
                timer._last_end = now

        return _Cb()

    def summary(self, warmup: int) -> dict[str, Any]:
        """Figures over the steps after ``warmup``."""
        w = np.asarray(self.waits[warmup:])
        c = np.asarray(self.computes[warmup:])
        p = np.asarray(self.points[warmup:])
        v = np.asarray(self.voxels[warmup:])
        n = np.asarray(self.items[warmup:])
        total = float(w.sum() + c.sum())
        return {
            "steps_measured": int(len(c)),
            "steps_total": int(len(self.computes)),
            "wait_fraction": float(w.sum() / total) if total > 0 else float("nan"),
            "median_wait_s": float(np.median(w)) if len(w) else float("nan"),
            "median_compute_s": float(np.median(c)) if len(c) else float("nan"),
            "median_step_s": float(np.median(w + c)) if len(c) else float("nan"),
            "points_per_s": float(p.sum() / total) if total > 0 else float("nan"),
            "voxels_per_s": float(v.sum() / total) if total > 0 else float("nan"),
            "items_per_s": float(n.sum() / total) if total > 0 else float("nan"),
            "points_per_s_compute_only": float(p.sum() / c.sum()) if c.sum() > 0 else float("nan"),
            "mean_points_per_step": float(p.mean()) if len(p) else float("nan"),
            "mean_voxels_per_step": float(v.mean()) if len(v) else float("nan"),
            "batch_size": int(n.max()) if len(n) else 0,
        }


def build_demo_store(path: Path, quick: bool) -> dict[str, Any]:
    """Stage 1 with the synthetic backend into ``path`` (the demo store); returns what was written."""
    from stage1_pseudolabel.run_config import RunConfig
    from stage1_pseudolabel.runner import run_pseudolabels

    source = "synthetic:2:0" if quick else "synthetic:6:0"
    if DEMO_STAGE1_CONFIG.is_file():
        cfg = RunConfig.from_yaml(DEMO_STAGE1_CONFIG, store=str(path), source=source, progress=False)
        how = f"{DEMO_STAGE1_CONFIG.relative_to(REPO_ROOT)} with source {source}"
    else:
        cfg = RunConfig(source=source, store=str(path), backend="synthetic", progress=False)
        how = f"RunConfig defaults with source {source}"
    t0 = time.perf_counter()
    summary = run_pseudolabels(cfg)
    return {"how": how, "queries": summary.queries_written, "scenes": summary.scene_groups_written,
            "seconds": time.perf_counter() - t0}


def train_steps(
    store: Path, out: Path, workers: int, steps: int, batch_size: int | None, extra: list[str] | None = None
) -> dict[str, Any]:
    """Train the default config for ``steps`` steps with ``workers`` loader workers; timing summary."""
    from stage2_train3d.train import train_run

    timer = StepTimer()
    overrides = [
        f"data.num_workers={workers}",
        "data.val_fraction=0.0",  # every pair trains; no validation in the timed run
        "optim.epochs=1000",
        "trainer.accelerator=cpu",
        "trainer.devices=1",
    ]
    if batch_size is not None:
        overrides.append(f"data.batch_size={batch_size}")
    overrides += list(extra or [])
    config = DEFAULT_TRAIN_CONFIG if DEFAULT_TRAIN_CONFIG.is_file() else None
    t0 = time.perf_counter()
    train_run(
        config,
        store,
        out,
        overrides=overrides,
        callbacks=[timer.as_callback()],
        progress=False,
        evaluate_untrained=False,
        trainer_kwargs={"max_steps": steps, "limit_val_batches": 0, "num_sanity_val_steps": 0,
                        "logger": False},
        log=None,
    )
    res = timer.summary(WARMUP_STEPS)
    res["wall_s"] = time.perf_counter() - t0
    res["torch_threads"] = timer.threads
    res["workers"] = workers
    res["config"] = str(config.relative_to(REPO_ROOT)) if config else "TrainConfig defaults"
    from stage2_train3d.train import as_config

    cfg = as_config(config, overrides)
    res["model"] = f"stem {cfg.model.stem}, down {cfg.model.down}, up {cfg.model.up}, heads {cfg.model.feature_dim}-d"
    res["voxel_size"] = cfg.data.voxel_size
    return res


def run(quick: bool = False, steps: int | None = None, workdir: Path | None = None) -> dict:
    """Build the demo store, time training with 2 workers and with 0 (baseline); the report dict."""
    tmp = Path(tempfile.mkdtemp(prefix="bench-stage2-", dir=workdir))
    try:
        return _run(quick, steps, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _run(quick: bool, steps: int | None, tmp: Path) -> dict:
    import torch

    warnings.filterwarnings("ignore", category=FutureWarning)  # spconv's torch.cuda.amp deprecation noise
    for name in ("pytorch_lightning", "lightning.pytorch", "lightning_fabric"):  # trainer info lines
        logging.getLogger(name).setLevel(logging.WARNING)

    store = tmp / "store.zarr"
    built = build_demo_store(store, quick)
    n_steps = steps if steps is not None else WARMUP_STEPS + MEASURED_STEPS
    batch_size = 1 if quick else FULL_BATCH
    extra = QUICK_MODEL if quick else []
    two = train_steps(store, tmp / "run-w2", 2, n_steps, batch_size, extra)
    zero = train_steps(store, tmp / "run-w0", 0, n_steps, batch_size, extra)

    tgt = target("share of a training step waiting for data, 2 workers", two["wait_fraction"], TARGET_WAIT_FRACTION,
                 higher_is_better=False, fmt="{:.1%}")
    tgt["measured_text"] = f"{two['wait_fraction'] * 100:.1f} %"
    tgt["target_text"] = f"< {TARGET_WAIT_FRACTION * 100:.0f} %"
    rows = []
    for label, r in (("num_workers=0 (baseline: synchronous loading)", zero), ("num_workers=2", two)):
        rows.append([
            label,
            f"{r['steps_measured']} (of {r['steps_total']})",
            f"{r['batch_size']} queries, {r['mean_points_per_step']:,.0f} pts / {r['mean_voxels_per_step']:,.0f} vox",
            fmt_s(r["median_wait_s"]),
            fmt_s(r["median_compute_s"]),
            f"{r['wait_fraction'] * 100:.1f} %",
            fmt_rate(r["points_per_s"], "pt/s"),
            f"{r['items_per_s']:.2f}",
        ])
    speed = two["points_per_s"] / zero["points_per_s"] if zero["points_per_s"] > 0 else float("nan")
    notes = [
        f"Demo store: Stage 1 ({built['how']}, synthetic backend): {built['scenes']} scenes, {built['queries']} "
        f"queries × 4 views, built in {built['seconds']:.1f} s.",
        f"Training: `train_run` with {two['config']}"
        + (f" and a TINY U-Net for quick mode ({' '.join(QUICK_MODEL)})" if quick else
           f" (the default spconv U-Net: {two['model']}, {two['voxel_size'] * 100:.0f} cm voxels)")
        + f", batch size {two['batch_size']}"
        + (" (quick-mode override)" if batch_size is not None else " (the config's)")
        + f", CPU (torch {torch.__version__}, {two['torch_threads']} torch thread(s) in the training process as the "
        "config sets them); "
        f"{n_steps} steps per run, the first {WARMUP_STEPS} dropped as warm-up; no validation.",
        "Data wait = gap between one step's end and the next step's start (Lightning fetches the batch there); "
        "compute = forward + losses + backward + SGD step. Wait fraction = Σwait / Σ(wait + compute).",
        f"Throughput = points of the batches / (wait + compute); 2 workers vs 0 workers: {speed:.2f}× "
        f"(compute-only throughput with 2 workers: {fmt_rate(two['points_per_s_compute_only'], 'pt/s')}).",
        "GPU: not lent to this task — no GPU figures. On 2 shared cores the loader workers compete with the "
        "training process for the same CPUs, which a GPU machine would not.",
    ]
    return report(
        name="stage2_pipeline",
        title="Stage 2 input pipeline",
        notes=notes,
        tables=[{
            "title": "Training steps on the demo store (CPU)",
            "columns": ["loader", "steps measured", "batch", "median wait", "median compute", "wait share",
                        "throughput", "queries/s"],
            "rows": rows,
        }],
        targets=[tgt],
        data={"store": built, "workers2": two, "workers0": zero, "speedup_points_per_s": speed},
    )


def main() -> None:
    """CLI: print the report dict as JSON."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny sizes")
    ap.add_argument("--steps", type=int, default=None)
    args = ap.parse_args()
    print(json.dumps(run(quick=args.quick, steps=args.steps), indent=1, default=str))


if __name__ == "__main__":
    main()
