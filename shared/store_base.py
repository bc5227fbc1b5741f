"""Shared machinery of the store's scene and query groups: layout, atomic publish, listing, leftovers."""

from __future__ import annotations

import os
import shutil
import socket
import time
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mllm3d.shared.errors import StoreError
from mllm3d.shared.store_io import _fsync_tree, _read_json, group_is_complete
from mllm3d.shared.store_keys import TMP_PREFIX, TRASH_PREFIX, _group_dir, key_matches, safe_key


class StoreBase:
    """Paths, publishing and listing common to scene and query groups. Use :func:`open_store`."""

    def __init__(self, path: Path, root_attrs: dict[str, Any], writable: bool) -> None:
        self.path = path
        self.attrs = root_attrs
        self.writable = writable

    # ------------------------------------------------------------------ layout helpers
    @property
    def scenes_dir(self) -> Path:
        return self.path / "scenes"

    def scene_dir(self, scene_id: str) -> Path:
        return _group_dir(self.scenes_dir, scene_id)

    def query_dir(self, scene_id: str, query_id: str) -> Path:
        return _group_dir(self.scene_dir(scene_id) / "queries", query_id)

    def _tmp_dir(self, final: Path) -> Path:
        tag = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        return final.parent / f"{TMP_PREFIX}{final.name}.{tag}"

    def _require_writable(self) -> None:
        if not self.writable:
            raise StoreError(f"{self.path}: store opened read-only")

    def _trash_dir(self, final: Path) -> Path:
        return final.parent / f"{TRASH_PREFIX}{final.name}.{uuid.uuid4().hex[:8]}"

    def _set_aside_incomplete(self, final: Path) -> Path | None:
        """Move an incomplete group at ``final`` to a ``.trash-*`` name; returns where it went.

        Returns None when nothing incomplete was moved: the folder vanished, or a concurrent writer
        published a complete group between our look and the rename (it is then put back untouched;
        if yet another writer published meanwhile, that copy is kept and the moved one dropped).
        """
        trash = self._trash_dir(final)
        try:
            os.rename(final, trash)
        except FileNotFoundError:
            return None
        if group_is_complete(trash):
            try:
                os.rename(trash, final)
            except OSError:
                shutil.rmtree(trash, ignore_errors=True)
            return None
        return trash

    def _publish(self, tmp: Path, final: Path, overwrite: bool) -> bool:
        """Rename a finished temporary group into place. Returns False if another writer won.

        Without ``overwrite`` an existing complete group is never touched (our copy is discarded); an
        existing incomplete one is moved aside and replaced. With ``overwrite`` any group is replaced.
        """
        _fsync_tree(tmp)
        trash: Path | None = None
        if final.exists():
            if overwrite:
                trash = self._trash_dir(final)
                os.rename(final, trash)
            elif group_is_complete(final):
                shutil.rmtree(tmp, ignore_errors=True)
                return False
            else:
                trash = self._set_aside_incomplete(final)
        try:
            os.rename(tmp, final)
        except OSError:  # a concurrent writer published first (ENOTEMPTY/EEXIST)
            shutil.rmtree(tmp, ignore_errors=True)
            if trash is not None:
                # the group we moved aside goes back unless the other writer's copy now stands there
                try:
                    os.rename(trash, final)
                except OSError:
                    shutil.rmtree(trash, ignore_errors=True)
            return False
        if trash is not None:
            shutil.rmtree(trash, ignore_errors=True)
        return True


    # ------------------------------------------------------------------ scenes
    def has_scene(self, scene_id: str) -> bool:
        """True when the scene group is complete (a folder without ``complete: true`` does not count)."""
        return group_is_complete(self.scene_dir(scene_id))

    def _complete_children(self, parent: Path, id_attr: str) -> Iterator[tuple[str, dict[str, Any]]]:
        """(folder name, attrs) of the complete groups under ``parent``. A group whose stored id
        (``id_attr``) does not belong to its folder name (a hand copy such as ``X.bak``) is skipped with a
        warning: it would list the id twice, and reading that id opens the other folder."""
        if not parent.is_dir():
            return
        for entry in sorted(os.scandir(parent), key=lambda e: e.name):
            if entry.name.startswith(".") or not entry.is_dir():
                continue
            meta = Path(entry.path) / "zarr.json"
            try:
                attrs = _read_json(meta).get("attributes", {})
            except (OSError, ValueError):
                continue
            if attrs.get("complete") is True:
                stored = attrs.get(id_attr)
                if stored is not None and not key_matches(entry.name, str(stored)):
                    warnings.warn(
                        f"{entry.path}: skipped, its {id_attr} {str(stored)[:80]!r} does not match the folder name "
                        f"(a copied or renamed group; expected folder {safe_key(str(stored))!r}); move it out of the store",
                        stacklevel=3,
                    )
                    continue
                yield entry.name, attrs

    # ------------------------------------------------------------------ maintenance
    def temporary_groups(self) -> list[Path]:
        """Leftover temporary groups of interrupted writes (never visible as complete)."""
        found: list[Path] = []
        if not self.scenes_dir.is_dir():
            return found
        for entry in os.scandir(self.scenes_dir):
            if entry.name.startswith((TMP_PREFIX, TRASH_PREFIX)):
                found.append(Path(entry.path))
            elif entry.is_dir():
                qdir = Path(entry.path) / "queries"
                if qdir.is_dir():
                    found.extend(
                        Path(e.path) for e in os.scandir(qdir) if e.name.startswith((TMP_PREFIX, TRASH_PREFIX))
                    )
        return sorted(found)

    def remove_temporary_groups(self, older_than_s: float = 0.0) -> list[Path]:
        """Delete leftover temporary groups older than ``older_than_s`` seconds; returns what was removed."""
        self._require_writable()
        now = time.time()
        removed = []
        for p in self.temporary_groups():
            try:
                if now - p.stat().st_mtime >= older_than_s:
                    shutil.rmtree(p, ignore_errors=True)
                    removed.append(p)
            except FileNotFoundError:
                continue
        return removed

