"""Shared helpers of the benchmark suite: timing (warm-up + median of N), machine info, targets, profiles.

Every benchmark module exposes ``run(quick: bool) -> dict`` returning a *report dict*::

    {
      "name": str, "title": str,
      "notes": [str, ...],                      # what was measured and how (markdown lines)
      "tables": [{"title": str, "columns": [...], "rows": [[...], ...]}],
      "targets": [target(...), ...],            # claim, measured, target, met, margin
      "profile": str | None,                    # cProfile top entries when a target is missed
      "miss_analysis": [str, ...],              # why a missed target was missed (from the profile)
      "data": {...},                            # raw numbers (JSON-able) for other benchmarks
      "method": str | None,                     # how timings were taken, when not medians of Timing repeats
    }
"""

from __future__ import annotations

import cProfile
import datetime as _dt
import io
import os
import platform
import pstats
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_REPEAT = 5
DEFAULT_WARMUP = 1


@dataclass
class Timing:
    """Wall-clock timings of one measured callable (seconds)."""

    median: float
    min: float
    max: float
    times: list[float] = field(default_factory=list)
    warmup: int = DEFAULT_WARMUP

    @property
    def repeat(self) -> int:
        return len(self.times)

    @property
    def spread(self) -> float:
        """(max - min) / median: how noisy the repetitions were."""
        return (self.max - self.min) / self.median if self.median > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["repeat"] = self.repeat
        return d


def measure(
    fn: Callable[[], Any],
    repeat: int = DEFAULT_REPEAT,
    warmup: int = DEFAULT_WARMUP,
    setup: Callable[[], Any] | None = None,
) -> Timing:
    """Run ``fn`` ``warmup`` times untimed, then ``repeat`` times timed; return the median and range.

    ``setup`` (untimed) runs before every call, e.g. to delete a directory a writer creates.
    """
    if repeat < 1:
        raise ValueError("repeat must be >= 1")
    for _ in range(warmup):
        if setup is not None:
            setup()
        fn()
    times: list[float] = []
    for _ in range(repeat):
        if setup is not None:
            setup()
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return Timing(float(np.median(times)), float(min(times)), float(max(times)), times, warmup)


def measure_interleaved(
    fns: dict[str, Callable[[], Any]], repeat: int = DEFAULT_REPEAT, warmup: int = DEFAULT_WARMUP
) -> dict[str, Timing]:
    """Time several callables alternately: ``warmup`` untimed rounds, then ``repeat`` timed rounds, each
    running every callable once; the order is reversed every other round (A B, B A, ...) so slow drifts of
    a shared machine's load hit all of them alike. {name: Timing}."""
    if repeat < 1:
        raise ValueError("repeat must be >= 1")
    names = list(fns)
    for _ in range(warmup):
        for n in names:
            fns[n]()
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(repeat):
        for n in names if r % 2 == 0 else names[::-1]:
            t0 = time.perf_counter()
            fns[n]()
            times[n].append(time.perf_counter() - t0)
    return {n: Timing(float(np.median(t)), float(min(t)), float(max(t)), t, warmup) for n, t in times.items()}


def load_average() -> tuple[float, float, float]:
    """1/5/15-minute load averages."""
    try:
        return os.getloadavg()
    except OSError:  # pragma: no cover - not on Linux
        return (float("nan"),) * 3


def uptime_line() -> str:
    """The output of ``uptime`` (or the load averages if the command is missing)."""
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        la = load_average()
        return f"load average: {la[0]:.2f}, {la[1]:.2f}, {la[2]:.2f}"


