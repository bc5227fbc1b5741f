"""``mllm3d --help`` lists every command without importing it (fast, no torch), and its lines are true."""

from __future__ import annotations

import importlib
import subprocess
import sys

from mllm3d.cli import COMMANDS, SHORT_HELP


def test_short_help_table_matches_each_commands_docstring() -> None:
    assert set(SHORT_HELP) <= set(COMMANDS)
    for name, text in SHORT_HELP.items():
        module, attr = COMMANDS[name].split(":")
        cmd = getattr(importlib.import_module(module), attr)
        assert cmd.name == name
        assert cmd.get_short_help_str(limit=200) == text, name


def test_top_level_help_imports_no_command_module_and_no_torch() -> None:
    code = (
        "import sys\n"
        "from mllm3d.cli import main\n"
        "sys.argv = ['mllm3d', '--help']\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "heavy = sorted(m for m in ('torch', 'pytorch_lightning', 'transformers', 'spconv', 'zarr') if m in sys.modules)\n"
        "print('HEAVY', heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "HEAVY []" in out
    for name in COMMANDS:
        assert f"  {name} " in out


def _commands():
    import click

    from mllm3d.cli import main

    ctx = click.Context(main)

    def walk(cmd, name):
        if isinstance(cmd, click.Group):
            for sub in cmd.list_commands(ctx):
                yield from walk(cmd.get_command(ctx, sub), f"{name} {sub}")
        else:
            yield name, cmd

    return list(walk(main, "mllm3d"))


def test_every_option_has_help_and_consistent_types() -> None:
    import click

    problems = []
    for name, cmd in _commands():
        for p in cmd.params:
            if not isinstance(p, click.Option):
                continue
            where = f"{name} {'/'.join(p.opts)}"
            if not p.help:
                problems.append(f"{where}: no help text")
            elif "[default" in p.help:
                problems.append(f"{where}: a hand-written [default: ...] (use click's show_default)")
            if p.name in ("store", "store_path") and not isinstance(p.type, click.Path):
                problems.append(f"{where}: --store is not a click.Path")
            if p.name == "backend" and not isinstance(p.type, click.Choice):
                problems.append(f"{where}: --backend is not a click.Choice")
    assert not problems, "\n".join(problems)


def test_each_command_help_imports_no_heavy_module() -> None:
    """``mllm3d CMD --help`` must stay fast: no torch / Lightning / transformers / spconv at import."""
    slow = []
    for name in COMMANDS:
        code = (
            "import sys\nfrom mllm3d.cli import main\n"
            f"sys.argv = ['mllm3d', {name!r}, '--help']\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            "print('HEAVY', sorted(m for m in ('torch', 'pytorch_lightning', 'transformers', 'spconv') if m in sys.modules))\n"
        )
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
        if "HEAVY []" not in out:
            slow.append(f"{name}: {out.splitlines()[-1]}")
    assert not slow, slow
