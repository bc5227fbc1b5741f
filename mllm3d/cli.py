"""The ``mllm3d`` command: a click group whose subcommands live in the module that does the work.

Subcommands are imported lazily, so ``mllm3d --help`` is fast and a stage's heavy imports
(torch, transformers, spconv) load only when that stage runs.
"""

from __future__ import annotations

import importlib

import click

# command name -> "module:attribute" of a click.Command
COMMANDS: dict[str, str] = {
    "synth": "mllm3d.shared.synthetic_cli:synth",
    "pseudolabel": "mllm3d.stage1_pseudolabel.cli:pseudolabel",
    "lisa": "mllm3d.stage1_pseudolabel.lisa_cli:lisa",
    "train": "mllm3d.stage2_train3d.cli:train",
    "eval": "mllm3d.pipeline.evaluate_cli:eval_cmd",
    "predict": "mllm3d.pipeline.predict:predict_cmd",
    "inspect": "mllm3d.pipeline.inspect_cli:inspect_cmd",
    "benchmark": "mllm3d.pipeline.benchmark:benchmark_cmd",
    "demo": "mllm3d.pipeline.demo:demo_cmd",
    "view": "mllm3d.pipeline.view:view_cmd",
}


# command name -> its one-line help, so that ``mllm3d --help`` lists the commands without importing them
# (tests/test_cli_help.py checks each line against the command's own docstring)
SHORT_HELP: dict[str, str] = {
    "synth": "Generate synthetic scenes (the default data of the demo and the tests) into the store.",
    "pseudolabel": "Stage 1: segment every (scene, query) with a 2D backend and fill the pseudo-label store.",
    "lisa": "Tools for LISA checkpoints (the Stage 1 model).",
    "train": "Train the 3D network on a pseudo-label store (Stage 2).",
    "eval": "Per-query point IoU -> Acc@0.25 / Acc@0.5 / mIoU for the baseline and each checkpoint.",
    "predict": "Segment a scene for a text query with a trained 3D network; write the mask as a coloured PLY.",
    "inspect": "Look inside a pseudo-label store without modifying it.",
    "benchmark": "Reproduce the directions of the paper's ablation table on seeded synthetic scenes.",
    "demo": "Synthetic scenes -> Stage 1 (stand-in backend) -> Stage 2 training -> evaluation, pictures and PLYs.",
    "view": "Write a Rerun recording of a query: points, layers, posed cameras with images and masks.",
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The command list from :data:`SHORT_HELP` (a command without an entry is imported for its help)."""
        rows = []
        for name in self.list_commands(ctx):
            text = SHORT_HELP.get(name)
            if text is None:
                cmd = self.get_command(ctx, name)
                text = "" if cmd is None else cmd.get_short_help_str(limit=formatter.width)
            rows.append((name, text))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module_name, attr = target.split(":")
        return getattr(importlib.import_module(module_name), attr)


def quiet_dependencies() -> None:
    """Silence dependency noise that says nothing about the user's run: spconv's torch.cuda.amp
    FutureWarnings at import, Lightning's pytree deprecation and torch.fx's tracing notice."""
    import logging
    import warnings

    warnings.filterwarnings("ignore", category=FutureWarning, module=r"spconv\..*")
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")
    warnings.filterwarnings("ignore", message=r".*`rope_scaling` is deprecated.*", category=FutureWarning)
    logging.getLogger("torch.fx._symbolic_trace").setLevel(logging.ERROR)


def setup_logging(verbosity: int) -> None:
    """The library logs through ``logging`` (loggers ``mllm3d.*``); the CLI shows the records on stderr:
    with rich on a terminal, as plain ``LEVEL message`` lines otherwise (cluster logs stay greppable).

    ``verbosity``: -1 (--quiet) warnings and errors only; 0 info; 1 (--verbose) debug, and the
    dependencies' own info lines (Lightning's device banner and tips), which are hidden otherwise."""
    import logging
    import sys

    if sys.stderr.isatty():
        from rich.console import Console
        from rich.logging import RichHandler

        def handler() -> logging.Handler:
            return RichHandler(console=Console(stderr=True), show_time=False, show_path=False, markup=False)
    else:
        def handler() -> logging.Handler:
            h = logging.StreamHandler(sys.stderr)
            h.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
            return h

    ours = logging.getLogger("mllm3d")
    ours.handlers[:] = [handler()]
    ours.setLevel({-1: logging.WARNING, 0: logging.INFO}.get(verbosity, logging.DEBUG))
    ours.propagate = False
    # a handler on the root logger before Lightning is imported: Lightning then adds none of its own and
    # its records reach this one, which shows them only with --verbose
    deps = handler()
    deps.setLevel(logging.INFO if verbosity > 0 else logging.WARNING)
    logging.getLogger().handlers[:] = [deps]


@click.group(cls=LazyGroup)
@click.version_option(package_name="mllm-for3d")
@click.option("-q", "--quiet", is_flag=True, help="Only warnings and errors (no progress notes).")
@click.option("-v", "--verbose", is_flag=True, help="Debug messages, and the dependencies' own info lines.")
def main(quiet: bool, verbose: bool) -> None:
    """Label-free 3D reasoning segmentation (MLLM-For3D): Stage 1 pseudo-labels, Stage 2 3D training."""
    if quiet and verbose:
        raise click.UsageError("--quiet and --verbose exclude each other")
    quiet_dependencies()
    setup_logging(-1 if quiet else (1 if verbose else 0))


if __name__ == "__main__":
    main()
