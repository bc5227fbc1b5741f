"""Benchmark 4: Stage 2 input pipeline — share of a training step spent waiting for data, and throughput.

The demo store (Stage 1 on ``synthetic:6:0`` with the synthetic backend and configs/stage1/synthetic.yaml)
is built in a temporary directory, then the product's training entry point ``train_run`` trains the
default config (configs/train/default.yaml when present, else the dataclass defaults) for a fixed number
of steps with a timing callback:

- *data wait* of a step = the time from the end of the previous step (``on_train_batch_end``) to the
  start of this one (``on_train_batch_start``): Lightning fetches the next batch in that gap;
- *compute* = ``on_train_batch_start`` → ``on_train_batch_end`` (forward, losses, backward, SGD step;
  on a GPU the step end waits for the device with ``torch.cuda.synchronize``).

The first ``2 workers × prefetch_factor 2 = 4`` steps are dropped (worker start-up, first scene decodes,
and the batches the workers buffered before training started, which would hide a slow steady state);
figures are over the next ≥ 20 steps (quick mode: fewer): the wait fraction is Σwait / Σ(wait + compute),
the per-step times are medians. The baseline, measured in the same run, is ``num_workers=0`` (every batch
built synchronously in the training process). Each dataset item's build time (``__getitem__``) and each
``collate`` is also timed inside whichever process builds it (the loader workers with 2 workers). When
``torch.cuda.is_available()``, the 2-worker run is repeated on the GPU.

Then the step cost (bench/stage2_step_cost.py): one synthetic store per point count (30k / 80k / 160k / 320k
points per scene), a training step and the U-Net + heads alone timed on the same batch at 1 / 16 / 32
queries per item (verdicts: step time grows at most linearly with points; the network is ≥ 50 % of the
step at 160k × 16), and the 2-worker training run repeated on the 160k-point store (data wait < 10 %).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import REPO_ROOT, fmt_rate, fmt_s, format_stats, profile_stats, report, target  # noqa: E402
from bench.stage2_scaling_report import scaling_section  # noqa: E402
from bench.stage2_step_cost import scaling_grid  # noqa: E402
from bench.stage2_step_timer import StepTimer, build_timing, read_build_logs  # noqa: E402

TARGET_WAIT_FRACTION = 0.10
WORKERS = 2
PREFETCH_FACTOR = 2  # torch DataLoader's default (the product's loader does not change it)
WARMUP_STEPS = WORKERS * PREFETCH_FACTOR  # the batches buffered before the first step are dropped
MEASURED_STEPS = 20
QUICK_MEASURED_STEPS = 4
FULL_BATCH: int | None = None  # None = the config's batch size
# quick mode: a tiny U-Net so the whole benchmark takes seconds (NOT the product figures)
QUICK_MODEL = ["model.stem=8", "model.down=[8,8,16,16]", "model.up=[16,16,8,8]", "model.feature_dim=32"]
# the scaling grid (points per scene × queries per item; one synthetic store per point count) and the cell
# whose step is split into network / rest; that store has several scenes for a timed training run
SCALING_POINTS = (30_000, 80_000, 160_000, 320_000)
SCALING_QUERIES = (1, 16, 32)
SCALING_REPEAT = 5
SHARE_CELL = (160_000, 16)  # the 160k-point store, the config's queries_per_item
QUICK_SCALING_POINTS = (30_000, 80_000)
QUICK_SCALING_QUERIES = (1, 16)
QUICK_SCALING_REPEAT = 2
QUICK_SHARE_CELL = (80_000, 16)
LARGE_STORE_SCENES = 4
QUICK_LARGE_STORE_SCENES = 1
LARGE_MEASURED_STEPS = 12
TARGET_NETWORK_SHARE = 0.5
TARGET_GROWTH_RATIO = 1.0
DEMO_STAGE1_CONFIG = REPO_ROOT / "configs" / "stage1" / "synthetic.yaml"
DEFAULT_TRAIN_CONFIG = REPO_ROOT / "configs" / "train" / "default.yaml"


def build_demo_store(path: Path, quick: bool) -> dict[str, Any]:
    """Stage 1 with the synthetic backend into ``path`` (the demo store); returns what was written."""
    from mllm3d.stage1_pseudolabel.run_config import RunConfig
    from mllm3d.stage1_pseudolabel.runner import run_pseudolabels

    source = "synthetic:1:0" if quick else "synthetic:6:0"
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
    store: Path, out: Path, workers: int, steps: int, batch_size: int | None, extra: list[str] | None = None,
    accelerator: str = "cpu",
) -> dict[str, Any]:
    """Train the default config for ``steps`` steps with ``workers`` loader workers; timing summary."""
    from mllm3d.stage2_train3d.train import train_run

    timer = StepTimer()
    overrides = [
        f"data.num_workers={workers}",
        "data.val_fraction=0.0",  # every pair trains; no validation in the timed run
        "optim.epochs=1000",
        f"trainer.accelerator={accelerator}",
        "trainer.devices=1",
    ]
    if batch_size is not None:
        overrides.append(f"data.batch_size={batch_size}")
    overrides += list(extra or [])
    config = DEFAULT_TRAIN_CONFIG if DEFAULT_TRAIN_CONFIG.is_file() else None
    t0 = time.perf_counter()
    logs = out / "build-logs"
    with build_timing(logs):
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
    res["build"] = read_build_logs(logs, skip_items=1)
    res["accelerator"] = accelerator
    res["wall_s"] = time.perf_counter() - t0
    res["torch_threads"] = timer.threads
    res["workers"] = workers
    res["config"] = str(config.relative_to(REPO_ROOT)) if config else "TrainConfig defaults"
    from mllm3d.stage2_train3d.train import as_config

    cfg = as_config(config, overrides)
    res["model"] = f"stem {cfg.model.stem}, down {cfg.model.down}, up {cfg.model.up}, heads {cfg.model.feature_dim}-d"
    res["voxel_size"] = cfg.data.voxel_size
    res["overrides"] = overrides
    return res


# the modules whose read_query / read_scene a dataset item calls (the store is a facade over them)
STORE_READERS = ("shared/store_queries.py", "shared/store_scenes.py")


def profile_batch_build(store: Path, batch_size: int | None, extra: list[str]) -> tuple[str, float, float]:
    """cProfile building one training batch in this process (items + collate) as a loader worker does:
    (profile text, seconds, seconds of it in store reads)."""
    from mllm3d.stage2_train3d import datamodule as dmod
    from mllm3d.stage2_train3d.train import as_config

    overrides = ["data.val_fraction=0.0", *([f"data.batch_size={batch_size}"] if batch_size else []), *extra]
    cfg = as_config(DEFAULT_TRAIN_CONFIG if DEFAULT_TRAIN_CONFIG.is_file() else None, overrides)
    dm = dmod.StoreDataModule(store, cfg)
    dm.list_pairs()
    ds = dm._dataset(dm.train_pairs, train=True)
    n = min(cfg.data.batch_size, len(ds))
    ds[0]  # first scene decode out of the profile
    t0 = time.perf_counter()
    stats = profile_stats(lambda: dmod.collate([ds[(1, i)] for i in range(n)]))
    total = time.perf_counter() - t0
    read_s = sum(ct for (fname, _l, name), (_cc, _nc, _tt, ct, _c) in stats.stats.items()  # type: ignore[attr-defined]
                 if fname.endswith(STORE_READERS) and name in ("read_query", "read_scene"))
    return format_stats(stats, limit=20, sort="cumulative"), total, read_s


def run(quick: bool = False, steps: int | None = None, workdir: Path | None = None) -> dict:
    """Build the demo store, time training with 2 workers and with 0 (baseline); the report dict."""
    tmp = Path(tempfile.mkdtemp(prefix="bench-stage2-", dir=workdir))
    try:
        with warnings.catch_warnings():  # scoped: the training's expected warnings, not the caller's filters
            warnings.filterwarnings("ignore", category=FutureWarning)  # spconv's torch.cuda.amp deprecation noise
            # no validation in the timed runs, so the product's val/miou checkpoint has nothing to monitor
            warnings.filterwarnings("ignore", message=r".*could not find the monitored key.*")
            from mllm3d.stage2_train3d.train import quiet_lightning

            with quiet_lightning():  # the trainer's info lines
                return _run(quick, steps, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _run(quick: bool, steps: int | None, tmp: Path) -> dict:
    import torch

    store = tmp / "store.zarr"
    built = build_demo_store(store, quick)
    measured = QUICK_MEASURED_STEPS if quick else MEASURED_STEPS
    n_steps = steps if steps is not None else WARMUP_STEPS + measured
    batch_size = 1 if quick else FULL_BATCH
    extra = QUICK_MODEL if quick else []
    two = train_steps(store, tmp / "run-w2", WORKERS, n_steps, batch_size, extra)
    zero = train_steps(store, tmp / "run-w0", 0, n_steps, batch_size, extra)
    runs: list[tuple[str, dict[str, Any]]] = [("num_workers=0 (baseline: synchronous loading)", zero),
                                              (f"num_workers={WORKERS}", two)]
    gpu: dict[str, Any] | None = None
    gpu_note = ""
    if torch.cuda.is_available():
        name = torch.cuda.get_device_name(0)
        try:
            gpu = train_steps(store, tmp / "run-gpu", WORKERS, n_steps, batch_size, extra, accelerator="gpu")
            gpu_note = f"GPU: {name}, same {WORKERS}-worker run with trainer.accelerator=gpu."
        except Exception as exc:  # noqa: BLE001 - e.g. deterministic-algorithm errors; retry once without
            try:
                gpu = train_steps(store, tmp / "run-gpu", WORKERS, n_steps, batch_size,
                                  [*extra, "trainer.deterministic=false"], accelerator="gpu")
                gpu_note = (f"GPU: {name}; the run with the config's trainer.deterministic failed "
                            f"(`{type(exc).__name__}: {exc}`), so it was rerun with trainer.deterministic=false.")
            except Exception as exc2:  # noqa: BLE001 - reported, not fatal
                gpu_note = f"GPU: {name} present but the GPU run failed: `{type(exc2).__name__}: {exc2}`."
        if gpu is not None:
            runs.append((f"num_workers={WORKERS}, GPU", gpu))
    else:
        gpu_note = ("GPU: torch.cuda.is_available() is False on this machine — no GPU figures. On 2 shared cores "
                    "the loader workers compete with the training process for the same CPUs, which a GPU machine "
                    "would not.")

    grid = (QUICK_SCALING_POINTS, QUICK_SCALING_QUERIES, QUICK_SCALING_REPEAT, QUICK_SHARE_CELL) if quick else (
        SCALING_POINTS, SCALING_QUERIES, SCALING_REPEAT, SHARE_CELL)
    share_cell = grid[3]
    n_scenes = QUICK_LARGE_STORE_SCENES if quick else LARGE_STORE_SCENES
    cells, cost = scaling_grid(tmp, grid[0], grid[1], grid[2], extra, split_at=share_cell,
                               scenes_at={share_cell[0]: n_scenes})
    large_steps = steps if steps is not None else WARMUP_STEPS + (QUICK_MEASURED_STEPS if quick else LARGE_MEASURED_STEPS)
    large = train_steps(cost["stores"][share_cell[0]], tmp / "run-large-w2", WORKERS, large_steps, batch_size, extra)
    large_label = (f"{WORKERS} workers, CPU, {share_cell[0] // 1000}k-point store ({n_scenes} scene"
                   + ("s)" if n_scenes != 1 else ")"))
    runs.append((f"num_workers={WORKERS}, {share_cell[0] // 1000}k-point store", large))
    wait_runs = [two] + ([gpu] if gpu else []) + [large]
    targets = []
    for label, r in ([(f"{WORKERS} workers, CPU, demo store", two)] + ([(f"{WORKERS} workers, GPU", gpu)] if gpu else [])
                     + [(large_label, large)]):
        tgt = target(f"share of a training step waiting for data, {label}", r["wait_fraction"], TARGET_WAIT_FRACTION,
                     higher_is_better=False, fmt="{:.1%}")
        tgt["measured_text"] = f"{r['wait_fraction'] * 100:.1f} %"
        tgt["target_text"] = f"< {TARGET_WAIT_FRACTION * 100:.0f} %"
        targets.append(tgt)
    rows = []
    for label, r in runs:
        b = r["build"]
        rows.append([
            label,
            f"{r['steps_measured']} (of {r['steps_total']})",
            f"{r['batch_size']} item{'s' if r['batch_size'] != 1 else ''} / {r['mean_queries_per_step']:.1f} queries / {r['mean_points_per_step']:,.0f} pts "
            f"/ {r['mean_voxels_per_step']:,.0f} vox",
            fmt_s(r["median_wait_s"]),
            fmt_s(r["median_compute_s"]),
            f"{r['wait_fraction'] * 100:.1f} %",
            fmt_rate(r["points_per_s"], "pt/s"),
            f"{r['items_per_s']:.2f}",
            f"{r['queries_per_s']:.2f}",
            f"{fmt_s(b['median_item_s'])} / {fmt_s(b['median_collate_s'])} ({b['items_timed']} items, "
            f"{b['processes']} process{'es' if b['processes'] != 1 else ''})",
        ])
    speed = two["points_per_s"] / zero["points_per_s"] if zero["points_per_s"] > 0 else float("nan")

    def capacity(r: dict[str, Any], workers: int) -> float:
        """Seconds the loader needs per batch in steady state (batch build / workers)."""
        b = r["build"]
        per_batch = r["batch_size"] * b["median_item_s"] + b["median_collate_s"]
        return per_batch / max(workers, 1)

    cap2 = capacity(two, WORKERS)
    notes = [
        f"Demo store: Stage 1 ({built['how']}, synthetic backend): {built['scenes']} scenes, {built['queries']} "
        f"queries × 4 views, built in {built['seconds']:.1f} s.",
        f"Training: `train_run` with {two['config']}"
        + (f" and a TINY U-Net for quick mode ({' '.join(QUICK_MODEL)})" if quick else
           f" (the default spconv U-Net: {two['model']}, {two['voxel_size'] * 100:.0f} cm voxels)")
        + f", batch size {two['batch_size']} item{'s' if two['batch_size'] != 1 else ''}"
        + (" (quick-mode override)" if batch_size is not None else " (the config's)")
        + f", torch {torch.__version__}, {two['torch_threads']} torch thread(s) in the training process as the "
        f"config sets them; {n_steps} steps per run, the first {WARMUP_STEPS} ({WORKERS} workers × prefetch_factor "
        f"{PREFETCH_FACTOR}: the batches buffered before training starts) dropped; no validation. "
        "An item is one scene with up to `data.queries_per_item` of its queries (the batch column gives both).",
        "Data wait = gap between one step's end and the next step's start (Lightning fetches the batch there); "
        "compute = forward + losses + backward + SGD step. Wait fraction = Σwait / Σ(wait + compute).",
        f"Throughput = points (items, queries) of the batches / (wait + compute); {WORKERS} workers vs 0 workers: "
        f"{speed:.2f}× (compute-only throughput with {WORKERS} workers: "
        f"{fmt_rate(two['points_per_s_compute_only'], 'pt/s')}).",
        "Item build = `StoreQueryDataset.__getitem__` (scene from the worker's cache, augmentation, voxelisation, "
        "query read and fusion), timed inside the process that builds it (the loader workers with "
        f"{WORKERS} workers; the first item of each process dropped); collate = `datamodule.collate` of one batch. "
        f"In steady state {WORKERS} workers deliver a batch every ≈ (batch × item + collate) / {WORKERS} = "
        f"{fmt_s(cap2)} against a median compute of {fmt_s(two['median_compute_s'])} per step.",
        gpu_note,
    ]
    profile = None
    miss: list[str] = []
    missed = [(r, t) for r, t in zip(wait_runs, targets, strict=True) if not t["met"]]
    if missed:
        prof, build_s, read_s = profile_batch_build(store, batch_size, extra)
        profile = f"one training batch built in the main process (items + collate), {fmt_s(build_s)}:\n" + prof
        for r, t in missed:
            cap = capacity(r, WORKERS)
            if cap > r["median_compute_s"]:
                why = (f"the loader is slower than the model: {WORKERS} workers need ≈{fmt_s(cap)} per batch "
                       f"(item {fmt_s(r['build']['median_item_s'])} × {r['batch_size']} + collate "
                       f"{fmt_s(r['build']['median_collate_s'])}, ÷ {WORKERS}) vs {fmt_s(r['median_compute_s'])} of "
                       "compute, so every step waits for the difference")
            else:
                why = (f"on average the workers keep up ({fmt_s(cap)} per batch vs {fmt_s(r['median_compute_s'])} of "
                       f"compute) but the waits are bursty (median {fmt_s(r['median_wait_s'])}, max "
                       f"{fmt_s(r['max_wait_s'])}): the workers share the CPU with the training process, and epoch "
                       "boundaries restart the prefetch")
            miss.append(f"{t['claim']}: missed because {why}.")
        miss.append(
            f"Where a batch's build time goes (profile below, {fmt_s(build_s)} in one process): store reads "
            f"(`read_query` / `read_scene`) {read_s / max(build_s, 1e-9) * 100:.0f} %; the rest is voxelisation, "
            "augmentation, fusion and collate."
        )
    section = scaling_section(cells, cost, share_cell, grid[2], TARGET_GROWTH_RATIO, TARGET_NETWORK_SHARE,
                              f"TINY U-Net ({' '.join(QUICK_MODEL)})" if quick else f"default U-Net: {two['model']}",
                              "quick mode's TINY U-Net" if quick else "default config")
    targets += section["targets"]
    notes += section["notes"]
    notes.append(f"Large-store run: the same `train_run` with {WORKERS} workers on the {share_cell[0]:,}-point scaling store "
                 f"({n_scenes} scene(s) × 32 queries, batch {large['batch_size']} item(s) of up to "
                 f"`data.queries_per_item` queries), {large_steps} steps, the first {WARMUP_STEPS} dropped.")
    miss += section["miss"]
    if section["profile"]:
        profile = f"{profile}\n\n{section['profile']}" if profile else section["profile"]
    table_title = ("Training steps on the demo store and the large store" + (" (CPU and GPU)" if gpu else " (CPU)")
                   + f": one run per loader, medians / Σ over {two['steps_measured']} steps (not repeated runs)")
    return report(
        name="stage2_pipeline",
        title="Stage 2 input pipeline",
        notes=notes,
        tables=[{
            "title": table_title,
            "columns": ["loader", "steps measured", "batch (items / queries / points / voxels)", "median wait",
                        "median compute", "wait share", "points/s", "items/s", "queries/s",
                        "item build / collate (median, in the loader)"],
            "rows": rows,
        }, *section["tables"]],
        targets=targets,
        profile=profile,
        miss_analysis=miss,
        data={"store": built, "workers2": two, "workers0": zero, "gpu": gpu, "speedup_points_per_s": speed,
              "loader_seconds_per_batch_2_workers": cap2, "warmup_steps": WARMUP_STEPS, "large_store_workers2": large,
              "scaling": cells, "split": cost.get("split"), "split_share": cost.get("split_share")},
        method=(f"not repeated runs: one training run per loader, per-step medians and Σ-ratios over the "
                f"{two['steps_measured']} steps after the {WARMUP_STEPS} dropped; item/collate times are medians over "
                "every item/batch built; the store build is one timing; the scaling grid and the step split are "
                f"medians of {grid[2]} interleaved repetitions after 1 warm-up"),
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
