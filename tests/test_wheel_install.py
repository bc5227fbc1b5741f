"""The built wheel, installed outside the repository, runs from an empty directory.

The wheel is built from this checkout and installed (``--no-deps``) into a fresh virtual environment.
Its dependencies (torch, spconv, zarr, ...) are borrowed from the environment running the tests through a
``.pth`` line, which adds that site-packages folder to ``sys.path`` without processing its ``.pth`` files,
so the editable install of the checkout stays invisible: every ``mllm3d`` module comes from the wheel.
"""

from __future__ import annotations

import os
import site
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def _run(args: list[str], cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("wheel")
    build = _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                  str(root / "dist"), str(REPO)], cwd=root)
    assert build.returncode == 0, build.stderr[-3000:]
    (wheel,) = (root / "dist").glob("mllm_for3d-*.whl")
    venv = root / "venv"
    made = _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=root)
    assert made.returncode == 0, made.stderr
    py = venv / "bin" / "python"
    new_site = Path(_run([str(py), "-c", "import site; print(site.getsitepackages()[0])"], cwd=root).stdout.strip())
    (new_site / "borrowed_deps.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    inst = _run([sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps", "-q", str(wheel)], cwd=root)
    assert inst.returncode == 0, inst.stderr[-3000:]
    return venv


def test_wheel_holds_the_layers_and_the_packaged_recipes(installed: Path) -> None:
    (wheel,) = installed.parent.glob("dist/mllm_for3d-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for must in ("mllm3d/__init__.py", "mllm3d/cli.py", "mllm3d/pipeline/demo.py", "mllm3d/shared/store.py",
                 "mllm3d/stage1_pseudolabel/lisa/engine.py", "mllm3d/stage2_train3d/train.py",
                 "mllm3d/configs/train/default.yaml", "mllm3d/configs/train/paper.yaml",
                 "mllm3d/configs/stage1/synthetic.yaml"):
        assert must in names, must
    assert not any(n.startswith(("shared/", "stage1_pseudolabel/", "stage2_train3d/", "tests/")) for n in names)


def test_installed_cli_runs_from_an_empty_directory(installed: Path, tmp_path: Path) -> None:
    mllm3d = str(installed / "bin" / "mllm3d")
    where = _run([str(installed / "bin" / "python"), "-c", "import mllm3d.shared.store as s; print(s.__file__)"],
                 cwd=tmp_path)
    assert where.returncode == 0 and where.stdout.startswith(str(installed)), where.stdout + where.stderr
    helped = _run([mllm3d, "--help"], cwd=tmp_path)
    assert helped.returncode == 0 and "pseudolabel" in helped.stdout, helped.stderr
    demo = _run([mllm3d, "demo", "--quick", "--out", "demo"], cwd=tmp_path)
    assert demo.returncode == 0, demo.stdout[-2000:] + demo.stderr[-3000:]
    store = tmp_path / "demo" / "store.zarr"
    assert store.is_dir() and (tmp_path / "demo" / "metrics.json").is_file()
    train = _run([mllm3d, "train", "--config", "tiny", "--store", "demo/store.zarr", "--out", "run", "--no-progress",
                  "--set", "optim.epochs=1", "--set", "data.num_workers=0"], cwd=tmp_path)
    assert train.returncode == 0, train.stdout[-2000:] + train.stderr[-3000:]
    assert (tmp_path / "run" / "checkpoints" / "last.ckpt").is_file()
    saved = (tmp_path / "run" / "config.yaml").read_text()
    assert "name: tiny" in saved and "stem: 8" in saved  # the packaged tiny recipe, found by name
