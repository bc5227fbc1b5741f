"""Per-scene leases, so workers sharing a store do not do the same scene twice.

A worker that starts a scene takes an OS file lock (``filelock.FileLock``: ``flock(2)`` on Linux) on
``<store>/scenes/.lease-<scene_key>`` without waiting, and writes who it is into the file (JSON: host,
pid, token, start time) for messages. Another worker that cannot take the lock skips the scene. The
kernel drops the lock when its holder exits for any reason (kill -9 included), so a lease never
outlives its worker; a reused pid, clock skew or a missed heartbeat play no part. The lease file is
unlinked (while still locked) when the scene is done; a file a killed worker left behind is not
locked and is simply taken.

Leases only avoid double work. Correctness never depends on them: every group is published by an
atomic rename of a complete temporary directory, and the first rename wins (shared/store.py). On NFS
the lock is an NFS lock (NLM for v3, in-protocol for v4; Linux maps flock to them since 2.6.12): held
across hosts while the holder runs, freed by the server when a client's NFSv4 lease expires (~90 s)
after a crash. With ``-o nolock`` (v3) locks are local to each client, so two hosts can take the same
scene; the worst case is then one of two identical results discarded. See docs/stage1.md.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock, Timeout

from mllm3d.shared.errors import StoreError
from mllm3d.shared.store import TMP_PREFIX, TRASH_PREFIX, PseudoLabelStore, safe_key

LEASE_PREFIX = ".lease-"
_TMP_OWNER = re.compile(r"-(?P<pid>\d+)-(?P<rand>[0-9a-f]{8})$")
# a contender that opened the file just before its holder unlinked it retries on the new file
_ACQUIRE_TIMEOUT_S = 0.2


def pid_alive(pid: int) -> bool:
    """Whether a process with this id exists on this host."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass(frozen=True)
class LeaseInfo:
    """Who holds (or held) a lease: written into the lease file for messages, never trusted for locking."""

    host: str
    pid: int
    token: str
    started: float

    @classmethod
    def mine(cls) -> LeaseInfo:
        return cls(socket.gethostname(), os.getpid(), uuid.uuid4().hex, time.time())

    def to_json(self) -> str:
        return json.dumps({"host": self.host, "pid": self.pid, "token": self.token, "started": self.started})

    def describe(self) -> str:
        return f"pid {self.pid} on {self.host}"


def lease_path(store: PseudoLabelStore, scene_id: str) -> Path:
    return store.scenes_dir / f"{LEASE_PREFIX}{safe_key(scene_id)}"


def read_lease(path: Path) -> LeaseInfo | None:
    """The owner written in a lease file, or None if it does not exist or is unreadable."""
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
        return LeaseInfo(str(d["host"]), int(d["pid"]), str(d["token"]), float(d["started"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


class SceneLease:
    """A lease on one scene; use :meth:`try_acquire`, then :meth:`release` (or ``with``)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.info = LeaseInfo.mine()
        self.held = False
        self.took_over: str | None = None  # whose left-behind lease file was taken, when there was one
        self.holder: LeaseInfo | None = None  # who holds it, after a failed try_acquire (if it says)
        self._previous: LeaseInfo | None = None
        self._inode: tuple[int, int] | None = None  # (st_dev, st_ino) of the file we lock
        self._lock = FileLock(self.path, timeout=_ACQUIRE_TIMEOUT_S, poll_interval=0.02, is_singleton=False,
                              thread_local=False, on_acquired=self._write_info)

    def _write_info(self, fd: int) -> None:
        """Runs under the lock: remember a dead owner's record, then write ours."""
        self._previous = None
        try:
            old = os.pread(fd, 4096, 0)
            d = json.loads(old.decode("utf-8")) if old else None
            if d:
                self._previous = LeaseInfo(str(d["host"]), int(d["pid"]), str(d["token"]), float(d["started"]))
        except (OSError, ValueError, KeyError, TypeError):
            self._previous = None
        data = self.info.to_json().encode("utf-8")
        os.ftruncate(fd, 0)
        os.pwrite(fd, data, 0)
        os.fsync(fd)
        st = os.fstat(fd)
        self._inode = (st.st_dev, st.st_ino)

    def try_acquire(self) -> bool:
        """Take the lease unless a running worker holds it (no waiting)."""
        try:
            self._lock.acquire()
        except Timeout:
            self.holder = read_lease(self.path)
            return False
        except OSError as exc:  # no flock on this filesystem, read-only store, a folder at the path, ...
            raise StoreError(f"{self.path}: cannot take the scene lease (an OS file lock): {exc}") from exc
        self.held = True
        if self._previous is not None:
            self.took_over = f"lease file left by {self._previous.describe()}, which holds no lock on it"
        return True

    @property
    def lost(self) -> bool:
        """Whether the lease file we lock is no longer the one at our path (deleted or replaced by hand)."""
        if not self.held:
            return False
        try:
            st = os.stat(self.path)
        except OSError:
            return True
        return (st.st_dev, st.st_ino) != self._inode

    def release(self) -> None:
        """Remove the lease file (while still locking it) and drop the lock."""
        if not self.held:
            return
        try:
            if not self.lost:
                os.remove(self.path)
        except FileNotFoundError:
            pass
        finally:
            self._lock.release(force=True)
            self.held = False

    def __enter__(self) -> SceneLease:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def active_leases(store: PseudoLabelStore) -> list[Path]:
    """Lease files present in the store (held, or left by a killed worker)."""
    if not store.scenes_dir.is_dir():
        return []
    return sorted(p for p in store.scenes_dir.iterdir() if p.name.startswith(LEASE_PREFIX))


def temporary_owner(path: Path) -> tuple[str, int] | None:
    """(host suffix check string, pid) encoded in a ``.tmp-<key>.<host>-<pid>-<rand>`` name."""
    m = _TMP_OWNER.search(path.name)
    if m is None:
        return None
    head = path.name[: m.start()]
    return head, int(m.group("pid"))


def remove_dead_temporaries(
    store: PseudoLabelStore, timeout_s: float, now: float | None = None
) -> list[Path]:
    """Delete leftover temporary groups of killed writers.

    A ``.tmp-*`` group is removed when its writer was a process on this host that no longer
    exists (exact), or when it is older than ``timeout_s`` (writers on other hosts);
    ``.trash-*`` groups only by age. Groups of live local writers are left alone.
    """
    now = time.time() if now is None else now
    host = socket.gethostname()
    removed: list[Path] = []
    for p in store.temporary_groups():
        try:
            age = now - p.stat().st_mtime
        except FileNotFoundError:
            continue
        dead = False
        if p.name.startswith(TMP_PREFIX):
            owner = temporary_owner(p)
            if owner is not None and owner[0].endswith(f".{host}") and owner[1] != os.getpid():
                dead = not pid_alive(owner[1])
        elif not p.name.startswith(TRASH_PREFIX):
            continue
        if dead or age > timeout_s:
            shutil.rmtree(p, ignore_errors=True)
            removed.append(p)
    return removed
