"""Filesystem failures outside the query-group writes (issue 13): the store's creation, the scene lease,
and a store that cannot be written. Each case runs ``mllm3d pseudolabel`` in-process with the failing
system call patched in (no root or real full disk needed) and asserts one ``Error:`` line naming the file,
no traceback, and nothing already written changed.
"""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from mllm3d.cli import main as mllm3d
from mllm3d.shared.store import open_store, safe_key
from tests.fs_helpers import tree_digest

ENOSPC = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
EROFS = OSError(errno.EROFS, os.strerror(errno.EROFS))


def _pseudolabel(store: Path, *extra: str) -> list[str]:
    return ["pseudolabel", "--no-progress", "--source", "synthetic:2", "--store", str(store), *extra]


def _one_error_line(res) -> str:
    assert res.exit_code not in (0, None), res.output
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
    assert "Traceback" not in res.output, res.output
    lines = [line for line in res.output.splitlines() if line.startswith("Error:")]
    assert len(lines) == 1, res.output
    return lines[0]


@pytest.fixture(scope="module")
def one_scene_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store holding the first of the two synthetic scenes (the second is still to do)."""
    store = tmp_path_factory.mktemp("fs") / "store.zarr"
    res = CliRunner().invoke(mllm3d, _pseudolabel(store, "--max-scenes", "1"))
    assert res.exit_code == 0, res.output
    return store


def _copy(store: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(store, tmp_path / "store.zarr"))


@pytest.mark.parametrize("at", ["scenes/zarr.json", "zarr.json"])
def test_disk_full_while_creating_the_store_is_one_line_and_leaves_nothing(tmp_path: Path, monkeypatch,
                                                                           at: str) -> None:
    """The disk fills at the store's first write (the scenes group), or at its last (the root group)."""
    import builtins

    real_open = builtins.open

    def full(file, mode="r", *args, **kwargs):
        if isinstance(file, (str, os.PathLike)) and ("w" in mode or "x" in mode):
            parts = Path(file).parts
            inside = [i for i, part in enumerate(parts) if part.startswith(".tmp-new.zarr.")]
            if inside and "/".join(parts[inside[0] + 1:]) == at:  # a file of the store being created
                raise ENOSPC
        return real_open(file, mode, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", full)
    store = tmp_path / "new.zarr"
    line = _one_error_line(CliRunner().invoke(mllm3d, _pseudolabel(store)))
    assert str(store) in line and "cannot create the store" in line and "No space left" in line, line
    assert list(tmp_path.iterdir()) == []  # no store and no temporary left beside it


def test_disk_full_at_the_scene_lease_is_one_line_naming_it(one_scene_store: Path, tmp_path: Path,
                                                              monkeypatch) -> None:
    store = _copy(one_scene_store, tmp_path)
    before = tree_digest(store)
    import mllm3d.stage1_pseudolabel.leases as leases

    def full(*_a, **_k):
        raise ENOSPC

    monkeypatch.setattr(leases.os, "pwrite", full)
    line = _one_error_line(CliRunner().invoke(mllm3d, _pseudolabel(store)))
    assert ".lease-" in line and "scene lease" in line and "No space left" in line, line
    monkeypatch.undo()
    leftovers = [p.name for p in (store / "scenes").iterdir() if p.name.startswith(".lease-")]
    for name in leftovers:  # an unlocked lease file is harmless (the next run takes it); nothing else changed
        (store / "scenes" / name).unlink()
    assert tree_digest(store) == before
    res = CliRunner().invoke(mllm3d, _pseudolabel(store))  # and the next run completes the store
    assert res.exit_code == 0, res.output
    assert len({s for s, _ in open_store(store).complete_pairs()}) == 2


def test_a_folder_where_the_scene_lease_goes_is_one_line_naming_it(one_scene_store: Path, tmp_path: Path) -> None:
    store = _copy(one_scene_store, tmp_path)
    assert [s for s, _ in open_store(store).complete_pairs()][:1] == ["synth_0000"]  # synth_0001 is still to do
    lease = store / "scenes" / f".lease-{safe_key('synth_0001')}"
    lease.mkdir()
    before = tree_digest(store)
    line = _one_error_line(CliRunner().invoke(mllm3d, _pseudolabel(store)))
    assert str(lease) in line and "scene lease" in line, line
    assert tree_digest(store) == before and lease.is_dir()


def test_a_store_on_a_read_only_filesystem_is_one_line_and_unchanged(one_scene_store: Path, tmp_path: Path,
                                                                      monkeypatch) -> None:
    """Every write into the store fails with EROFS (a read-only mount); reading still works."""
    store = _copy(one_scene_store, tmp_path)
    before = tree_digest(store)
    real_open = os.open
    inside = str(store.resolve())

    def read_only(path, flags, *args, **kwargs):
        if str(Path(os.fsdecode(path)).resolve()).startswith(inside) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            raise EROFS
        return real_open(path, flags, *args, **kwargs)

    real_mkdir = os.mkdir

    def no_mkdir(path, *args, **kwargs):
        if str(Path(os.fsdecode(path)).resolve()).startswith(inside):
            raise EROFS
        return real_mkdir(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", read_only)
    monkeypatch.setattr(os, "mkdir", no_mkdir)
    line = _one_error_line(CliRunner().invoke(mllm3d, _pseudolabel(store)))
    assert "Read-only file system" in line and str(store) in line, line
    monkeypatch.undo()
    assert tree_digest(store) == before
    res = CliRunner().invoke(mllm3d, ["inspect", "--store", str(store)])
    assert res.exit_code == 0, res.output
