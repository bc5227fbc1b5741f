"""Replacing a file atomically: readers see the old file or the new one, never a part-written one."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


def atomic_write(path: Path, write: Callable[[BinaryIO], object], tmp_prefix: str = ".") -> None:
    """Call ``write`` on a new temporary sibling of ``path`` (named ``<tmp_prefix><name>.<pid>.<hex>.tmp``),
    fsync it, rename it onto ``path``, then fsync the folder so the rename itself is durable. On any error
    (or interrupt) the temporary is removed and ``path`` is left as it was."""
    tmp = path.with_name(f"{tmp_prefix}{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # mode as open() would give
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    try:  # best effort: not every platform can open a directory
        dfd = os.open(path.parent, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dfd)
    except OSError:
        pass
    finally:
        os.close(dfd)
