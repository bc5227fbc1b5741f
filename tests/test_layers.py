"""The import layers (pyproject's [tool.importlinter]) hold, and a wrong import would break them."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "check_layers.py"


def _script():
    spec = importlib.util.spec_from_file_location("check_layers", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _lint(tree: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    code = "import sys; from importlinter.cli import lint_imports; sys.exit(lint_imports(config_filename=sys.argv[1], no_cache=True))"
    return subprocess.run([sys.executable, "-c", code, str(REPO / "pyproject.toml")], cwd=tree, env=env,
                          capture_output=True, text=True, timeout=120)


def test_the_package_keeps_its_layers() -> None:
    r = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "1 kept, 0 broken" in r.stdout


def test_layout_holds_every_module_where_the_wheel_puts_it(tmp_path: Path) -> None:
    mod = _script()
    mod.lay_out(mod.package_dirs(REPO / "pyproject.toml"), tmp_path)
    laid = {p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.py")}
    assert "mllm3d/shared/store.py" in laid and "mllm3d/stage1_pseudolabel/lisa/engine.py" in laid
    assert "mllm3d/stage2_train3d/train.py" in laid and "mllm3d/pipeline/demo.py" in laid
    want = sum(1 for f in ("shared", "stage1_pseudolabel", "stage2_train3d", "mllm3d", "configs")
               for p in (REPO / f).rglob("*.py") if "__pycache__" not in p.parts)
    assert len(laid) == want


def test_stage2_importing_stage1_breaks_the_contract(tmp_path: Path) -> None:
    mod = _script()
    mod.lay_out(mod.package_dirs(REPO / "pyproject.toml"), tmp_path)
    (tmp_path / "mllm3d" / "stage2_train3d" / "sneaky.py").write_text(
        "from mllm3d.stage1_pseudolabel.runner import run_pseudolabels\n")
    (tmp_path / "mllm3d" / "shared" / "upward.py").write_text("import mllm3d.pipeline.demo\n")
    r = _lint(tmp_path)
    assert r.returncode != 0
    assert "BROKEN" in r.stdout
    assert "mllm3d.stage2_train3d.sneaky -> mllm3d.stage1_pseudolabel.runner" in r.stdout
    assert "mllm3d.shared.upward -> mllm3d.pipeline.demo" in r.stdout
