"""``mllm3d inspect``: store overview, one query in detail (table + contact sheet + fused PLY), ``--check``."""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import click
import numpy as np
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from mllm3d.pipeline.query_inspection import QueryInspection, inspect_query
from mllm3d.pipeline.render import (
    SheetStyle,
    contact_sheet,
    highlight_colors,
    placeholder_thumbnails,
    project_point_mask,
    readable_thumbnails,
    save_png,
    title_band,
)
from mllm3d.pipeline.store_check import check_store
from mllm3d.pipeline.store_overview import StoreOverview, fmt_bytes, store_overview
from mllm3d.shared.errors import Mllm3dError
from mllm3d.shared.metrics import gt_mask
from mllm3d.shared.store import PseudoLabelStore, open_store, safe_key
from mllm3d.stage2_train3d.fusion import FusionConfig


def _progress(console: Console) -> Progress:
    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    )


def _mmm(v: tuple[int, float, int]) -> str:
    return f"{v[0]} / {v[1]:.1f} / {v[2]}"


def overview_table(ov: StoreOverview) -> Table:
    """The store overview as a two-column rich table."""
    t = Table(title=f"store {ov.path}", show_header=False)
    t.add_column("", style="bold")
    t.add_column("")
    seg = ov.segmenter
    t.add_row("segmenter", f"{seg.get('name', '?')} (config hash {seg.get('config_hash', '?')})" if seg else "unknown")
    t.add_row("scenes", str(ov.num_scenes))
    t.add_row("queries", str(ov.num_queries))
    t.add_row("queries per scene (min/mean/max)", _mmm(ov.queries_per_scene))
    t.add_row("views per query (min/mean/max)", _mmm(ov.views_per_query))
    t.add_row("query kinds", ", ".join(f"{k}: {v}" for k, v in ov.kinds.items()) or "-")
    t.add_row("has [SEG] rate", f"{ov.has_seg_rate:.1%}")
    t.add_row("mean confidence / attention ([SEG] views)", f"{ov.mean_confidence:.3f} / {ov.mean_attention:.3f}")
    a = ov.mask_area
    t.add_row(
        "mask area, share of image ([SEG] views)",
        f"mean {a['mean']:.4f}, median {a['median']:.4f}, min {a['min']:.4f}, max {a['max']:.4f}, "
        f"empty {a['empty']:.1%}",
    )
    t.add_row("size on disk", fmt_bytes(ov.size_on_disk))
    t.add_row(
        "masks raw / stored (compression)",
        f"{fmt_bytes(ov.mask_raw_bytes)} / {fmt_bytes(ov.mask_stored_bytes)} ({ov.compression_ratio:.1f}x)",
    )
    tmp = ov.temporary_groups
    t.add_row("incomplete (temporary) groups", str(len(tmp)) + (f": {', '.join(p.name for p in tmp[:3])}" if tmp else ""))
    bad = ov.unreadable_groups
    t.add_row(
        "unreadable groups",
        "0" if not bad else f"[red]{len(bad)}[/red]: {escape(', '.join(bad[:5]))}"
        + (", ..." if len(bad) > 5 else "") + " (left out above; see --check)",
    )
    return t


def view_table(ins: QueryInspection) -> Table:
    """One row per view of the inspected query."""
    q = ins.record.query
    title = f"{q.scene_id} / {q.query_id} ({q.kind or 'kind unknown'}): {q.text!r} -> targets {q.target_ids}"
    t = Table(title=escape(title))
    for col in ("#", "view", "frame", "[SEG]", "confidence", "attention", "mask area", "ω", "status"):
        t.add_column(col, justify="right" if col not in ("status",) else "left")
    for r in ins.rows:
        status = "[green]kept[/green]" if r.kept else f"[red]filtered: {escape(r.reason)}[/red]"
        t.add_row(
            str(r.index),
            str(r.view),
            str(r.frame_id),
            "yes" if r.has_seg else "[red]no[/red]",
            f"{r.confidence:.3f}",
            f"{r.attention:.3f}",
            f"{r.area:.4f}",
            f"{r.weight:.3f}",
            status,
        )
    return t


# the contact sheet's look: 15 px captions (4 lines), a 20 px title, the mask tinted and outlined
SHEET_STYLE = SheetStyle(caption_lines=4, font_size=15, line_height=19, title_size=20, outline=2)
NEUTRAL: tuple[int, int, int] = (150, 150, 150)  # frames of the network's row (it filters no views)
NETWORK_FILL = 2  # px: gaps between the network's projected points filled (render.project_point_mask)


