"""``mllm3d pseudolabel``: a thin command over :func:`mllm3d.stage1_pseudolabel.runner.run_pseudolabels`."""

from __future__ import annotations

import json
import logging
import sys
import warnings
from pathlib import Path
from typing import Any

import click
from rich.console import Console

from mllm3d.shared.errors import Mllm3dError
from mllm3d.shared.interrupts import Terminated, sigterm_raises
from mllm3d.stage1_pseudolabel.run_config import RunConfig, load_backend_config
from mllm3d.stage1_pseudolabel.run_inputs import check_store_path

# CLI shortcut -> backend config key (override --backend-config)
BACKEND_SHORTCUTS = {
    "checkpoint": "checkpoint",
    "clip": "clip_path",
    "device": "device",
    "dtype": "dtype",
    "decoding": "decoding",
}


def build_config(
    config_path: str | None, backend_config_path: str | None, options: dict[str, Any]
) -> RunConfig:
    """RunConfig from an optional run config (name or YAML), a backend YAML, ``--set`` and the options."""
    sets = options.pop("sets", ()) or ()
    backend_config: dict[str, Any] = {}
    if backend_config_path:
        backend_config.update(load_backend_config(backend_config_path))
    for opt, key in BACKEND_SHORTCUTS.items():
        value = options.pop(opt, None)
        if value is not None:
            backend_config[key] = value
    overrides = {k: v for k, v in options.items() if v is not None}
    return RunConfig.load(config_path, sets, backend_config=backend_config, **overrides)


def _log_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                 file: Any = None, line: str | None = None) -> None:
    """Python warnings raised during a run become log records (one line each, no source excerpt)."""
    name = "" if issubclass(category, UserWarning) else f"{category.__name__}: "
    logging.getLogger("mllm3d.stage1_pseudolabel.runner").warning("%s%s", name, message)


def _terminated_line(store_path: str | None, signame: str = "SIGTERM") -> str:
    """One line: what the store holds now, and that rerunning resumes."""
    held = ""
    if store_path is not None:
        try:
            from mllm3d.shared.store import open_store

            store = open_store(store_path, "r")
            held = (f"; the store {store_path} holds {len(store.scene_ids())} complete scene group(s) and "
                    f"{len(store.complete_pairs())} complete query group(s), everything published so far")
        except Exception:  # noqa: BLE001 - the report must not fail on the way out
            held = f"; store {store_path}"
    return (f"Error: pseudolabel interrupted by {signame}{held}; nothing half-written is visible; rerun the same "
            "command to resume (complete groups are skipped)")


@click.command("pseudolabel")
@click.option(
    "--config",
    "config_path",
    default=None,
    metavar="NAME|PATH",
    help="Run config: a packaged name (synthetic, lisa-7b) or a YAML path (its base: chain is loaded first).",
)
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
              help="Run-config override, dotted keys (e.g. seed=3, backend_config.miss_rate=0.2); repeatable.")
@click.option(
    "--source",
    default=None,
    help="Scene source: synthetic[:N[:SEED]], scannet:PATH or a directory", show_default="synthetic",
)
@click.option(
    "--queries",
    default=None,
    type=click.Path(dir_okay=False),
    help="Query annotation file (ScanRefer, Nr3D, ...). Default: the source's own queries.",
)
@click.option("--store", default=None, type=click.Path(), help="Pseudo-label store directory",
              show_default="cache/store.zarr")
@click.option(
    "--backend",
    default=None,
    type=click.Choice(["synthetic", "lisa"]),
    help="2D segmenter backend", show_default="synthetic",
)
@click.option(
    "--backend-config", "backend_config_path", type=click.Path(dir_okay=False), help="Backend config YAML."
)
@click.option("--checkpoint", default=None, help="LISA checkpoint directory (overrides the backend config).")
@click.option("--clip", default=None, help="CLIP vision tower directory (backend config clip_path).")
@click.option("--device", default=None, help="Backend device, e.g. cuda:0 or cpu.")
@click.option("--dtype", default=None, help="Backend dtype, e.g. bfloat16, float16, float32.")
@click.option("--decoding", default=None, help="LISA decoding mode (see the lisa backend).")
@click.option("--views", default=None, help="Views per query (int) or 'all'", show_default="4")
@click.option("--seed", default=None, type=int, help="View-sampling seed", show_default="0")
@click.option(
    "--frame-stride",
    default=None,
    type=click.IntRange(min=1),
    help="ScanNet: use every N-th frame file of the export", show_default="the source spec's, else 1",
)
@click.option(
    "--max-frames", default=None, type=click.IntRange(min=1), help="ScanNet: at most N frames per scene."
)
@click.option(
    "--shard", default=None, help="This worker's shard i/n. Default: SLURM array / torchrun env, else 0/1."
)
@click.option(
    "--max-scenes", default=None, type=int, help="Only the first N scenes (sorted ids), before sharding."
)
@click.option(
    "--allow-mixed-segmenters",
    is_flag=True,
    default=None,
    help="Write to a store made with another segmenter config.",
)
@click.option("--progress/--no-progress", default=None, help="Show a progress bar", show_default="on")
@click.option(
    "--summary-json",
    type=click.Path(dir_okay=False),
    default=None,
    help="Also write the config and summary as JSON here.",
)
def pseudolabel(
    config_path: str | None, backend_config_path: str | None, summary_json: str | None, **options: Any
) -> None:
    """Stage 1: segment every (scene, query) with a 2D backend and fill the pseudo-label store."""
    console = Console(stderr=True)
    cfg = None
    try:
        with sigterm_raises():
            cfg = build_config(config_path, backend_config_path, options)
            check_store_path(cfg.store)
            from mllm3d.stage1_pseudolabel.runner import run_pseudolabels

            with warnings.catch_warnings():
                warnings.showwarning = _log_warning
                summary = run_pseudolabels(cfg, console=console)
    except Mllm3dError as exc:
        raise click.ClickException(str(exc)) from exc
    except Terminated:
        click.echo(_terminated_line(cfg.store if cfg is not None else None), err=True)
        sys.exit(143)
    except KeyboardInterrupt:  # Ctrl-C: the same unwinding and report as SIGTERM, the shell's status 130
        click.echo(_terminated_line(cfg.store if cfg is not None else None, "SIGINT (Ctrl-C)"), err=True)
        sys.exit(130)
    for line in summary.lines():
        style = "red" if line.startswith("FAILED") else None
        console.print(line, style=style, markup=False, highlight=False)
    if summary_json:
        p = Path(summary_json)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(
            json.dumps({"config": cfg.to_dict(), "summary": summary.to_dict()}, indent=2, default=str)
        )
    if not summary.ok:
        console.print(f"{len(summary.failed)} scene(s) failed", style="bold red")
        sys.exit(1)
