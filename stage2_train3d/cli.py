"""``mllm3d train``: a thin click layer over :func:`mllm3d.stage2_train3d.train.train_run`."""

from __future__ import annotations

from pathlib import Path

import click

from mllm3d.shared.errors import Mllm3dError


@click.command("train")
@click.option("--store", "store_path", required=True, type=click.Path(path_type=Path), help="pseudo-label store (Zarr)")
@click.option("--config", "config_path", default=None, metavar="NAME|PATH",
              help="Recipe: a packaged name (default, paper, tiny, no_spatial, ...) or a YAML path", show_default="default")
@click.option("--out", "out_dir", required=True, type=click.Path(path_type=Path), help="run directory (checkpoints, logs, config.yaml)")
@click.option("--resume", default=None, help='checkpoint to resume from, or "last" (= OUT/checkpoints/last.ckpt)')
@click.option("--overwrite", is_flag=True,
              help="replace an earlier run in --out (without it, or --resume, an --out holding a run is refused)")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="config override, dotted keys (e.g. model.stem=16)")
@click.option("--epochs", type=int, default=None, help="= --set optim.epochs=N")
@click.option("--lr", type=float, default=None, help="= --set optim.lr=X")
@click.option("--seed", type=int, default=None, help="= --set trainer.seed=N")
@click.option("--target", type=click.Choice(["pairs", "fused"]), default=None, help="L_MMS target")
@click.option("--with-labels/--without-labels", default=None, help="add BCE on ground-truth 3D masks")
@click.option("--accelerator", default=None, help="Lightning accelerator: auto|cpu|gpu")
@click.option("--devices", default=None, help='Lightning devices: "auto", a count, or a list like "0,1"')
@click.option("--strategy", default=None, help="Lightning strategy: auto|ddp|ddp_find_unused_parameters_true|...")
@click.option("--num-nodes", type=int, default=None, help="nodes (SLURM multi-node: run under srun)")
@click.option("--select-by", type=click.Choice(["last", "val-gt-miou"]), default="last", show_default=True,
              help="the run's checkpoint: the last epoch (label-free), or the best ground-truth val/miou "
                   "(model selection with labels; reported as such)")
@click.option("--progress/--no-progress", default=True, help="rich progress bar")
def train(
    store_path: Path,
    config_path: Path | None,
    out_dir: Path,
    resume: str | None,
    overwrite: bool,
    sets: tuple[str, ...],
    epochs: int | None,
    lr: float | None,
    seed: int | None,
    target: str | None,
    with_labels: bool | None,
    accelerator: str | None,
    devices: str | None,
    strategy: str | None,
    num_nodes: int | None,
    select_by: str,
    progress: bool,
) -> None:
    """Train the 3D network on a pseudo-label store (Stage 2)."""
    from mllm3d.stage2_train3d.config import load_config
    from mllm3d.stage2_train3d.resume import refuse_previous_run
    from mllm3d.stage2_train3d.train import TrainingInterrupted, train_run

    overrides = list(sets)
    for key, value in (
        ("optim.epochs", epochs),
        ("optim.lr", lr),
        ("trainer.seed", seed),
        ("loss.target", target),
        ("loss.with_labels", with_labels),
        ("trainer.accelerator", accelerator),
        ("trainer.devices", devices),
        ("trainer.strategy", strategy),
        ("trainer.num_nodes", num_nodes),
    ):
        if value is not None:
            overrides.append(f"{key}={str(value).lower() if isinstance(value, bool) else value}")
    created = _missing_dirs(out_dir)
    try:
        load_config(config_path, overrides)  # a bad config or --set fails before --out is created
        refuse_previous_run(out_dir, resume, overwrite)
        result = train_run(config_path, store_path, out_dir, resume=resume, overrides=overrides, progress=progress,
                            select_by=select_by)
    except TrainingInterrupted as exc:
        click.echo(f"Error: {exc}", err=True)
        raise SystemExit(exc.exit_code) from exc
    except Mllm3dError as exc:
        _remove_if_empty(created)
        raise click.ClickException(str(exc)) from exc
    _report(result)


def _missing_dirs(path: Path) -> list[Path]:
    """``path`` and those of its parents that do not exist yet, deepest first."""
    missing = []
    p = path.absolute()
    while not p.exists() and p != p.parent:
        missing.append(p)
        p = p.parent
    return missing


def _remove_if_empty(dirs: list[Path]) -> None:
    """Remove the folders a refused run created, deepest first, as long as they are still empty."""
    for d in dirs:
        try:
            d.rmdir()
        except OSError:  # not empty (something was written), already gone or not ours to remove
            return


def _report(result: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="Stage 2 validation (per-query point IoU; Acc@k = share with IoU > k)")
    table.add_column("model")
    for col in ("mIoU", "Acc@0.25", "Acc@0.5"):
        table.add_column(col, justify="right")
    selection = result.get("selection") or "last epoch"
    rows = [("untrained network", result.get("untrained") or {}), (f"trained ({selection})", result.get("metrics") or {})]
    proj = result.get("metrics") or {}
    if "val/proj_miou" in proj:
        rows.append(
            (
                "2D projection (fused votes)",
                {"val/miou": proj["val/proj_miou"], "val/acc25": proj["val/proj_acc25"], "val/acc50": proj["val/proj_acc50"]},
            )
        )
    for name, m in rows:
        if m:
            table.add_row(name, *(f"{m.get(k, float('nan')):.4f}" for k in ("val/miou", "val/acc25", "val/acc50")))
    console = Console()
    console.print(table)
    console.print(f"checkpoint ({selection}): {result.get('checkpoint') or '-'}")
    console.print(f"config: {result.get('config_path')}")
