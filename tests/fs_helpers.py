"""A digest of a file tree, to assert that an operation changed nothing on disk."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


def tree_digest(path: Path, with_mtimes: bool = False) -> str:
    """sha256 over every file's relative path and bytes under ``path`` (or of the file itself);
    ``with_mtimes`` also hashes modification times (so a rewrite with identical bytes shows too)."""
    h = hashlib.sha256()
    if path.is_file():
        h.update(path.read_bytes())
        return h.hexdigest()
    for dirpath, dirs, files in sorted(os.walk(path)):
        dirs.sort()
        for name in sorted(files):
            p = Path(dirpath) / name
            h.update(p.relative_to(path).as_posix().encode() + b"\0")
            h.update(p.read_bytes())
            if with_mtimes:
                h.update(str(p.stat().st_mtime_ns).encode())
    return h.hexdigest()
