"""``mllm3d eval``: the 2D-projection baseline and trained 3D networks side by side on a store."""

from __future__ import annotations

from pathlib import Path

import click
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from mllm3d.pipeline.evaluate import (
    GROUP_TITLES,
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
from mllm3d.shared.errors import BadInputError, Mllm3dError
from mllm3d.shared.store import PseudoLabelStore, open_store
from mllm3d.stage2_train3d.config import DataConfig
from mllm3d.stage2_train3d.fusion import FusionConfig


def results_table(result: EvalResult, title: str = "evaluation") -> Table:
    """One row per method: Acc@0.25 / Acc@0.5 / mIoU (percent), grounded-only mIoU, zero-target counts."""
    t = Table(title=f"{title} ({len(result.pairs)} queries{', ' + result.split if result.split else ''})")
    t.add_column("method")
    columns = SUMMARY_COLUMNS
    if not any(r.summary.get("n_zero_target", 0) for r in result.rows):
        # no zero-target query: 'mIoU targeted' equals mIoU and the zero-target columns are empty
        columns = [c for c in SUMMARY_COLUMNS if c[0] not in ("miou_targeted", "n_zero_target", "zero_target_acc")]
    for key, label in columns:
        t.add_column(label + (" %" if key in PERCENT else ""), justify="right")
    for r in result.rows:
        s = r.summary
        t.add_row(r.name, *[fmt_value(k, s.get(k, float("nan"))) for k, _ in columns])
    t.caption = table_footnote(result)
    return t


def table_footnote(result: EvalResult) -> str:
    """What the columns mean, and the queries that were skipped or have unusable ground truth."""
    notes = [
        "Acc@k = share of queries with IoU > k (strict); mIoU over all queries; 'mIoU targeted' over "
        "queries with at least one target; 'mIoU (targeted, IoU>0.25)' = mean IoU of the targeted queries "
        "grounded with IoU > 0.25 only (one reading of the paper's 'after successful grounding'); "
        "zero-target queries score 1 only when nothing is predicted and are counted in their own columns."
    ]
    missing = max((int(r.summary.get("n_missing_targets", 0)) for r in result.rows), default=0)
    if missing:
        notes.append(
            f"{missing} targeted queries have no point of their target instances in the scene: "
            "unusable ground truth, scored IoU 0 (n_missing_targets)."
        )
    if result.skipped:
        notes.append(
            f"{len(result.skipped)} (scene, query) pairs skipped and not scored "
            f"(e.g. {result.skipped[0][0]}/{result.skipped[0][1]}: {result.skipped[0][2]}); "
            "the JSON output lists them all."
        )
    return escape(" ".join(notes))


def _cell(s: dict[str, float] | None) -> str:
    if s is None:
        return "-"
    return (
        f"{fmt_value('acc25', s['acc25'])} / {fmt_value('acc50', s['acc50'])} / "
        f"{fmt_value('miou', s['miou'])} [{int(s['n'])}]"
    )


def group_tables(result: EvalResult) -> list[Table]:
    """One table per secondary breakdown (unique / multiple, easy / hard, view-dependent), if any."""
    names = sorted({g for r in result.rows for g in r.by_group})
    tables = []
    for g in names:
        labels = sorted({k for r in result.rows for k in r.by_group.get(g, {})})
        t = Table(title=escape(f"by {GROUP_TITLES.get(g, g)}: Acc@0.25 / Acc@0.5 / mIoU (%) [n queries]"))
        t.add_column("method")
        for k in labels:
            t.add_column(k, justify="right")
        for r in result.rows:
            t.add_row(r.name, *[_cell(r.by_group.get(g, {}).get(k)) for k in labels])
        if g == "uniqueness":
            t.caption = escape(
                "unique = the target's class occurs once among the scene's instance labels, multiple = more "
                "than once (ScanRefer); unknown = zero-target, or no instance labels / class name."
            )
        tables.append(t)
    return tables


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
    name, path, _ = _parse_checkpoint(spec)
    return name, path


def _parse_checkpoint(spec: str) -> tuple[str, Path, bool]:
    """(name, path, whether the name was given explicitly)."""
    if "=" in spec and not Path(spec).is_file():  # Lightning names files like epoch=3-step=40.ckpt
        name, _, path = spec.partition("=")
        if not name or not path:
            raise BadInputError(f"--checkpoint {spec!r}: expected NAME=PATH or PATH")
        return name, Path(path), True
    p = Path(spec)
    if p.is_dir():  # a run directory
        return p.resolve().name, p, False
    parent = p.parent.name if p.parent.name not in ("", "checkpoints", ".") else p.parent.parent.name
    return (parent or p.stem), p, False


def checkpoint_names(specs: list[str] | tuple[str, ...], taken: tuple[str, ...] = ()) -> list[tuple[str, Path]]:
    """:func:`parse_checkpoint` for every spec, with automatic names made unique: a derived name shared
    with another row (two checkpoints of one run) gets the file stem appended, ``run (last)``.
    Explicit ``NAME=PATH`` names are kept as given (duplicates among them stay an error)."""
    parsed = [_parse_checkpoint(s) for s in specs]
    counts: dict[str, int] = {}
    for name in [*taken, *(n for n, _, _ in parsed)]:
        counts[name] = counts.get(name, 0) + 1
    out = []
    for name, path, explicit in parsed:
        if not explicit and counts[name] > 1 and path.stem != name:
            name = f"{name} ({path.stem})"
        out.append((name, path))
    return out


def val_pairs(store: PseudoLabelStore, data_cfg: DataConfig) -> list[tuple[str, str]]:
    """The validation pairs of Stage 2's DataModule: the same split function on the same listing."""
    from mllm3d.stage2_train3d.datamodule import split_pairs

    _, val = split_pairs(store.complete_pairs(), data_cfg)
    return sorted(val)


def trained_on_scored(methods: list, pairs: list[tuple[str, str]]) -> list[str]:
    """One line per checkpoint that was trained on some of the scored scenes (its numbers are not held-out)."""
    scored = {s for s, _ in pairs}
    lines = []
    for m in methods:
        seen = sorted(scored & set(getattr(getattr(m, "predictor", None), "train_scenes", []) or []))
        if seen:
            lines.append(f"{m.name}: {len(seen)} of the {len(scored)} scored scenes were used to train this "
                         f"checkpoint (e.g. {', '.join(seen[:3])}); its numbers on them are not held-out")
    return lines


def resolve_pairs(
    store: PseudoLabelStore, split: str, scenes: str | None, methods: list[Method], config: Path | None
) -> tuple[list[tuple[str, str]], str]:
    """Which (scene, query) pairs to evaluate, and a description of the selection for the table title.

    ``--scenes`` wins; ``--split all`` takes every complete pair; ``--split val`` takes the val pairs of
    the training split (data section of ``--config``, else of the checkpoints, which must agree). When
    that split holds no pair (trained with ``val_fraction: 0``, or a one-scene store), every complete
    pair is taken instead and the description says so (it starts with :data:`FALLBACK_PREFIX`).
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
        from mllm3d.stage2_train3d.config import load_config

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
    if not pairs:
        return store.complete_pairs(), f"{FALLBACK_PREFIX}: the val split of {origin} is empty"
    n_scenes = len({s for s, _ in pairs})
    return pairs, f"val split of {origin}: {n_scenes} scenes"


FALLBACK_PREFIX = "all scenes (--split val fallback)"


def _progress(console: Console) -> Progress:
    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    )


def check_embedding_widths(store: PseudoLabelStore, methods: list[Method], pairs: list[tuple[str, str]]) -> None:
    """BadInputError naming checkpoint and store when a network expects other [SEG] embeddings than the store's."""
    if not pairs:
        return
    width = int(store.read_query(*pairs[0], with_features=False).seg_embeddings.shape[1])
    for m in methods:
        config = getattr(getattr(m, "predictor", None), "config", None)
        want = getattr(getattr(config, "model", None), "query_dim", None)
        if want is not None and int(want) != width:
            raise BadInputError(
                f"checkpoint {getattr(m, 'checkpoint', m.name)} expects {want}-dim [SEG] embeddings, but store "
                f"{store.path} holds {width}-dim ones (query {pairs[0][0]}/{pairs[0][1]}): it was trained on another "
                "segmenter's store"
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
              help="Trained 3D network, NAME=PATH or PATH; PATH is a .ckpt or a run directory (its best "
                   "checkpoint). Repeatable: one row per checkpoint.")
@click.option("--split", type=click.Choice(["val", "all"]), default="val", show_default=True,
              help="val = the training DataModule's held-out scenes (from the checkpoint's config).")
@click.option("--scenes", default=None, help="Comma-separated scene ids to evaluate (overrides --split).")
@click.option("--config", type=click.Path(path_type=Path), default=None,
              help="Training config YAML whose data split defines --split val (default: the checkpoint's).")
@click.option("--no-baseline", is_flag=True, help="Leave out the 2D-projection baseline row.")
@click.option("--evidence-fusion", is_flag=True,
              help="Also score each checkpoint with test-time evidence fusion (docs/evidence_fusion.md).")
@click.option("--vote-threshold", type=float, default=FusionConfig.vote_threshold, show_default=True,
              help="Baseline: fused vote >= this -> target.")
@click.option("--device", default="cpu", show_default=True, help="Device of the 3D network (cpu, cuda, cuda:1).")
@click.option("--json", "json_path", type=click.Path(path_type=Path), default=None, help="Write results as JSON.")
@click.option("--csv", "csv_path", type=click.Path(path_type=Path), default=None, help="Write results as CSV.")
def eval_cmd(
    store_path: Path,
    checkpoints: tuple[str, ...],
    split: str,
    scenes: str | None,
    config: Path | None,
    no_baseline: bool,
    evidence_fusion: bool,
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
        for name, path in checkpoint_names(checkpoints, taken=tuple(m.name for m in methods)):
            methods.append(NetworkMethod.from_checkpoint(name, path, device=device))
        if evidence_fusion:
            from mllm3d.pipeline.evidence import EvidenceFusionMethod

            methods += [EvidenceFusionMethod(f"{m.name} + test-view evidence", m.predictor, checkpoint=m.checkpoint)
                        for m in methods if isinstance(m, NetworkMethod)]
        if not methods:
            raise BadInputError("nothing to evaluate: give --checkpoint or drop --no-baseline")
        pairs, split_desc = resolve_pairs(store, split, scenes, methods, config)
        fallback = split_desc.startswith(FALLBACK_PREFIX)
        if fallback:
            console.print(
                f"[yellow]note:[/yellow] {escape(split_desc.removeprefix(FALLBACK_PREFIX + ': '))} "
                "(trained with val_fraction 0, or too few scenes): evaluating all scenes instead; "
                "the network may have been trained on them"
            )
        check_embedding_widths(store, methods, pairs)
        for line in trained_on_scored(methods, pairs):
            console.print(f"[yellow]warning:[/yellow] {escape(line)}")
        result = run_eval(store, methods, pairs, split_desc, console)
    except Mllm3dError as exc:
        raise click.ClickException(str(exc)) from exc
    console.print(results_table(result, title=f"eval {store_path}"))
    kt = kind_table(result)
    if kt is not None:
        console.print(kt)
    for gt in group_tables(result):
        console.print(gt)
    if result.skipped:
        console.print(f"[yellow]skipped {len(result.skipped)} queries[/yellow] (e.g. {escape(str(result.skipped[0]))})")
    if json_path is not None:
        meta = {
            "store": str(store_path),
            "split_requested": "scenes" if scenes else split,
            "split_used": "scenes" if scenes else ("all" if fallback else split),
        }
        console.print(f"JSON: {write_json(result, json_path, meta)}")
    if csv_path is not None:
        console.print(f"CSV: {write_csv(result, csv_path)}")