def query_sheet(
    ins: QueryInspection, style: SheetStyle | None = None, network_prob: np.ndarray | None = None,
    threshold: float = 0.5,
) -> np.ndarray:
    """The contact sheet of an inspected query: the query text as title and a legend, one tile per view
    about 320 px wide (frame id, α, ω, kept or why dropped) with its mask tinted and outlined, framed
    green (kept) or red (dropped); with ``network_prob`` (N,) a second row with the network's mask
    (scores >= ``threshold``) projected into the same views. Grey tiles if the store has no thumbnails."""
    style = style or SHEET_STYLE
    k = ins.record.num_views
    thumbs = ins.thumbnails
    if thumbs is None:
        thumbs = placeholder_thumbnails(k, ins.scene.image_size, style.placeholder_width)
    thumbs = readable_thumbnails(thumbs)
    kept = [r.kept for r in ins.rows]
    captions = [  # PIL's built-in fonts have no Greek letters: alpha / omega spelled out
        [f"view #{r.index}, frame {r.frame_id}", f"alpha (confidence) {r.confidence:.2f}",
         f"omega (weight) {r.weight:.2f}", "kept" if r.kept else f"dropped: {r.reason}"]
        for r in ins.rows
    ]
    first = contact_sheet(thumbs, ins.record.masks, kept, captions, style)
    width = first.shape[1]
    q = ins.record.query
    legend = (f"scene {q.scene_id}, query {q.query_id}: {sum(kept)} of {k} views kept. Magenta: each view's "
              "2D mask. Frame: green = kept by the view filter, red = dropped (reason below the view).")
    parts = [title_band(f'"{q.text}"', width, style, size=style.title_size),
             title_band(legend, width, style), first]
    if network_prob is not None:
        views = [ins.scene.correspondences.view(int(v)) for v in ins.record.view_index]
        mask = np.asarray(network_prob) >= threshold
        net = project_point_mask(mask, views, ins.scene.image_size, fill=NETWORK_FILL)
        label = (f"Trained 3D network: the {int(mask.sum())} of {mask.size} points scored >= {threshold:.2f}, "
                 "projected into the same views (magenta).")
        # no outline: the network's mask is per point, an outline around every speck would hide it
        row_style = replace(style, kept=NEUTRAL, filtered=NEUTRAL, caption_lines=1, outline=0, alpha=0.7)
        parts += [title_band(label, width, style), contact_sheet(thumbs, net, kept, [[c[0]] for c in captions],
                                                                 row_style)]
    return np.concatenate(parts, axis=0)


def export_fused_ply(ins: QueryInspection, path: Path, vote_threshold: float) -> Path:
    """The fused 3D pseudo-label as a PLY: label red over dimmed colours; prob, seen (and gt) as scalars."""
    from mllm3d.shared.ply import write_ply

    label = ins.fused.seen & (ins.fused.prob >= vote_threshold)
    fields: dict[str, np.ndarray] = {
        "prob": ins.fused.prob.astype(np.float32),
        "seen": ins.fused.seen.astype(np.uint8),
        "label": label.astype(np.uint8),
    }
    tids = ins.record.query.target_ids
    if ins.scene.instance_ids is not None and tids is not None:
        fields["gt"] = gt_mask(ins.scene.instance_ids, tids).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_ply(path, ins.scene.points, highlight_colors(ins.scene.colors, label), **fields)
    return path


DEFAULT_OUT_DIR = Path("cache/inspect")


def output_paths(scene: str, query_id: str, sheet: Path | None, ply: Path | None) -> tuple[Path, Path]:
    """Where ``inspect --scene --query`` writes the contact sheet and the fused PLY: both, next to each
    other. A path not given is the other one's with the other suffix; neither given:
    ``cache/inspect/<scene>__<query>.png`` and ``.ply``."""
    if sheet is None and ply is None:
        sheet = DEFAULT_OUT_DIR / f"{safe_key(scene)}__{safe_key(query_id)}.png"
    if sheet is None:
        assert ply is not None
        sheet = ply.with_suffix(".png")
    if ply is None:
        ply = sheet.with_suffix(".ply")
        if ply == sheet:  # --sheet was given a .ply name
            ply = sheet.with_name(sheet.name + ".ply")
    return sheet, ply


def _run_check(store_path: Path, console: Console) -> int:
    with _progress(console) as prog:
        task = prog.add_task("checking groups", total=None)
        problems = check_store(store_path, progress=lambda d, n: prog.update(task, completed=d, total=n))
    errors = [p for p in problems if p.severity == "error"]
    if problems:
        t = Table(title=f"check {store_path}: {len(errors)} errors, {len(problems) - len(errors)} warnings")
        t.add_column("severity")
        t.add_column("where", overflow="fold")  # never cut the path that says which group is broken
        t.add_column("problem")
        for p in problems:
            t.add_row("[red]error[/red]" if p.severity == "error" else "[yellow]warning[/yellow]", p.where, p.message)
        console.print(t)
    else:
        console.print(f"[green]check {store_path}: every group is valid[/green]")
    return 1 if errors else 0


