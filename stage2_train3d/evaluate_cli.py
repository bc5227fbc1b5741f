"""``mllm3d eval``: the 2D-projection baseline and trained 3D networks side by side on a store."""

from __future__ import annotations

from pathlib import Path

import click
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from shared.errors import BadInputError, Mllm3dError
from shared.store import PseudoLabelStore, open_store
from stage2_train3d.config import DataConfig
from stage2_train3d.evaluate import (
    PERCENT,
    SUMMARY_COLUMNS,
    EvalResult,
    Method,
    NetworkMethod,
    ProjectionBaseline,
    evaluate,
    fmt_value,
    select_pairs,
    write_csv,
    write_json,
)
from stage2_train3d.fusion import FusionConfig


def results_table(result: EvalResult, title: str = "evaluation") -> Table:
    """One row per method: Acc@0.25 / Acc@0.5 / mIoU (percent), grounded-only mIoU, zero-target counts."""
    t = Table(title=f"{title} ({len(result.pairs)} queries{', ' + result.split if result.split else ''})")
    t.add_column("method")
    for key, label in SUMMARY_COLUMNS:
        t.add_column(label + (" %" if key in PERCENT else ""), justify="right")
    for r in result.rows:
        s = r.summary
        t.add_row(r.name, *[fmt_value(k, s.get(k, float("nan"))) for k, _ in SUMMARY_COLUMNS])
    t.caption = (
        "Acc@k = share of queries with IoU > k (strict); mIoU over all queries; 'grounded' = mean IoU of "
        "queries with IoU > 0.25 only; zero-target queries score 1 only when nothing is predicted."
    )
    return t


def kind_table(result: EvalResult) -> Table | None:
    """Acc@0.25 / Acc@0.5 / mIoU per query kind and method, or None when kinds are unknown."""
    kinds = sorted({k for r in result.rows for k in r.by_kind})
    if not kinds:
        return None
    t = Table(title=escape("by query kind: Acc@0.25 / Acc@0.5 / mIoU (%) [n queries]"))
    t.add_column("method")
    for k in kinds:
        t.add_column(k, justify="right")
    for r in result.rows:
        cells = []
        for k in kinds:
            s = r.by_kind.get(k)
            cells.append(
                "-"
                if s is None
                else f"{fmt_value('acc25', s['acc25'])} / {fmt_value('acc50', s['acc50'])} / "
                f"{fmt_value('miou', s['miou'])} [{int(s['n'])}]"
            )
        t.add_row(r.name, *cells)
    return t


def parse_checkpoint(spec: str) -> tuple[str, Path]:
    """``name=path`` or ``path`` (name = the run directory's name, or the file stem)."""
    if "=" in spec:
        name, _, path = spec.partition("=")
        if not name or not path:
            raise BadInputError(f"--checkpoint {spec!r}: expected NAME=PATH or PATH")
        return name, Path(path)
    p = Path(spec)
    parent = p.parent.name if p.parent.name not in ("", "checkpoints", ".") else p.parent.parent.name
    return (parent or p.stem), p


def val_pairs(store: PseudoLabelStore, data_cfg: DataConfig) -> list[tuple[str, str]]:
    """The validation pairs of Stage 2's DataModule: the same split function on the same listing."""
    from stage2_train3d.datamodule import split_pairs

    _, val = split_pairs(store.complete_pairs(), data_cfg)
    return sorted(val)


def resolve_pairs(
    store: PseudoLabelStore, split: str, scenes: str | None, methods: list[Method], config: Path | None
) -> tuple[list[tuple[str, str]], str]:
    """Which (scene, query) pairs to evaluate, and a description of the selection for the table title.

    ``--scenes`` wins; ``--split all`` takes every complete pair; ``--split val`` takes the val pairs of
    the training split (data section of ``--config``, else of the checkpoints, which must agree).
    """
    if scenes:
        ids = [s.strip() for s in scenes.split(",") if s.strip()]
        pairs, unknown = select_pairs(store, ids)
        if unknown:
            raise BadInputError(f"{store.path}: unknown scenes {unknown} (store has {store.scene_ids()[:8]} ...)")
        return pairs, f"scenes {','.join(ids)}"
    if split == "all":
        return store.complete_pairs(), "all scenes"
    if config is not None:
        from stage2_train3d.config import load_config

        data_cfgs = [load_config(config).data]
        origin = str(config)
    else:
        data_cfgs = [m.predictor.config.data for m in methods if isinstance(m, NetworkMethod)]
        origin = "the checkpoint's training config"
        if not data_cfgs:
            data_cfgs, origin = [DataConfig()], "the default training config"
    splits = [tuple(val_pairs(store, d)) for d in data_cfgs]
    if len(set(splits)) > 1:
        raise BadInputError(
            "--split val: the checkpoints were trained with different validation splits; "
            "pass --config (a training config) or --scenes to choose one"
        )
    pairs = list(splits[0])
    n_scenes = len({s for s, _ in pairs})
    return pairs, f"val split of {origin}: {n_scenes} scenes"


