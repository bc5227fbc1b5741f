"""``mllm3d synth``: generate synthetic scenes into the pseudo-label store, write their queries (and PLYs)."""

from __future__ import annotations

import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import click
import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from mllm3d.shared.annotations import save_queries
from mllm3d.shared.errors import Mllm3dError
from mllm3d.shared.interrupts import Terminated, sigterm_raises
from mllm3d.shared.ply import write_ply
from mllm3d.shared.scene import Query, Scene
from mllm3d.shared.scene_store import store_scene
from mllm3d.shared.store import open_store
from mllm3d.shared.synthetic import SyntheticConfig, SyntheticSource


def instance_colors(instance_ids: np.ndarray) -> np.ndarray:
    """A stable, well-spread RGB colour per instance id (grey for -1)."""
    ids = np.asarray(instance_ids, dtype=np.int64)
    golden = 0.618033988749895
    hue = (ids * golden) % 1.0
    h6 = hue * 6.0
    i = np.floor(h6).astype(np.int64) % 6
    f = h6 - np.floor(h6)
    v, s = 0.95, 0.75
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    table = np.stack([
        np.stack([np.full_like(f, v), t, np.full_like(f, p)], 1), np.stack([q, np.full_like(f, v), np.full_like(f, p)], 1),
        np.stack([np.full_like(f, p), np.full_like(f, v), t], 1), np.stack([np.full_like(f, p), q, np.full_like(f, v)], 1),
        np.stack([t, np.full_like(f, p), np.full_like(f, v)], 1), np.stack([np.full_like(f, v), np.full_like(f, p), q], 1),
    ])  # (6, N, 3)
    rgb = table[i, np.arange(len(ids))]
    rgb[ids < 0] = 0.5
    return np.clip(np.rint(rgb * 255), 0, 255).astype(np.uint8)


def export_scene_ply(scene: Scene, path: Path) -> Path:
    """PLY of a scene coloured by instance, with ``instance`` (int32) and the original ``r/g/b`` as scalars."""
    ids = scene.instance_ids if scene.instance_ids is not None else np.full(scene.num_points, -1, np.int32)
    return write_ply(path, scene.points, instance_colors(ids), instance=ids.astype(np.int32),
                     r=scene.colors[:, 0], g=scene.colors[:, 1], b=scene.colors[:, 2])


@dataclass
class SynthSummary:
    """What ``generate_synthetic`` did."""

    written: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # already in the store
    points: dict[str, int] = field(default_factory=dict)
    views: dict[str, int] = field(default_factory=dict)
    queries: list[Query] = field(default_factory=list)
    ply_files: list[Path] = field(default_factory=list)


