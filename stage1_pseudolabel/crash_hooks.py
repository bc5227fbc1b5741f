"""Test-only crash injection: ``MLLM3D_TEST_KILL_AT=<kind>:<n>:<point>`` SIGKILLs the process.

``kind`` is ``query`` or ``scene``, ``n`` counts that kind's writes in this process (1-based), and
``point`` is where in the n-th write the process dies:

- ``before_write``   (runner) the record is assembled, nothing is on disk yet;
- ``mid_write``      (store)  the temporary group holds some arrays (masks) but not all;
- ``before_publish`` (store)  the temporary group is complete, not yet renamed into place;
- ``after_publish``  (runner) the group is in place, the next one not started.

The crash/resume tests use it to kill ``mllm3d pseudolabel`` at exact points. It does nothing
unless the variable is set.
"""

from __future__ import annotations

import os
import signal
from collections import Counter

from shared import store as store_module
from shared.errors import BadInputError

ENV_VAR = "MLLM3D_TEST_KILL_AT"
KINDS = ("query", "scene")
POINTS = ("before_write", "mid_write", "before_publish", "after_publish")


class KillSwitch:
    """Counts write events and kills the process at the configured one."""

    def __init__(self, kind: str, n: int, point: str) -> None:
        self.kind, self.n, self.point = kind, n, point
        self.counts: Counter[tuple[str, str]] = Counter()

    def __call__(self, event: str, key: str = "") -> None:
        kind, _, point = event.partition(".")
        self.counts[(kind, point)] += 1
        if (kind, point) == (self.kind, self.point) and self.counts[(kind, point)] == self.n:
            os.kill(os.getpid(), signal.SIGKILL)


def parse(spec: str) -> KillSwitch:
    parts = spec.split(":")
    if len(parts) != 3 or parts[0] not in KINDS or parts[2] not in POINTS or not parts[1].isdigit():
        raise BadInputError(
            f"${ENV_VAR}={spec!r}: expected <kind>:<n>:<point> with kind in {KINDS}, n >= 1, point in {POINTS}"
        )
    return KillSwitch(parts[0], int(parts[1]), parts[2])


_active: KillSwitch | None = None


def install_from_env() -> KillSwitch | None:
    """Install the kill switch named by the environment (once per process)."""
    global _active
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
