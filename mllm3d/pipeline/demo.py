"""``mllm3d demo`` / ``make demo``: the whole pipeline on synthetic data, offline, in a few CPU minutes.

1. synthetic scenes and queries (``mllm3d.shared.synthetic``), no download;
2. Stage 1 with the ``synthetic`` backend — a stand-in for LISA that corrupts ground-truth masks with
   MLLM-like failures (hallucinated objects, missed views, noisy boundaries, partial masks);
3. Stage 2: the default sparse U-Net (configs/train/default.yaml) trained on the pseudo-labels of the
   training scenes (no ground truth anywhere in training, none for model selection: the last checkpoint);
4. evaluation on the **held-out** scenes: the 2D-projection baseline (fused votes of the cached masks) vs
   the trained network, every query against the ground truth;
5. a contact sheet PNG of one held-out query (its text, every view's mask, α, ω and keep/drop reason, and a
   row with the trained network's mask projected into the same views), the fused pseudo-label PLY, a
   prediction PLY from ``predict`` for that query, and — when the ``viz`` extra (rerun-sdk) is installed —
   a Rerun recording of that query (``view.rrd``: points, layers, posed cameras with their masks).

Everything goes under ``--out`` (cache/demo). Re-running reuses the finished store and training run when
the settings are unchanged, and rewrites the pictures, PLYs and metrics.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from mllm3d.pipeline.evaluate import (
    BASELINE_NAME,
    EvalResult,
    NetworkMethod,
    ProjectionBaseline,
    evaluate,
    write_json,
)
from mllm3d.pipeline.evaluate_cli import group_tables, kind_table, results_table
from mllm3d.pipeline.steps import DEFAULT_FAILURES, synthetic_stage1, train_or_reuse
from mllm3d.shared.errors import BadInputError, Mllm3dError
from mllm3d.shared.store import open_store

# on top of configs/train/default.yaml: no validation passes during training (the demo evaluates the
# last checkpoint on the held-out scenes afterwards; ground truth never selects a checkpoint)
NETWORK_ROW = "trained 3D network"  # the metrics table's row of the trained network
EVIDENCE_ROW = "network + test-view evidence"  # the same network with test-time evidence fusion (beyond the paper)
SHEET_COLORS = 256  # the demo's contact sheet is a palette PNG (~170 KB instead of ~410 KB; docs/ holds one)
DEMO_TRAIN: tuple[str, ...] = ("trainer.limit_val_batches=0", "trainer.log_every_n_steps=10", "data.val_fraction=0.25")


@dataclass
class DemoConfig:
    """Size of the demo (defaults: about 5 minutes on 2 CPU cores)."""

    num_scenes: int = 32  # split by data.val_fraction 0.25: 24 train / 8 held-out
    seed: int = 0
    views: int = 4
    epochs: int = 20  # the default recipe's optim.epochs (25 gave +1.4 mIoU, inside the CI, and ~55 s more)
    failures: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_FAILURES))
    train_config: str = "default"  # a packaged recipe's name or a YAML path
    train_overrides: tuple[str, ...] = DEMO_TRAIN

    @classmethod
    def quick(cls) -> DemoConfig:
        """For tests: 2 scenes (1 train, 1 held-out), 1 epoch (the metrics are then meaningless)."""
        return cls(num_scenes=2, epochs=1)

    def overrides(self) -> list[str]:
        return [*self.train_overrides, f"optim.epochs={self.epochs}", f"trainer.seed={self.seed}",
                f"data.split_seed={self.seed}"]


@dataclass
class DemoOutputs:
    """Where the demo put everything."""

    store: Path
    run_dir: Path
    checkpoint: Path
    metrics_json: Path
    contact_sheet: Path
    fused_ply: Path
    prediction_ply: Path
    recording: Path | None  # the Rerun recording; None without the viz extra
    query: tuple[str, str]
    result: EvalResult
    seconds: dict[str, float]
    reused: dict[str, bool]


def pick_query(store_path: Path, pairs: list[tuple[str, str]]) -> tuple[str, str]:
    """The demo's showcase query among ``pairs``: the first whose views all produced [SEG] and see the target."""
    store = open_store(store_path, "r")
    if not pairs:
        raise BadInputError(f"{store_path}: no complete queries")
    for sid, qid in pairs:
        rec = store.read_query(sid, qid, with_features=False)
        if rec.has_seg.all() and rec.masks.any(axis=(1, 2)).all():
            return sid, qid
    return pairs[0]


