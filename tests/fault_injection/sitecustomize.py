"""Test-only fault injection, loaded into test subprocesses as ``sitecustomize`` (stdlib only).

tests/conftest.py puts this folder first on ``PYTHONPATH`` for the whole session, so every
``mllm3d`` subprocess a test starts imports this module; it does nothing unless one of the variables
below is set. It listens to the audit events the package raises (``sys.audit``) at its write and
training stages, so the package itself carries no test code:

- ``mllm3d.store.write`` (stage, key): "scene.before_publish", "query.mid_write", "query.before_publish";
- ``mllm3d.stage1.write`` (stage, key): "scene.after_publish", "query.before_write", "query.after_publish";
- ``mllm3d.train.batch_start`` (epoch, batch_idx).

``MLLM3D_TEST_KILL_AT=<kind>:<n>:<point>[:TERM|:INT]`` SIGKILLs (SIGTERMs, SIGINTs: a Ctrl-C) the process at the n-th (1-based)
write of ``kind`` (query | scene) at ``point``:

- ``before_write``   (runner) the record is assembled, nothing is on disk yet;
- ``mid_write``      (store)  the temporary group holds some arrays (masks) but not all;
- ``before_publish`` (store)  the temporary group is complete, not yet renamed into place;
- ``after_publish``  (runner) the group is in place, the next one not started.

``MLLM3D_TEST_WRITE_BARRIER=<dir>:<n>[:<timeout_s>]`` makes concurrent workers overlap for certain: at
its first ``*.before_publish`` each process creates ``<dir>/<host>-<pid>`` and sleeps until ``n`` such
files exist (or ``timeout_s``, default 60, pass; it then also writes ``<dir>/timeout-<host>-<pid>``).

``MLLM3D_TEST_TRAIN_KILL_AT=<epoch>:<batch>[:TERM|:INT]`` SIGKILLs (SIGTERMs, SIGINTs) training before that batch.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import time
from collections import Counter
from pathlib import Path

KILL_VAR = "MLLM3D_TEST_KILL_AT"
BARRIER_VAR = "MLLM3D_TEST_WRITE_BARRIER"
TRAIN_KILL_VAR = "MLLM3D_TEST_TRAIN_KILL_AT"
WRITE_EVENTS = ("mllm3d.store.write", "mllm3d.stage1.write")
TRAIN_EVENT = "mllm3d.train.batch_start"
KINDS = ("query", "scene")
POINTS = ("before_write", "mid_write", "before_publish", "after_publish")


def _bad(var: str, spec: str, expected: str) -> SystemExit:
    return SystemExit(f"error: ${var}={spec!r}: expected {expected}")


def _signal(parts: list[str]) -> tuple[list[str], int]:
    if parts and parts[-1] in ("TERM", "INT"):
        return parts[:-1], signal.SIGTERM if parts[-1] == "TERM" else signal.SIGINT
    return parts, signal.SIGKILL


class KillSwitch:
    """Counts write stages and kills the process at the configured one."""

    def __init__(self, spec: str) -> None:
        parts, self.sig = _signal(spec.split(":"))
        if len(parts) != 3 or parts[0] not in KINDS or parts[2] not in POINTS or not parts[1].isdigit():
            raise _bad(KILL_VAR, spec, f"<kind>:<n>:<point>[:TERM|:INT] with kind in {KINDS}, n >= 1, point in {POINTS}")
        self.kind, self.n, self.point = parts[0], int(parts[1]), parts[2]
        self.counts: Counter[tuple[str, str]] = Counter()

    def __call__(self, stage: str, key: str) -> None:
        kind, _, point = stage.partition(".")
        self.counts[(kind, point)] += 1
        if (kind, point) == (self.kind, self.point) and self.counts[(kind, point)] == self.n:
            os.kill(os.getpid(), self.sig)


class WriteBarrier:
    """Holds this process at its first ``*.before_publish`` until ``n`` processes have reached theirs."""

    def __init__(self, spec: str) -> None:
        parts = spec.split(":")
        ok = len(parts) in (2, 3) and parts[0] != "" and parts[1].isdigit() and int(parts[1]) >= 1
        try:
            timeout = float(parts[2]) if ok and len(parts) == 3 else 60.0
        except ValueError:
            ok = False
        if not ok or timeout <= 0:
            raise _bad(BARRIER_VAR, spec, "<dir>:<n>[:<timeout_s>] with n >= 1 (no ':' in dir)")
        self.directory, self.n, self.timeout_s = Path(parts[0]), int(parts[1]), timeout
        self.passed = False

    def __call__(self, stage: str, key: str) -> None:
        if self.passed or not stage.endswith(".before_publish"):
            return
        self.passed = True
        me = f"{socket.gethostname()}-{os.getpid()}"
        self.directory.mkdir(parents=True, exist_ok=True)
        (self.directory / me).write_text(f"{stage} {key}\n", encoding="utf-8")
        deadline = time.monotonic() + self.timeout_s
        while sum(1 for p in self.directory.iterdir() if not p.name.startswith("timeout-")) < self.n:
            if time.monotonic() > deadline:
                (self.directory / f"timeout-{me}").write_text("", encoding="utf-8")
                return
            time.sleep(0.05)


class TrainKill:
    """Kills training before one (epoch, batch)."""

    def __init__(self, spec: str) -> None:
        parts, self.sig = _signal(spec.split(":"))
        if len(parts) != 2 or not all(p.isdigit() for p in parts):
            raise _bad(TRAIN_KILL_VAR, spec, "<epoch>:<batch>[:TERM|:INT]")
        self.epoch, self.batch = int(parts[0]), int(parts[1])

    def __call__(self, epoch: int, batch_idx: int) -> None:
        if (epoch, batch_idx) == (self.epoch, self.batch):
            os.kill(os.getpid(), self.sig)


def install() -> None:
    """Install one audit hook dispatching to the observers the environment names (if any)."""
    write_observers = [cls(os.environ[var]) for var, cls in ((BARRIER_VAR, WriteBarrier), (KILL_VAR, KillSwitch))
                       if os.environ.get(var)]
    train_kill = TrainKill(os.environ[TRAIN_KILL_VAR]) if os.environ.get(TRAIN_KILL_VAR) else None
    if not write_observers and train_kill is None:
        return

    def hook(event: str, args: tuple) -> None:
        if event in WRITE_EVENTS:
            for observer in write_observers:
                observer(*args)
        elif event == TRAIN_EVENT and train_kill is not None:
            train_kill(*args)

    sys.addaudithook(hook)


install()
