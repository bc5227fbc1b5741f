"""Timing instruments of the Stage 2 pipeline benchmark: a Lightning callback that splits each training step
into data wait and compute, and per-process logs of dataset-item and collate build times.

- *data wait* of a step = the time from the end of the previous step (``on_train_batch_end``) to the
  start of this one (``on_train_batch_start``): Lightning fetches the next batch in that gap;
- *compute* = ``on_train_batch_start`` → ``on_train_batch_end`` (on a GPU the step end waits for the
  device with ``torch.cuda.synchronize``).
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path
from typing import Any

import numpy as np


class StepTimer:
    """Lightning callback recording per-step data wait and compute time, and batch sizes."""

    def __init__(self) -> None:
        self.waits: list[float] = []
        self.computes: list[float] = []
        self.points: list[int] = []
        self.voxels: list[int] = []
        self.items: list[int] = []
        self.queries: list[int] = []
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
                timer.queries.append(int(batch.get("num_queries", batch["batch_size"])))

            def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
                if pl_module.device.type == "cuda":  # the step is only over when the device is
                    import torch

                    torch.cuda.synchronize(pl_module.device)
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
        q = np.asarray(self.queries[warmup:])
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
            "queries_per_s": float(q.sum() / total) if total > 0 else float("nan"),
            "mean_queries_per_step": float(q.mean()) if len(q) else float("nan"),
            "max_wait_s": float(w.max()) if len(w) else float("nan"),
            "points_per_s_compute_only": float(p.sum() / c.sum()) if c.sum() > 0 else float("nan"),
            "mean_points_per_step": float(p.mean()) if len(p) else float("nan"),
            "mean_voxels_per_step": float(v.mean()) if len(v) else float("nan"),
            "batch_size": int(n.max()) if len(n) else 0,
        }


@contextlib.contextmanager
def build_timing(log_dir: Path):
    """Time every dataset item (``StoreQueryDataset.__getitem__``) and every ``collate`` in whichever process
    runs it (forked loader workers inherit the patch); each process appends ``kind seconds`` lines to
    ``log_dir/<pid>.log``. Restores both on exit."""
    from mllm3d.stage2_train3d import datamodule as dmod

    log_dir.mkdir(parents=True, exist_ok=True)
    orig_get, orig_collate = dmod.StoreQueryDataset.__getitem__, dmod.collate

    def _log(kind: str, dt: float) -> None:
        with open(log_dir / f"{os.getpid()}.log", "a", encoding="utf-8") as f:
            f.write(f"{kind} {dt:.6f}\n")

    def getitem(self: Any, key: Any) -> Any:
        t0 = time.perf_counter()
        out = orig_get(self, key)
        _log("item", time.perf_counter() - t0)
        return out

    def collate(items: Any) -> Any:
        t0 = time.perf_counter()
        out = orig_collate(items)
        _log("collate", time.perf_counter() - t0)
        return out

    dmod.StoreQueryDataset.__getitem__ = getitem  # type: ignore[method-assign]
    dmod.collate = collate
    try:
        yield
    finally:
        dmod.StoreQueryDataset.__getitem__ = orig_get  # type: ignore[method-assign]
        dmod.collate = orig_collate


def read_build_logs(log_dir: Path, skip_items: int) -> dict[str, Any]:
    """Medians of the logged item/collate times (first ``skip_items`` items per process dropped: first decodes)."""
    items: list[float] = []
    collates: list[float] = []
    processes = 0
    for p in sorted(log_dir.glob("*.log")):
        processes += 1
        lines = [ln.split() for ln in p.read_text(encoding="utf-8").splitlines() if ln.strip()]
        it = [float(v) for k, v in lines if k == "item"]
        co = [float(v) for k, v in lines if k == "collate"]
        items += it[skip_items:] if len(it) > skip_items else it
        collates += co[1:] if len(co) > 1 else co

    def med(xs: list[float]) -> float:
        return float(np.median(xs)) if xs else float("nan")

    return {"processes": processes, "items_timed": len(items), "collates_timed": len(collates),
            "median_item_s": med(items), "median_collate_s": med(collates)}