def run_demo(cfg: DemoConfig, out: Path, console: Console | None = None) -> DemoOutputs:
    """Run every step; see the module docstring."""
    # heavy imports (torch, Lightning, spconv) inside: `mllm3d demo --help` stays fast
    from mllm3d.pipeline.inspect_cli import export_fused_ply, query_sheet
    from mllm3d.pipeline.predict import fusion_of, predict_query, write_prediction_ply
    from mllm3d.pipeline.query_inspection import inspect_query
    from mllm3d.pipeline.render import save_png
    from mllm3d.shared.sources import open_source
    from mllm3d.stage1_pseudolabel.segmenter import build_segmenter
    from mllm3d.stage2_train3d.datamodule import split_pairs
    from mllm3d.stage2_train3d.predictor import Predictor

    console = console or Console()
    if cfg.num_scenes < 2:
        raise BadInputError(f"the demo needs at least 2 scenes (training and held-out), got {cfg.num_scenes}")
    out.mkdir(parents=True, exist_ok=True)
    (out / "demo-config.json").write_text(json.dumps(asdict(cfg), indent=2))
    seconds: dict[str, float] = {}
    reused: dict[str, bool] = {}
    backend = {"seed": cfg.seed, "image_features": True, **cfg.failures}

    t0 = time.perf_counter()
    store_path = out / "store.zarr"
    had_store = store_path.is_dir()
    with console.status(f"Stage 1: {cfg.num_scenes} synthetic scenes, synthetic backend, {cfg.views} views/query"):
        synthetic_stage1(cfg.num_scenes, cfg.seed, store_path, cfg.views, backend, console)
    seconds["stage 1"] = time.perf_counter() - t0
    reused["stage 1"] = had_store
    store = open_store(store_path, "r")
    pairs = store.complete_pairs()
    console.print(f"[bold]1-2.[/bold] Stage 1: {len(store.scene_ids())} scenes, {len(pairs)} queries in {store_path} "
                  f"({seconds['stage 1']:.0f} s)")

    t0 = time.perf_counter()
    run_dir = out / "run"
    with console.status(f"Stage 2: training the sparse U-Net for {cfg.epochs} epochs on the training scenes' "
                        "pseudo-labels"):
        ckpt, reused["stage 2"] = train_or_reuse(cfg.train_config, store_path, run_dir, cfg.overrides())
    seconds["stage 2"] = time.perf_counter() - t0
    console.print(f"[bold]3.[/bold] Stage 2: {'reused ' if reused['stage 2'] else ''}checkpoint {ckpt} "
                  f"({seconds['stage 2']:.0f} s)")

    t0 = time.perf_counter()
    predictor = Predictor.from_checkpoint(ckpt)
    train_pairs, held_out = split_pairs(pairs, predictor.config.data)
    held_scenes = sorted({s for s, _ in held_out})
    from mllm3d.pipeline.evidence import EvidenceFusionMethod

    methods = [ProjectionBaseline(predictor.config.fusion), NetworkMethod(NETWORK_ROW, predictor, ckpt),
               EvidenceFusionMethod(EVIDENCE_ROW, predictor, checkpoint=ckpt)]
    with console.status("evaluating the 2D-projection baseline and the trained network on the held-out scenes"):
        result = evaluate(store, held_out, methods,
                          split=f"{len(held_scenes)} held-out scenes (not trained on): {', '.join(held_scenes)}")
    metrics_json = write_json(result, out / "metrics.json", {"store": str(store_path), "checkpoint": ckpt,
                                                              "train_queries": len(train_pairs)})
    seconds["evaluation"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    sid, qid = pick_query(store_path, held_out)
    ins = inspect_query(store, sid, qid, predictor.config.fusion)
    prob = predictor.predict(ins.scene, ins.record)
    sheet = save_png(query_sheet(ins, network_prob=prob, threshold=predictor.threshold), out / "contact_sheet.png",
                     colors=SHEET_COLORS)
    recording = write_demo_recording(store_path, (sid, qid), out / "view.rrd", prob, predictor)
    fused_ply = export_fused_ply(ins, out / "fused_pseudolabel.ply", predictor.config.fusion.vote_threshold)
    source = open_source(f"synthetic:{cfg.num_scenes}:{cfg.seed}")
    query = next(q for q in source.scene_queries(sid) if q.query_id == qid)
    scene = source.load(sid)
    pred = predict_query(scene, query, build_segmenter("synthetic", backend), predictor, fusion_of(predictor),
                         views=cfg.views, seed=cfg.seed + 1)
    pred_ply = write_prediction_ply(out / "prediction.ply", scene, pred)
    seconds["pictures"] = time.perf_counter() - t0
    return DemoOutputs(
        store=store_path, run_dir=run_dir, checkpoint=Path(ckpt), metrics_json=metrics_json, contact_sheet=sheet,
        fused_ply=fused_ply, prediction_ply=pred_ply, recording=recording, query=(sid, qid), result=result, seconds=seconds,
        reused=reused,
    )


def write_demo_recording(store_path: Path, query: tuple[str, str], out: Path, prob: Any, predictor: Any) -> Path | None:
    """The Rerun recording of ``query`` with the network's layer (scores ``prob``), or None (and any stale
    recording removed) when rerun-sdk is not installed."""
    from mllm3d.pipeline.view import require_rerun, write_recording

    try:
        require_rerun()
    except BadInputError:
        out.unlink(missing_ok=True)  # never leave a recording of an earlier run next to this run's outputs
        return None
    write_recording(store_path, *query, out, prediction=prob, fusion=predictor.config.fusion,
                    threshold=predictor.threshold)
    return out


def look_lines(o: DemoOutputs) -> list[str]:
    """How to look at the showcase query: the contact sheet, and the 3D view (or how to install it)."""
    from mllm3d.pipeline.view import INSTALL_VIZ

    sid, qid = o.query
    lines = [f"contact sheet (query text, each view's mask, alpha, omega, kept/dropped, the network's row): "
             f"{o.contact_sheet}"]
    if o.recording is None:
        lines.append(f"3D view: not written (rerun-sdk is not installed); add it with: {INSTALL_VIZ}")
    else:
        lines.append(f"3D view: rerun {o.recording}   (or: mllm3d view --store {o.store} --scene {sid} "
                     f"--query {qid} --checkpoint {o.checkpoint} --spawn)")
    return lines


def outputs_table(o: DemoOutputs, text: str) -> Table:
    t = Table(title="demo outputs", show_header=False)
    t.add_column("", style="bold")
    t.add_column("")
    t.add_row("pseudo-label store", str(o.store))
    t.add_row("training run", f"{o.run_dir} (config.yaml, CSV logs, checkpoints)")
    t.add_row("checkpoint", str(o.checkpoint))
    t.add_row("metrics", str(o.metrics_json))
    t.add_row("showcase query", f"{o.query[0]} / {o.query[1]}: {text!r}")
    t.add_row("contact sheet", str(o.contact_sheet))
    t.add_row("fused pseudo-label PLY", str(o.fused_ply))
    t.add_row("prediction PLY", str(o.prediction_ply))
    t.add_row("3D view (Rerun)", str(o.recording) if o.recording else "not written (no viz extra)")
    t.add_row("time", ", ".join(f"{k} {v:.0f} s" for k, v in o.seconds.items()))
    return t


@click.command("demo")
@click.option("--out", type=click.Path(path_type=Path), default=Path("cache/demo"), show_default=True,
              help="Folder for the store, the run, metrics, pictures and PLYs (rerunning reuses finished steps).")
@click.option("--quick", is_flag=True, help="2 scenes, 1 epoch (smoke test; numbers meaningless).")
@click.option("--scenes", "num_scenes", type=int, default=None, help="Number of synthetic scenes.")
@click.option("--epochs", type=int, default=None, help="Training epochs.")
@click.option("--seed", type=int, default=None, help="Seed of scenes, views, stand-in and training.", show_default="0")
def demo_cmd(out: Path, quick: bool, num_scenes: int | None, epochs: int | None, seed: int | None) -> None:
    """Synthetic scenes -> Stage 1 (stand-in backend) -> Stage 2 training -> evaluation, pictures and PLYs."""
    console = Console()
    cfg = DemoConfig.quick() if quick else DemoConfig()
    for name, value in (("num_scenes", num_scenes), ("epochs", epochs), ("seed", seed)):
        if value is not None:
            setattr(cfg, name, value)
    try:
        o = run_demo(cfg, out, console)
    except Mllm3dError as exc:
        raise click.ClickException(str(exc)) from exc
    text = open_store(o.store, "r").query_attrs(*o.query).get("text", "")
    console.print(outputs_table(o, text))
    for line in look_lines(o):
        console.print(line, soft_wrap=True, markup=False, highlight=False)
    console.print(
        "[dim]Stage 1 used the synthetic backend, a stand-in for the MLLM (noisy ground-truth masks). The network "
        "was trained on the other scenes' pseudo-labels only (no ground truth); both rows are scored against the "
        "ground truth of the held-out scenes.[/dim]"
    )
    kt = kind_table(o.result)
    if kt is not None:
        console.print(kt)
    for table in group_tables(o.result):
        console.print(table)
    console.print(results_table(o.result, title="demo: 2D-projection baseline vs trained 3D network"))
    console.print(verdict(o.result))


def verdict(result: EvalResult) -> str:
    """The trained network's mIoU (and with test-time evidence fusion) against the baseline's on the held-out
    queries, each with its paired bootstrap 95 % CI over those queries."""
    from mllm3d.pipeline.stats import paired_bootstrap

    rows = {r.name: r for r in result.rows}
    base = rows.get(BASELINE_NAME)
    if base is None:
        return ""
    lines = []
    for name in (NETWORK_ROW, EVIDENCE_ROW):
        row = rows.get(name)
        if row is None:
            continue
        ci = paired_bootstrap([s.iou for s in row.scores], [s.iou for s in base.scores])
        lines.append(f"{name}: mIoU {100 * row.summary['miou']:.2f} vs 2D projection {100 * base.summary['miou']:.2f}, "
                     f"difference {ci.text()} (95 % CI, paired bootstrap) on {len(row.scores)} held-out queries")
    return "\n".join(lines)
