"""The runner's notes go through ``logging`` (logger ``mllm3d.stage1_pseudolabel.runner``), never print."""

from __future__ import annotations

import logging
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from mllm3d.shared.scene import Query
from mllm3d.shared.store import open_store
from mllm3d.stage1_pseudolabel.leases import lease_path
from mllm3d.stage1_pseudolabel.runner import run_pseudolabels
from tests.shared.test_scannet import fake_scene
from tests.stage1_helpers import REPO, held_lease, run_config, tiny_source

LOGGER = "mllm3d.stage1_pseudolabel.runner"


@pytest.fixture
def records() -> Iterator[list[logging.LogRecord]]:
    """Records of the runner's logger, whatever the CLI set up before (it stops propagation)."""
    got: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            got.append(record)

    logger = logging.getLogger(LOGGER)
    h, old = Keep(level=logging.DEBUG), logger.level
    logger.addHandler(h)
    logger.setLevel(logging.DEBUG)
    try:
        yield got
    finally:
        logger.removeHandler(h)
        logger.setLevel(old)


def test_leased_and_failed_scenes_are_logged_not_printed(tmp_path: Path, records, capsys) -> None:
    source = tiny_source(2)
    path = tmp_path / "s.zarr"
    run_pseudolabels(run_config(path, max_scenes=1), source=source)
    with held_lease(lease_path(open_store(path), "synth_0001")):
        s = run_pseudolabels(run_config(path, progress=True), source=source)
    assert s.scenes_leased == ["synth_0001"]
    leased = [r for r in records if "leased by a running worker" in r.getMessage()]
    assert len(leased) == 1 and leased[0].levelno == logging.WARNING
    assert "synth_0001" in leased[0].getMessage() and "pid " in leased[0].getMessage()
    # a failing scene (the synthetic backend on a ScanNet scene): one ERROR record naming it
    d = fake_scene(tmp_path / "scans", name="scene0001_00", frames=(0, 10))
    s = run_pseudolabels(run_config(tmp_path / "f.zarr", source=f"scannet:{d}", views="all"),
                         queries=[Query("scene0001_00", "q0", "the wall", target_ids=[1])])
    failed = [r for r in records if r.levelno == logging.ERROR]
    assert not s.ok and len(failed) == 1 and "scene scene0001_00 failed" in failed[0].getMessage()
    assert "leased" not in capsys.readouterr().out  # nothing on stdout


def test_cli_shows_the_runner_log_as_plain_lines_and_quiet_keeps_warnings(tmp_path: Path) -> None:
    d = fake_scene(tmp_path / "scans", name="scene0001_00", frames=(0, 10))
    q = tmp_path / "q.json"
    q.write_text('[{"scene_id": "scene0001_00", "query_id": "q0", "text": "the wall", "target_ids": [1]}]')
    for flags in ((), ("--quiet",)):
        r = subprocess.run(
            [sys.executable, "-m", "mllm3d.cli", *flags, "pseudolabel", "--no-progress", "--source",
             f"scannet:{d}", "--queries", str(q), "--store", str(tmp_path / f"s{len(flags)}.zarr"), "--views", "all"],
            cwd=REPO, capture_output=True, text=True, timeout=120)
        assert r.returncode == 1, r.stderr[-2000:]
        assert "ERROR scene scene0001_00 failed: BadInputError" in r.stderr, r.stderr[-2000:]
        assert "Traceback" not in r.stderr


def test_python_warnings_of_a_cli_run_become_one_log_line(records) -> None:
    from mllm3d.stage1_pseudolabel.cli import _log_warning

    _log_warning(UserWarning("scene s: all 2 masks are empty"), UserWarning, "runner.py", 1)
    _log_warning(RuntimeWarning("overflow"), RuntimeWarning, "x.py", 2)
    assert [(r.levelno, r.getMessage()) for r in records] == [
        (logging.WARNING, "scene s: all 2 masks are empty"), (logging.WARNING, "RuntimeWarning: overflow")]
