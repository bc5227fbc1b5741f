"""Per-scene lease files, so workers sharing a store do not do the same scene twice.

A worker that starts a scene creates ``<store>/scenes/.lease-<scene_key>`` (JSON: host, pid,
token, start time) with ``O_CREAT | O_EXCL`` and refreshes its mtime (the heartbeat) from a
background thread while it works. Another worker skips a scene whose lease is held by a live
owner; it takes the lease over (atomic ``os.replace`` of a new lease file, then a read-back of
the token) when the owner is a dead process on the same host, or when the heartbeat is older
than ``timeout_s`` (owner on another host, or hung).

Leases only avoid double work. Correctness never depends on them: every group is published by
an atomic rename of a complete temporary directory, and the first rename wins (shared/store.py).
On NFS (before v3 / some clients) ``O_EXCL`` creation and the read-back are racy, and clock skew
between hosts shifts staleness; the worst case is two workers computing the same scene, with
one of the two identical results discarded. See docs/reliability.md.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from mllm3d.shared.store import TMP_PREFIX, TRASH_PREFIX, PseudoLabelStore, safe_key

LEASE_PREFIX = ".lease-"
_TMP_OWNER = re.compile(r"-(?P<pid>\d+)-(?P<rand>[0-9a-f]{8})$")


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
    """Who holds a lease."""

    host: str
    pid: int
    token: str
    started: float

    @classmethod
    def mine(cls) -> LeaseInfo:
        return cls(socket.gethostname(), os.getpid(), uuid.uuid4().hex, time.time())

    def to_json(self) -> str:
        return json.dumps({"host": self.host, "pid": self.pid, "token": self.token, "started": self.started})


def lease_path(store: PseudoLabelStore, scene_id: str) -> Path:
    return store.scenes_dir / f"{LEASE_PREFIX}{safe_key(scene_id)}"


def read_lease(path: Path) -> tuple[LeaseInfo, float] | None:
    """(owner, heartbeat mtime) of a lease file, or None if it does not exist or is unreadable."""
    try:
        mtime = path.stat().st_mtime
        d = json.loads(path.read_text(encoding="utf-8"))
        return LeaseInfo(str(d["host"]), int(d["pid"]), str(d["token"]), float(d["started"])), mtime
    except (OSError, ValueError, KeyError, TypeError):
        return None


def stale_reason(
    info: LeaseInfo | None, mtime: float, timeout_s: float, now: float | None = None
) -> str | None:
    """Why a lease may be taken over, or None while its owner is alive and its heartbeat recent."""
    now = time.time() if now is None else now
    if info is None:
        return "unreadable lease file" if now - mtime > min(timeout_s, 5.0) else None
    if info.host == socket.gethostname() and info.pid != os.getpid() and not pid_alive(info.pid):
        return f"owner pid {info.pid} on this host is dead"
    if now - mtime > timeout_s:
        return f"heartbeat {now - mtime:.0f} s old (timeout {timeout_s:.0f} s)"
    return None


class SceneLease:
    """A lease on one scene; use :meth:`try_acquire`, then :meth:`release` (or ``with``)."""

    def __init__(self, path: Path, timeout_s: float = 600.0, heartbeat_s: float = 30.0) -> None:
        self.path = Path(path)
        self.timeout_s = float(timeout_s)
        self.heartbeat_s = float(heartbeat_s)
        self.info = LeaseInfo.mine()
        self.held = False
        self.lost = False
        self.took_over: str | None = None  # the stale reason, when acquired by takeover
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ acquire / release
    def try_acquire(self) -> bool:
        """Take the lease if it is free or stale; False if a live owner holds it."""
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return self._try_takeover()
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(self.info.to_json())
            f.flush()
            os.fsync(f.fileno())
        return self._start()

    def _try_takeover(self) -> bool:
        current = read_lease(self.path)
        if current is None:
            try:
                mtime = self.path.stat().st_mtime
            except FileNotFoundError:  # released meanwhile: try a fresh create once
                return self._create_once()
            reason = stale_reason(None, mtime, self.timeout_s)
        else:
            reason = stale_reason(current[0], current[1], self.timeout_s)
        if reason is None:
            return False
        tmp = self.path.with_name(f"{self.path.name}.{self.info.token[:8]}.new")
        tmp.write_text(self.info.to_json(), encoding="utf-8")
        os.replace(tmp, self.path)  # atomic: the last of racing takers wins ...
        time.sleep(0.05)
        back = read_lease(self.path)  # ... and only the winner reads its own token back
        if back is None or back[0].token != self.info.token:
            return False
        self.took_over = reason
        return self._start()

    def _create_once(self) -> bool:
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(self.info.to_json())
        return self._start()

    def _start(self) -> bool:
        self.held = True
        self._stop.clear()
        self._thread = threading.Thread(target=self._beat, name=f"lease-{self.path.name}", daemon=True)
        self._thread.start()
        return True

    def still_mine(self) -> bool:
        back = read_lease(self.path)
        return back is not None and back[0].token == self.info.token

    def refresh(self) -> bool:
        """Touch the lease (heartbeat); False (and ``lost``) if someone else took it over."""
        if not self.still_mine():
            self.lost = True
            return False
        try:
            os.utime(self.path)
        except FileNotFoundError:
            self.lost = True
            return False
        return True

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            if not self.refresh():
                return

    def release(self) -> None:
        """Stop the heartbeat and remove the lease file if it is still ours."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
            self._thread = None
        if self.held and self.still_mine():
            try:
                os.remove(self.path)
            except FileNotFoundError:
                pass
        self.held = False

    def __enter__(self) -> SceneLease:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def active_leases(store: PseudoLabelStore) -> list[Path]:
    """Lease files present in the store (held or stale)."""
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
