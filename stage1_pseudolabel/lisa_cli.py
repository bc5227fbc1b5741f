"""``mllm3d lisa check``: a thin click layer over :func:`mllm3d.stage1_pseudolabel.lisa.check.check_checkpoint`."""

from __future__ import annotations

import sys
from pathlib import Path

import click


@click.group("lisa")
def lisa() -> None:
    """Tools for LISA checkpoints (the Stage 1 model)."""


@lisa.command("check")
@click.option("--checkpoint", required=True, type=click.Path(path_type=Path),
              help="Released LISA checkpoint folder (config.json, tokenizer, weight shards).")
@click.option("--clip", type=click.Path(path_type=Path), default=None,
              help="CLIP vision tower folder", show_default="the checkpoint config's vision tower, else a clip/ sibling")
@click.option("--sam-decoder-heads", type=click.IntRange(min=1), default=None,
              help="SAM mask-decoder head count (not visible in tensor shapes)", show_default="config, else 8")
def check(checkpoint: Path, clip: Path | None, sam_decoder_heads: int | None) -> None:
    """Dry run: would this checkpoint load? Reads configs, tokenizer and tensor shapes only (no GPU, no weights)."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from mllm3d.stage1_pseudolabel.lisa.check import check_checkpoint

    console = Console()
    rep = check_checkpoint(checkpoint, clip, sam_decoder_heads=sam_decoder_heads)
    table = Table(title=f"LISA checkpoint {escape(str(checkpoint))}", show_lines=False)
    table.add_column("section")
    table.add_column("item")
    table.add_column("value", overflow="fold")
    for section, rows in rep.sections.items():
        for name, value in rows:
            table.add_row(section, escape(name), escape(value))
    console.print(table)
    if rep.ok:
        console.print("[green]OK[/green]: this checkpoint would load.")
        return
    for p in rep.problems:  # plain lines, never wrapped: key names stay greppable
        click.echo(f"error: {p}", err=True)
    click.echo(f"{len(rep.problems)} problem(s): this checkpoint would not load.", err=True)
    sys.exit(1)
