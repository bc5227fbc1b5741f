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
