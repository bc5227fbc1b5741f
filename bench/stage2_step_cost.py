"""Cost of one Stage 2 training step measured in the bench process, without the trainer or a loader.

A synthetic store is built at a given number of points per scene (Stage 1, synthetic backend); one
dataset item (one scene, ``queries_per_item`` of its queries) is built and collated once, then two
callables run on that same batch, interleaved:

- *step*: ``Stage2Module.model_step`` (forward, fusion targets, every loss) + ``backward`` + optimizer step;
- *network*: the U-Net and its heads alone (``Stage2Net.forward``: backbone, semantic and local heads)
  + ``backward`` from fixed output gradients of the same shapes.

Network share = network / step; the rest of the step is the losses, the logit gathers, the per-query
projections and the optimizer step.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import REPO_ROOT, Timing, measure_interleaved

DEMO_STAGE1_CONFIG = REPO_ROOT / "configs" / "stage1" / "synthetic.yaml"
DEFAULT_TRAIN_CONFIG = REPO_ROOT / "configs" / "train" / "default.yaml"
SCENE_QUERIES = 32  # queries generated per scene (the largest queries_per_item of the grid)
SCENE_OBJECTS = (18, 20)  # enough objects for 32 distinct query texts


@dataclass
class StepBench:
    """One prepared batch and the module/optimizer that train on it."""

    module: Any
    optimizer: Any
    batch: dict[str, Any]
    build_s: float
    points: int
    voxels: int
    queries: int
    pairs: int
    config: Any


def build_scaled_store(path: Path, points: int, scenes: int = 1, seed: int = 0) -> dict[str, Any]:
    """Stage 1 (synthetic backend, configs/stage1/synthetic.yaml) on ``scenes`` synthetic scenes of about
    ``points`` surface points (calibrated on the first) and :data:`SCENE_QUERIES` queries each; what was written."""
    import time

    from mllm3d.shared.synthetic import SyntheticConfig, SyntheticSource
    from mllm3d.stage1_pseudolabel.run_config import RunConfig
    from mllm3d.stage1_pseudolabel.runner import run_pseudolabels

    t0 = time.perf_counter()
    # the generator drops hidden faces after sampling: calibrate the requested count on this layout once
    base = SyntheticConfig(num_points=points, num_queries=(SCENE_QUERIES, SCENE_QUERIES), num_objects=SCENE_OBJECTS)
    kept = SyntheticSource(1, seed=seed, cfg=base).load("synth_0000").num_points
    cfg_scene = SyntheticConfig(num_points=int(round(points * points / max(kept, 1))),
                                num_queries=base.num_queries, num_objects=base.num_objects)
    source = SyntheticSource(scenes, seed=seed, cfg=cfg_scene)
    spec = f"synthetic:{scenes}:{seed}"
    if DEMO_STAGE1_CONFIG.is_file():
        cfg = RunConfig.from_yaml(DEMO_STAGE1_CONFIG, store=str(path), source=spec, progress=False)
    else:
        cfg = RunConfig(source=spec, store=str(path), backend="synthetic", progress=False)
    summary = run_pseudolabels(cfg, source=source)
    return {"requested_points": points, "scenes": summary.scene_groups_written, "queries": summary.queries_written,
            "seconds": time.perf_counter() - t0}


def prepare_step(store: Path, queries_per_item: int, extra: list[str] | None = None) -> StepBench:
    """The default train config (``extra`` overrides on top) with one item of ``queries_per_item`` queries per
    batch; the module, its optimizer and the first training batch (built and collated once)."""
    import time

    import pytorch_lightning as pl
    import torch

    from mllm3d.stage2_train3d.collate import collate
    from mllm3d.stage2_train3d.datamodule import StoreDataModule
    from mllm3d.stage2_train3d.model import build_network
    from mllm3d.stage2_train3d.module import Stage2Module
    from mllm3d.stage2_train3d.train import as_config, resolve_from_store

    overrides = ["data.val_fraction=0.0", "data.batch_size=1", f"data.queries_per_item={queries_per_item}",
                 "optim.scheduler=none", *(extra or [])]  # the cosine schedule needs a trainer; its cost is nil
    cfg = as_config(DEFAULT_TRAIN_CONFIG if DEFAULT_TRAIN_CONFIG.is_file() else None, overrides)
    dm = StoreDataModule(store, cfg)
    dm.list_pairs()
    cfg, _ = resolve_from_store(cfg, dm)
    dm.config = cfg
    if cfg.trainer.cpu_threads > 0:
        torch.set_num_threads(cfg.trainer.cpu_threads)
    pl.seed_everything(cfg.trainer.seed, verbose=False)
    ds = dm._dataset(dm.train_pairs, train=True)
    ds.scene(ds.items[0][0])  # the scene decode is not part of an item's steady-state build
    t0 = time.perf_counter()
    batch = collate([ds[(0, 0)]])
    build_s = time.perf_counter() - t0
    module = Stage2Module(build_network(cfg.model), cfg)
    module.train()
    opt = module.configure_optimizers()["optimizer"]
    return StepBench(module, opt, batch, build_s, int(batch["point_offset"][-1]), int(batch["voxel_offset"][-1]),
                     int(batch["num_queries"]), int(batch["pair_point"].shape[0]), cfg)


def time_step(sb: StepBench, repeat: int, split: bool = False) -> dict[str, Timing]:
    """Interleaved timings on one batch: the full training step and the network's forward + backward; with
    ``split`` also the step's forward alone (``model_step``), the network's forward alone and the optimizer
    step alone, so the backward of each part is a difference of two medians."""
    import torch

    module, opt, batch = sb.module, sb.optimizer, sb.batch
    net = module.net
    b = int(batch["batch_size"])
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        shapes = {k: v.shape for k, v in net(batch["coords"], batch["feats"], b).items()}
    grads = {k: torch.randn(s, generator=gen) * 1e-3 for k, s in shapes.items()}

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        module.model_step(batch, "train")["loss"].backward()
        opt.step()

    def network() -> None:
        opt.zero_grad(set_to_none=True)
        out = net(batch["coords"], batch["feats"], b)
        keys = sorted(out)
        torch.autograd.backward([out[k] for k in keys], [grads[k] for k in keys])

    fns = {"step": step, "network": network}
    if split:
        fns["step_forward"] = lambda: module.model_step(batch, "train")
        fns["network_forward"] = lambda: net(batch["coords"], batch["feats"], b)
        fns["optimizer"] = opt.step  # on the gradients the last timed backward left
    return measure_interleaved(fns, repeat=repeat, warmup=1)


def split_rows(t: dict[str, Timing]) -> tuple[list[list[Any]], float]:
    """Rows (part, median, share of the step) of a ``split`` timing, and the share of the network."""
    step = t["step"].median
    net_f, net = t["network_forward"].median, t["network"].median
    step_f, opt = t["step_forward"].median, t["optimizer"].median
    backward = step - step_f - opt
    parts = [
        ("U-Net + heads, forward", net_f),
        ("U-Net + heads, backward (network fwd+bwd − its forward)", net - net_f),
        ("rest of the forward: query projection, logit gathers, fusion targets, losses", step_f - net_f),
        ("rest of the backward (step − step forward − optimizer − network backward)", backward - (net - net_f)),
        ("optimizer step", opt),
    ]
    rows = [[name, fmt_ms(v), f"{v / step * 100:.0f} %"] for name, v in parts]
    rows.append(["whole step (measured)", fmt_ms(step), "100 %"])
    return rows, net / step


def op_profile(sb: StepBench, limit: int = 15) -> str:
    """torch.profiler table (self CPU time) of one training step on the prepared batch."""
    from torch.profiler import ProfilerActivity, profile

    opt, module, batch = sb.optimizer, sb.module, sb.batch
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        opt.zero_grad(set_to_none=True)
        module.model_step(batch, "train")["loss"].backward()
        opt.step()
    return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=limit)


def scaling_grid(tmp: Path, points: tuple[int, ...], queries: tuple[int, ...], repeat: int,
                 extra: list[str] | None = None, split_at: tuple[int, int] | None = None,
                 scenes_at: dict[int, int] | None = None) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """One store per point count (``scenes_at[n]`` scenes, default 1), every queries-per-item count on it: the
    measured cells, and for the cell ``split_at`` = (points, queries) the split timing, its rows and an op
    profile (``{"stores": {points: path}}`` besides)."""
    cells = []
    extras: dict[str, Any] = {"stores": {}}
    for n in points:
        store = tmp / f"scaling-{n}.zarr"
        built = build_scaled_store(store, n, scenes=(scenes_at or {}).get(n, 1))
        extras["stores"][n] = store
        for q in queries:
            sb = prepare_step(store, q, extra)
            split = split_at == (n, q)
            t = time_step(sb, repeat, split=split)
            if split:
                rows, share = split_rows(t)
                extras.update(split={k: v.as_dict() for k, v in t.items()}, split_rows=rows, split_share=share,
                              split_cell=(sb.points, sb.queries), op_profile=op_profile(sb))
            cells.append({
                "requested_points": n, "queries_per_item": q, "points": sb.points, "voxels": sb.voxels,
                "queries": sb.queries, "pairs": sb.pairs, "item_build_s": sb.build_s,
                "step": t["step"].as_dict(), "network": t["network"].as_dict(),
                "network_share": t["network"].median / t["step"].median, "store": built,
            })
            del sb
    return cells, extras


def growth_ratios(cells: list[dict[str, Any]]) -> dict[int, dict[str, float]]:
    """Per queries-per-item count: step-time growth / point growth between the smallest and the largest store
    (≤ 1: at most linear), with both growths."""
    out: dict[int, dict[str, float]] = {}
    for q in sorted({c["queries_per_item"] for c in cells}):
        row = sorted((c for c in cells if c["queries_per_item"] == q), key=lambda c: c["points"])
        if len(row) < 2:
            continue
        lo, hi = row[0], row[-1]
        t_growth = hi["step"]["median"] / lo["step"]["median"]
        p_growth = hi["points"] / lo["points"]
        v_growth = hi["voxels"] / lo["voxels"]
        out[q] = {"step_growth": t_growth, "point_growth": p_growth, "voxel_growth": v_growth,
                  "ratio": t_growth / p_growth}
    return out


def fmt_ms(seconds: float) -> str:
    """Milliseconds with no decimals past 100 ms."""
    ms = seconds * 1e3
    return f"{ms:.0f} ms" if ms >= 100 else f"{ms:.1f} ms"


def scaling_rows(cells: list[dict[str, Any]]) -> list[list[Any]]:
    """Table rows of the grid: size, step, network, share, per-point cost, item build."""
    rows = []
    for c in cells:
        step, netw = c["step"]["median"], c["network"]["median"]
        rows.append([
            f"{c['points']:,}", f"{c['voxels']:,}", c["queries"], f"{c['pairs']:,}",
            f"{fmt_ms(step)} ({fmt_ms(c['step']['min'])}–{fmt_ms(c['step']['max'])})",
            fmt_ms(netw), f"{netw / step * 100:.0f} %", fmt_ms(step - netw),
            f"{step / c['points'] * 1e6:.2f} µs", fmt_ms(c["item_build_s"]),
        ])
    return rows


SCALING_COLUMNS = ["points", "voxels", "queries in the item", "(point, view) pairs", "step (median, range)",
                   "U-Net + heads fwd+bwd", "network share", "rest (losses, gathers, SGD)", "step per point",
                   "item build + collate"]

