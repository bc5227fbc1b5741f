"""Library messages go through ``logging``: the CLI shows them, ``--quiet`` hides them, ``--verbose``
adds the dependencies' info lines (Lightning's device banner)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.stage2_toy import build_toy_store

TINY = ["model.stem=4", "model.down=[4,8]", "model.up=[8,4]", "model.feature_dim=8", "optim.epochs=1",
        "data.num_workers=0", "trainer.check_val_every_n_epoch=1", "trainer.cpu_threads=1"]


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_toy_store(tmp_path_factory.mktemp("log") / "store.zarr", n_scenes=3)


def _train(store: Path, out: Path, *flags: str) -> subprocess.CompletedProcess:
    args = [sys.executable, "-m", "mllm3d.cli", *flags, "train", "--store", str(store), "--out", str(out),
            "--no-progress", *[a for s in TINY for a in ("--set", s)]]
    return subprocess.run(args, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize(
    ("flags", "notes", "banner"), [((), True, False), (("--quiet",), False, False), (("-v",), True, True)],
    ids=["default", "quiet", "verbose"],
)
def test_verbosity_flags(store: Path, tmp_path: Path, flags: tuple[str, ...], notes: bool, banner: bool) -> None:
    r = _train(store, tmp_path / "run", *flags)
    assert r.returncode == 0, r.stderr[-3000:]
    assert ("INFO store " in r.stderr and "queries (2 / 1 scenes)" in r.stderr) is notes, r.stderr[-2000:]
    assert ("GPU available" in r.stderr) is banner, r.stderr[-2000:]
    assert "mIoU" in r.stdout  # the result table is output, not a log message: always printed


def test_quiet_and_verbose_exclude_each_other() -> None:
    r = subprocess.run([sys.executable, "-m", "mllm3d.cli", "-q", "-v", "train", "--help"], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 2 and "--quiet and --verbose exclude each other" in r.stderr
