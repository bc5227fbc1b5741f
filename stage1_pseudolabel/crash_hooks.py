"""Test-only crash injection: ``MLLM3D_TEST_KILL_AT=<kind>:<n>:<point>`` SIGKILLs the process.

``kind`` is ``query`` or ``scene``, ``n`` counts that kind's writes in this process (1-based), and
``point`` is where in the n-th write the process dies:

- ``before_write``   (runner) the record is assembled, nothing is on disk yet;
- ``mid_write``      (store)  the temporary group holds some arrays (masks) but not all;
- ``before_publish`` (store)  the temporary group is complete, not yet renamed into place;
- ``after_publish``  (runner) the group is in place, the next one not started.

The crash/resume tests use it to kill ``mllm3d pseudolabel`` at exact points. It does nothing
unless the variable is set.

``MLLM3D_TEST_WRITE_BARRIER=<dir>:<n>[:<timeout_s>]`` makes the concurrency tests' workers overlap
for certain: at its first group write (just before the rename), each process creates
``<dir>/<host>-<pid>`` and sleeps until ``n`` such files exist (or ``timeout_s``, default 60, pass;
it then also writes ``<dir>/timeout-<host>-<pid>``). So ``n`` workers are all inside a write at the
same moment, none has published anything yet.
"""

from __future__ import annotations

import os
import signal
import socket
import time
from collections import Counter
from pathlib import Path

from mllm3d.shared import store as store_module
from mllm3d.shared.errors import BadInputError

ENV_VAR = "MLLM3D_TEST_KILL_AT"
BARRIER_ENV_VAR = "MLLM3D_TEST_WRITE_BARRIER"
KINDS = ("query", "scene")
POINTS = ("before_write", "mid_write", "before_publish", "after_publish")


class KillSwitch:
    """Counts write events and kills the process at the configured one."""

    def __init__(self, kind: str, n: int, point: str, sig: int = signal.SIGKILL) -> None:
        self.kind, self.n, self.point, self.sig = kind, n, point, sig
        self.counts: Counter[tuple[str, str]] = Counter()

    def __call__(self, event: str, key: str = "") -> None:
        kind, _, point = event.partition(".")
        self.counts[(kind, point)] += 1
        if (kind, point) == (self.kind, self.point) and self.counts[(kind, point)] == self.n:
            os.kill(os.getpid(), self.sig)


def parse(spec: str) -> KillSwitch:
    parts = spec.split(":")
    sig = signal.SIGKILL
    if len(parts) == 4 and parts[3] == "TERM":  # <kind>:<n>:<point>:TERM sends SIGTERM instead
        sig = signal.SIGTERM
        parts = parts[:3]
    if len(parts) != 3 or parts[0] not in KINDS or parts[2] not in POINTS or not parts[1].isdigit():
        raise BadInputError(
            f"${ENV_VAR}={spec!r}: expected <kind>:<n>:<point> with kind in {KINDS}, n >= 1, point in {POINTS}"
        )
    return KillSwitch(parts[0], int(parts[1]), parts[2], sig)


class WriteBarrier:
    """Holds this process at its first ``*.before_publish`` until ``n`` processes have reached theirs."""

    def __init__(self, directory: Path, n: int, timeout_s: float = 60.0) -> None:
        self.directory, self.n, self.timeout_s = directory, n, timeout_s
        self.passed = False

    def __call__(self, event: str, key: str = "") -> None:
        if self.passed or not event.endswith(".before_publish"):
            return
        self.passed = True
        me = f"{socket.gethostname()}-{os.getpid()}"
        self.directory.mkdir(parents=True, exist_ok=True)
        (self.directory / me).write_text(f"{event} {key}\n", encoding="utf-8")
        deadline = time.monotonic() + self.timeout_s
        while sum(1 for p in self.directory.iterdir() if not p.name.startswith("timeout-")) < self.n:
            if time.monotonic() > deadline:
                (self.directory / f"timeout-{me}").write_text("", encoding="utf-8")
                return
            time.sleep(0.05)


def parse_barrier(spec: str) -> WriteBarrier:
    parts = spec.split(":")
    ok = len(parts) in (2, 3) and parts[0] != "" and parts[1].isdigit() and int(parts[1]) >= 1
    try:
        timeout = float(parts[2]) if ok and len(parts) == 3 else 60.0
    except ValueError:
        ok = False
    if not ok or timeout <= 0:
        raise BadInputError(
            f"${BARRIER_ENV_VAR}={spec!r}: expected <dir>:<n>[:<timeout_s>] with n >= 1 (no ':' in dir)"
        )
    return WriteBarrier(Path(parts[0]), int(parts[1]), timeout)


_active: KillSwitch | None = None
_barrier: WriteBarrier | None = None


def install_from_env() -> KillSwitch | None:
    """Install the kill switch and write barrier named by the environment (once per process)."""
    global _active, _barrier
    barrier_spec = os.environ.get(BARRIER_ENV_VAR)
    if barrier_spec and _barrier is None:
        _barrier = parse_barrier(barrier_spec)
        store_module.WRITE_HOOKS.append(_barrier)
    spec = os.environ.get(ENV_VAR)
    if not spec or _active is not None:
        return _active
    _active = parse(spec)
    store_module.WRITE_HOOKS.append(_active)
    return _active


def fire(event: str, key: str = "") -> None:
    """Runner-side events (``query.before_write``, ``query.after_publish``, ``scene.after_publish``)."""
    if _active is not None:
        _active(event, key)
