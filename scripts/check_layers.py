"""Check the import layers of the installed package (the contract in pyproject's ``[tool.importlinter]``).

import-linter (grimp) finds a package's modules by walking its directory, but in this repository the
``mllm3d`` import spans several top-level folders (``[tool.setuptools.package-dir]``). So this script
lays the modules out as the wheel will (``mllm3d/shared/...``, hard links, or copies across devices) in a
temporary directory and lints that tree. Exit status: import-linter's (0 = every contract kept).

    python scripts/check_layers.py
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

import tomllib

REPO = Path(__file__).resolve().parents[1]


def package_dirs(pyproject: Path) -> dict[str, Path]:
    """``{"mllm3d.shared": REPO/"shared", ...}`` from pyproject's setuptools package-dir table."""
    table = tomllib.loads(pyproject.read_text())["tool"]["setuptools"]["package-dir"]
    return {name: (pyproject.parent / folder).resolve() for name, folder in table.items()}


def lay_out(mapping: dict[str, Path], root: Path) -> None:
    """Link every ``.py`` file of each mapped folder to its place in the installed layout under ``root``."""
    for name, folder in sorted(mapping.items()):
        target = root.joinpath(*name.split("."))
        for src in folder.rglob("*.py"):
            rel = src.relative_to(folder)
            if any(part == "__pycache__" for part in rel.parts) or _mapped_elsewhere(folder / rel, mapping, folder):
                continue
            dst = target / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(src, dst)
            except OSError:
                shutil.copy2(src, dst)


def _mapped_elsewhere(path: Path, mapping: dict[str, Path], own: Path) -> bool:
    """True when ``path`` lies in a folder mapped to another package below ``own`` (it is laid out there)."""
    return any(f != own and f.is_relative_to(own) and path.is_relative_to(f) for f in mapping.values())


def main() -> int:
    from importlinter.cli import lint_imports

    pyproject = REPO / "pyproject.toml"
    with tempfile.TemporaryDirectory(prefix="mllm3d-layers-") as tmp:
        lay_out(package_dirs(pyproject), Path(tmp))
        sys.path.insert(0, tmp)
        for mod in [m for m in sys.modules if m == "mllm3d" or m.startswith("mllm3d.")]:
            del sys.modules[mod]  # the editable install's finder must not answer for the laid-out tree
        os.chdir(tmp)  # the repository's own mllm3d/ folder must not shadow the laid-out one
        return lint_imports(config_filename=str(pyproject), no_cache=True)


if __name__ == "__main__":
    sys.exit(main())