def _open(store_path: Path) -> PseudoLabelStore:
    return open_store(store_path, "r")


@click.command("inspect")
@click.option("--store", "store_path", required=True, type=click.Path(path_type=Path), help="Pseudo-label store.")
@click.option("--scene", default=None, help="Scene id of the query to inspect (with --query).")
@click.option("--query", "query_id", default=None, help="Query id to inspect (with --scene).")
@click.option("--sheet", "--png", "sheet", type=click.Path(path_type=Path), default=None,
              help="Contact sheet PNG path", show_default="beside --ply, else cache/inspect/<scene>__<query>.png")
@click.option("--ply", type=click.Path(path_type=Path), default=None,
              help="Fused 3D pseudo-label PLY path", show_default="beside the contact sheet, same name, .ply")
@click.option("--checkpoint", type=click.Path(path_type=Path), default=None,
              help="Stage 2 checkpoint or run dir: adds a row with the network's mask to the contact sheet.")
@click.option("--check", is_flag=True, help="Validate every group (read-only); exit 1 on any error.")
@click.option("--min-confidence", type=float, default=FusionConfig.min_confidence, show_default=True,
              help="View filter: a view needs at least this confidence (alpha) to be kept.")
@click.option("--min-area", type=float, default=FusionConfig.min_area, show_default=True,
              help="View filter: a view's mask must cover at least this share of its pixels.")
@click.option("--no-view-filter", is_flag=True, help="Keep low-confidence and tiny masks (as the ablation).")
@click.option("--vote-threshold", type=float, default=FusionConfig.vote_threshold, show_default=True,
              help="Fused pseudo-label: a point is positive when its weighted vote reaches this.")
def inspect_cmd(
    store_path: Path,
    scene: str | None,
    query_id: str | None,
    sheet: Path | None,
    ply: Path | None,
    checkpoint: Path | None,
    check: bool,
    min_confidence: float,
    min_area: float,
    no_view_filter: bool,
    vote_threshold: float,
) -> None:
    """Look inside a pseudo-label store without modifying it."""
    console = Console()
    try:
        if check:
            sys.exit(_run_check(store_path, console))
        store = _open(store_path)
        if (scene is None) != (query_id is None):
            raise click.UsageError("--scene and --query go together")
        if scene is None:
            with _progress(console) as prog:
                task = prog.add_task("reading queries", total=None)
                ov = store_overview(store, progress=lambda d, n: prog.update(task, completed=d, total=n))
            console.print(overview_table(ov))
            return
        assert query_id is not None
        cfg = FusionConfig(
            view_filter=not no_view_filter,
            min_confidence=min_confidence,
            min_area=min_area,
            vote_threshold=vote_threshold,
        )
        ins = inspect_query(store, scene, query_id, cfg)
        console.print(view_table(ins))
        label = ins.fused.seen & (ins.fused.prob >= cfg.vote_threshold)
        console.print(
            f"fused pseudo-label: {int(label.sum())} of {ins.scene.num_points} points "
            f"({int(ins.fused.seen.sum())} seen by a weighted view)"
        )
        sheet_path, ply_path = output_paths(scene, query_id, sheet, ply)
        prob, thr = None, 0.5
        if checkpoint is not None:
            from mllm3d.stage2_train3d.predictor import Predictor

            predictor = Predictor.from_checkpoint(checkpoint)
            prob, thr = predictor.predict(ins.scene, ins.record), predictor.threshold
        save_png(query_sheet(ins, network_prob=prob, threshold=thr), sheet_path)
        note = "" if ins.thumbnails is not None else " (no thumbnails in store)"
        console.print(f"contact sheet: {sheet_path}{note}", soft_wrap=True)
        export_fused_ply(ins, ply_path, cfg.vote_threshold)
        console.print(f"fused pseudo-label PLY: {ply_path}", soft_wrap=True)
        ckpt = f" --checkpoint {checkpoint}" if checkpoint is not None else ""
        console.print(f"3D view (needs the viz extra): mllm3d view --store {store_path} --scene {scene} "
                      f"--query {query_id}{ckpt} --spawn", soft_wrap=True, markup=False)
    except Mllm3dError as exc:
        raise click.ClickException(str(exc)) from exc