def generate_synthetic(
    num_scenes: int,
    seed: int,
    store_path: str | Path,
    queries_out: str | Path | None,
    ply_dir: str | Path | None = None,
    overwrite: bool = False,
    cfg: SyntheticConfig | None = None,
    console: Console | None = None,
    discard_pseudolabels: bool = False,
) -> SynthSummary:
    """Generate ``num_scenes`` scenes, write each scene group to the store, the queries and optional PLYs.

    ``overwrite`` rewrites a scene group, which drops its query groups (Stage 1's pseudo-labels); it
    refuses, before writing anything, when any scene to rewrite holds query groups, unless
    ``discard_pseudolabels``.
    """
    source = SyntheticSource(num_scenes, seed=seed, cfg=cfg)
    store = open_store(store_path, "a")
    if overwrite and not discard_pseudolabels:
        held = {sid: len(store.query_ids(sid)) for sid in source.scene_ids() if store.has_scene(sid)}
        held = {sid: n for sid, n in held.items() if n}
        if held:
            raise Mllm3dError(
                f"{store_path}: --overwrite would delete {sum(held.values())} pseudo-label query group(s) of "
                f"scene(s) {sorted(held)}; nothing was written. Use another --store, or pass "
                "--discard-pseudolabels to rewrite these scenes and delete their pseudo-labels"
            )
    out = SynthSummary()
    console = console or Console(stderr=True)
    columns = (TextColumn("[bold]synth[/] {task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task("", total=num_scenes)
        for sid in source.scene_ids():
            progress.update(task, description=sid)
            scene = source.load(sid)
            if store_scene(store, scene, overwrite=overwrite):
                out.written.append(sid)
            else:
                out.skipped.append(sid)
            out.points[sid] = scene.num_points
            out.views[sid] = len(scene.views)
            if ply_dir is not None:
                out.ply_files.append(export_scene_ply(scene, Path(ply_dir) / f"{sid}.ply"))
            progress.advance(task)
    out.queries = source.queries()
    if queries_out is not None:
        save_queries(queries_out, out.queries)
    return out


def _interrupted_line(store_path: str, signame: str) -> str:
    """One line after a signal: the scene groups the store holds (the one being written was removed)."""
    try:
        held = f"the store {store_path} holds {len(open_store(store_path, 'r').scene_ids())} complete scene group(s)"
    except Exception:  # noqa: BLE001 - the report must not fail on the way out (e.g. no store created yet)
        held = f"store {store_path}"
    return (f"Error: synth interrupted by {signame}; {held}; nothing half-written is visible; rerun the same command "
            "to finish (scenes already in the store are skipped)")


@click.command("synth")
@click.option("--num-scenes", default=6, show_default=True, type=click.IntRange(min=1), help="Number of scenes.")
@click.option("--seed", default=0, show_default=True, type=int, help="Source seed (scene i uses a seed derived from it).")
@click.option("--store", "store_path", default="cache/store.zarr", show_default=True, type=click.Path(),
              help="Pseudo-label store to write the scene groups into (created if absent).")
@click.option("--queries-out", default="cache/synthetic_queries.json", show_default=True,
              type=click.Path(dir_okay=False), help="Where to write the queries (own json format).")
@click.option("--ply-dir", default=None, type=click.Path(file_okay=False),
              help="Also export each scene as <scene>.ply coloured by instance.")
@click.option("--overwrite", is_flag=True,
              help="Rewrite scene groups already in the store. Refused when a scene to rewrite holds "
                   "pseudo-label query groups (rewriting a scene deletes them) unless --discard-pseudolabels.")
@click.option("--discard-pseudolabels", is_flag=True,
              help="With --overwrite: also rewrite scenes that hold pseudo-labels, deleting their query groups.")
def synth(num_scenes: int, seed: int, store_path: str, queries_out: str, ply_dir: str | None, overwrite: bool,
          discard_pseudolabels: bool) -> None:
    """Generate synthetic scenes (the default data of the demo and the tests) into the store."""
    console = Console()
    try:
        with sigterm_raises():
            s = generate_synthetic(num_scenes, seed, store_path, queries_out, ply_dir, overwrite,
                                   console=Console(stderr=True), discard_pseudolabels=discard_pseudolabels)
    except Mllm3dError as exc:
        console.print(f"[red]error:[/] {exc}")
        sys.exit(1)
    except Terminated:
        click.echo(_interrupted_line(store_path, "SIGTERM"), err=True)
        sys.exit(143)
    except KeyboardInterrupt:
        click.echo(_interrupted_line(store_path, "SIGINT (Ctrl-C)"), err=True)
        sys.exit(130)
    table = Table(title=f"synthetic:{num_scenes}:{seed} -> {store_path}")
    for col in ("scene", "points", "views", "queries", "store"):
        table.add_column(col, justify="right" if col in ("points", "views", "queries") else "left")
    per_scene = Counter(q.scene_id for q in s.queries)
    for sid in s.points:
        table.add_row(sid, str(s.points[sid]), str(s.views[sid]), str(per_scene[sid]),
                      "written" if sid in s.written else "already there")
    console.print(table)
    kinds = Counter(q.kind for q in s.queries)
    console.print(
        f"{len(s.written)} scene(s) written, {len(s.skipped)} already in the store; "
        f"{len(s.queries)} queries ({', '.join(f'{k} {n}' for k, n in sorted(kinds.items()))}) -> {queries_out}"
        + (f"; {len(s.ply_files)} PLY file(s) -> {ply_dir}" if s.ply_files else "")
    )