def cpu_model() -> str:
    """CPU model name from /proc/cpuinfo (falls back to platform.processor())."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _version(module: str) -> str:
    try:
        mod = __import__(module)
        return str(getattr(mod, "__version__", "?"))
    except Exception:  # noqa: BLE001 - a missing optional package is reported, not fatal
        return "not installed"


def git_commit() -> str:
    """Short commit hash of the checkout, with '+dirty (N files)' if the working tree has uncommitted changes
    (tracked modifications or untracked, not ignored, files: ``git status --porcelain``)."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=5
        ).stdout.strip()
        if not head:
            return "unknown"
        status = subprocess.run(
            ["git", "status", "--porcelain"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=30
        )
        if status.returncode != 0:
            return f"{head} (working-tree state unknown)"
        changed = [ln for ln in status.stdout.splitlines() if ln.strip()]
        return f"{head}+dirty ({len(changed)} uncommitted file{'s' if len(changed) != 1 else ''})" if changed else head
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def timing_repeats(obj: Any) -> list[int]:
    """Repetition counts of every :class:`Timing` (as dict: ``median`` + ``times``) found in a nested report."""
    found: list[int] = []
    if isinstance(obj, dict):
        if "median" in obj and isinstance(obj.get("times"), list):
            found.append(len(obj["times"]))
        else:
            for v in obj.values():
                found += timing_repeats(v)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            found += timing_repeats(v)
    return found


def machine_info() -> dict[str, Any]:
    """Where and when the benchmarks ran: CPU, cores, memory, library versions, load."""
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover
        affinity = os.cpu_count() or 0
    mem_gib = float("nan")
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem_gib = int(line.split()[1]) / 2**20
                break
    except OSError:
        pass
    import torch

    return {
        "date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "host": platform.node(),
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "cores_usable": affinity,
        "memory_gib": round(mem_gib, 1),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.is_available(),
        "cuda_device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "numpy": np.__version__,
        "zarr": _version("zarr"),
        "spconv": _version("spconv"),
        "pytorch_lightning": _version("pytorch_lightning"),
        "git_commit": git_commit(),
        "uptime": uptime_line(),
        "loadavg": list(load_average()),
    }


def target(
    claim: str,
    measured: float,
    threshold: float,
    higher_is_better: bool = True,
    unit: str = "",
    fmt: str = "{:.3g}",
) -> dict[str, Any]:
    """A product claim checked against a measurement: met/missed and by how much.

    ``margin`` is measured/threshold (higher_is_better) or threshold/measured, so > 1 means met with
    room to spare and < 1 means missed; ``margin_text`` says it in words.
    """
    if not np.isfinite(measured):
        return {
            "claim": claim,
            "measured": measured,
            "threshold": threshold,
            "op": ">=" if higher_is_better else "<",
            "unit": unit,
            "met": False,
            "margin": float("nan"),
            "margin_text": "not measured",
            "measured_text": "n/a",
            "target_text": ("≥ " if higher_is_better else "< ") + fmt.format(threshold) + unit,
        }
    met = measured >= threshold if higher_is_better else measured < threshold
    if higher_is_better:
        margin = measured / threshold if threshold else float("inf")
    else:
        margin = threshold / measured if measured else float("inf")
    if met:
        text = f"met, {margin:.2f}× the target"
    else:
        short = (1 - measured / threshold) if higher_is_better else (measured / threshold - 1)
        text = f"MISSED by {abs(short) * 100:.0f} % ({margin:.2f}× the target)"
    return {
        "claim": claim,
        "measured": float(measured),
        "threshold": float(threshold),
        "op": ">=" if higher_is_better else "<",
        "unit": unit,
        "met": bool(met),
        "margin": float(margin),
        "margin_text": text,
        "measured_text": fmt.format(measured) + unit,
        "target_text": ("≥ " if higher_is_better else "< ") + fmt.format(threshold) + unit,
    }


def profile_stats(fn: Callable[[], Any]) -> pstats.Stats:
    """cProfile one call of ``fn``."""
    prof = cProfile.Profile()
    prof.enable()
    try:
        fn()
    finally:
        prof.disable()
    return pstats.Stats(prof)


def profile_share(stats: pstats.Stats, filename_end: str, func: str, exact: bool = True) -> tuple[int, float, float]:
    """(calls, cumulative seconds, share of the total) of the functions named ``func`` (or whose name
    contains it, ``exact=False``) in files whose name ends with ``filename_end`` (built-ins: ``~``)."""
    total = max(getattr(stats, "total_tt", 0.0), 1e-12)
    calls, cum = 0, 0.0
    for (fname, _line, name), (_cc, nc, _tt, ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        if (name == func if exact else func in name) and fname.endswith(filename_end):
            calls += nc
            cum += ct
    return calls, cum, cum / total


def profile_top(fn: Callable[[], Any], limit: int = 15, sort: str = "cumulative") -> str:
    """cProfile one call of ``fn``; return the top ``limit`` entries as text."""
    return format_stats(profile_stats(fn), limit, sort)


def format_stats(stats: pstats.Stats, limit: int = 15, sort: str = "cumulative") -> str:
    """The top ``limit`` entries of profile stats as text."""
    buf = io.StringIO()
    stats.stream = buf  # type: ignore[attr-defined]
    stats.strip_dirs().sort_stats(sort).print_stats(limit)
    lines = [ln.rstrip() for ln in buf.getvalue().splitlines() if ln.strip()]
    # keep the header line with the totals and the table
    return "\n".join(lines)


def fmt_s(seconds: float) -> str:
    """Human duration: µs/ms/s."""
    if not np.isfinite(seconds):
        return "n/a"
    if seconds < 1e-3:
        return f"{seconds * 1e6:.1f} µs"
    if seconds < 1:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds:.2f} s"


def fmt_bytes(n: float) -> str:
    """Human byte count (binary units)."""
    if not np.isfinite(n):
        return "n/a"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(n) < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1024
    return f"{n:.2f} PiB"  # pragma: no cover


def fmt_rate(x: float, unit: str = "") -> str:
    """Large rate with k/M/G prefixes."""
    if not np.isfinite(x):
        return "n/a"
    for p, s in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= p:
            return f"{x / p:.3g} {s}{unit}"
    return f"{x:.3g} {unit}".rstrip()


def dir_bytes(path: Path, suffix_filter: Callable[[Path], bool] | None = None) -> int:
    """Total size of the regular files under ``path`` (optionally only those ``suffix_filter`` accepts)."""
    total = 0
    for dirpath, _, files in os.walk(path):
        for name in files:
            p = Path(dirpath) / name
            if suffix_filter is None or suffix_filter(p):
                total += p.stat().st_size
    return total


def report(
    name: str,
    title: str,
    notes: list[str] | None = None,
    tables: list[dict[str, Any]] | None = None,
    targets: list[dict[str, Any]] | None = None,
    profile: str | None = None,
    data: dict[str, Any] | None = None,
    miss_analysis: list[str] | None = None,
    method: str | None = None,
) -> dict[str, Any]:
    """Assemble a benchmark's report dict (see the module docstring)."""
    return {
        "name": name,
        "title": title,
        "notes": list(notes or []),
        "tables": list(tables or []),
        "targets": list(targets or []),
        "profile": profile,
        "data": dict(data or {}),
        "miss_analysis": list(miss_analysis or []),
        "method": method,
    }


def ensure_repo_on_path() -> None:
    """Make ``import bench.*`` / ``import shared.*`` work when a script is run as ``python bench/x.py``."""
    root = str(REPO_ROOT)
    if root not in sys.path:
        sys.path.insert(0, root)


def load_fixture_scene(**kwargs: Any) -> tuple[Any, str]:
    """The real ScanNet fixture scene via ``mllm3d.shared.scannet.load_scannet_scene(dir, **kwargs)``, or (None, why not)."""
    from tests.fixture_paths import SCANNET_FIXTURE_SCENE, fixtures_dir

    root = fixtures_dir()
    if root is None or not (root / SCANNET_FIXTURE_SCENE).is_dir():
        return None, "ScanNet fixture not found (set $MLLM3D_FIXTURES)"
    try:
        import mllm3d.shared.scannet as scannet
    except ImportError as exc:
        return None, f"mllm3d.shared.scannet unavailable ({exc})"
    return scannet.load_scannet_scene(root / SCANNET_FIXTURE_SCENE, **kwargs), ""