def _progress(console: Console) -> Progress:
    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    )


def run_eval(
    store: PseudoLabelStore,
    methods: list[Method],
    pairs: list[tuple[str, str]],
    split: str,
    console: Console | None = None,
) -> EvalResult:
    """Evaluate ``methods`` on ``pairs`` with a progress bar."""
    console = console or Console()
    if not pairs:
        raise BadInputError(f"{store.path}: no complete queries in the selected scenes ({split})")
    with _progress(console) as prog:
        task = prog.add_task("evaluating", total=len(pairs))
        return evaluate(store, pairs, methods, progress=lambda d, n: prog.update(task, completed=d), split=split)


@click.command("eval")
@click.option("--store", "store_path", required=True, type=click.Path(path_type=Path), help="Pseudo-label store.")
@click.option("--checkpoint", "checkpoints", multiple=True,
              help="Trained 3D network, NAME=PATH or PATH (repeatable: one row per checkpoint).")
@click.option("--split", type=click.Choice(["val", "all"]), default="val", show_default=True,
              help="val = the training DataModule's held-out scenes (from the checkpoint's config).")
@click.option("--scenes", default=None, help="Comma-separated scene ids to evaluate (overrides --split).")
@click.option("--config", type=click.Path(path_type=Path), default=None,
              help="Training config YAML whose data split defines --split val (default: the checkpoint's).")
@click.option("--no-baseline", is_flag=True, help="Leave out the 2D-projection baseline row.")
@click.option("--vote-threshold", type=float, default=FusionConfig.vote_threshold, show_default=True,
              help="Baseline: fused vote >= this -> target.")
@click.option("--device", default="cpu", show_default=True)
@click.option("--json", "json_path", type=click.Path(path_type=Path), default=None, help="Write results as JSON.")
@click.option("--csv", "csv_path", type=click.Path(path_type=Path), default=None, help="Write results as CSV.")
def eval_cmd(
    store_path: Path,
    checkpoints: tuple[str, ...],
    split: str,
    scenes: str | None,
    config: Path | None,
    no_baseline: bool,
    vote_threshold: float,
    device: str,
    json_path: Path | None,
    csv_path: Path | None,
) -> None:
    """Per-query point IoU -> Acc@0.25 / Acc@0.5 / mIoU for the baseline and each checkpoint."""
    console = Console()
    try:
        store = open_store(store_path, "r")
        methods: list[Method] = []
        if not no_baseline:
            methods.append(ProjectionBaseline(FusionConfig(vote_threshold=vote_threshold)))
        for spec in checkpoints:
            name, path = parse_checkpoint(spec)
            methods.append(NetworkMethod.from_checkpoint(name, path, device=device))
        if not methods:
            raise BadInputError("nothing to evaluate: give --checkpoint or drop --no-baseline")
        pairs, split_desc = resolve_pairs(store, split, scenes, methods, config)
        result = run_eval(store, methods, pairs, split_desc, console)
    except Mllm3dError as exc:
        raise click.ClickException(str(exc)) from exc
    console.print(results_table(result, title=f"eval {store_path}"))
    kt = kind_table(result)
    if kt is not None:
        console.print(kt)
    if result.skipped:
        console.print(f"[yellow]skipped {len(result.skipped)} queries[/yellow] (e.g. {result.skipped[0]})")
    if json_path is not None:
        console.print(f"JSON: {write_json(result, json_path, {'store': str(store_path)})}")
    if csv_path is not None:
        console.print(f"CSV: {write_csv(result, csv_path)}")
