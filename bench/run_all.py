"""Run every benchmark, print a table per benchmark and write BENCHMARKS.md.

    .venv/bin/python bench/run_all.py --out BENCHMARKS.md          # the full suite (make bench)
    .venv/bin/python bench/run_all.py --quick                      # tiny sizes, seconds, nothing written
    .venv/bin/python bench/run_all.py --only store --only scale    # a subset

Each benchmark module has ``run(quick) -> dict`` (see bench/common.py for the report dict). The
Stage 1 FLOP benchmark (bench/bench_stage1_flops.py) returns its own dict; it is rendered by
:func:`stage1_report`. ``scale`` reuses the measured results of ``stage1_flops`` and ``store`` from the
same run; it gets every earlier report (failed ones included) and
re-runs a missing or failed one itself, saying so in its notes and on stderr.
"""

from __future__ import annotations

import argparse
import importlib
import json
import shlex
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import DEFAULT_REPEAT, machine_info, report, timing_repeats, uptime_line  # noqa: E402

# name -> module; the order is the run order (scale needs stage1_flops and store)
BENCHMARKS: dict[str, str] = {
    "stage1_flops": "bench.bench_stage1_flops",
    "correspondences": "bench.bench_correspondences",
    "store": "bench.bench_store",
    "stage2_pipeline": "bench.bench_stage2_pipeline",
    "scale": "bench.bench_scale",
    "stage1_e2e": "bench.bench_stage1_e2e",
    "fusion": "bench.bench_fusion",
}
TITLES = {
    "stage1_flops": "1. Stage 1: naive vs encoders-cached vs shared LISA",
    "correspondences": "2. Point→pixel correspondences",
    "store": "3. Pseudo-label store",
    "stage2_pipeline": "4. Stage 2 input pipeline and training throughput",
    "scale": "5. Scale on paper: ScanNet projections",
    "stage1_e2e": "6. Stage 1 end to end: naive vs shared vs shared + pooled views",
    "fusion": "7. Stage 2 label fusion: float32 vs float64",
}


# ------------------------------------------------------------------------------------------ running
def _is_report(d: Any) -> bool:
    return isinstance(d, dict) and "tables" in d and "targets" in d


def stage1_report(raw: dict[str, Any]) -> dict[str, Any]:
    """Render the Stage 1 FLOP benchmark's dict as a report (kept generic: it may already be one)."""
    if _is_report(raw):
        return raw
    from bench.stage1_render import render_stage1

    return render_stage1(raw)


def run_one(name: str, quick: bool, results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Import and run one benchmark; failures become a report with the traceback instead of aborting."""
    t0 = time.perf_counter()
    try:
        mod = importlib.import_module(BENCHMARKS[name])
    except ModuleNotFoundError as exc:
        if exc.name and BENCHMARKS[name].startswith(exc.name):
            rep = report(name, TITLES[name], notes=[f"**not run**: `{BENCHMARKS[name]}` does not exist yet."])
            rep["status"] = "missing"
            rep["wall_s"] = time.perf_counter() - t0
            return rep
        rep = report(name, TITLES[name], notes=[f"**failed to import**: `{exc}`"], profile=traceback.format_exc())
        rep["status"] = "error"
        rep["wall_s"] = time.perf_counter() - t0
        return rep
    try:
        fn: Callable[..., dict[str, Any]] = mod.run
        if name == "scale":  # every earlier report, failed ones included: scale says what it re-ran and why
            raw = fn(quick=quick, deps=dict(results))
        else:
            raw = fn(quick=quick)
        rep = stage1_report(raw) if name == "stage1_flops" else raw
        rep["status"] = "ok"
    except Exception as exc:  # noqa: BLE001 - one broken benchmark must not hide the others
        rep = report(name, TITLES[name], notes=[f"**failed**: `{type(exc).__name__}: {exc}`"],
                     profile=traceback.format_exc())
        rep["status"] = "error"
    rep["title"] = TITLES.get(name, name)
    rep["wall_s"] = time.perf_counter() - t0
    return rep


# ------------------------------------------------------------------------------------------ printing
def print_rich(reports: list[dict[str, Any]]) -> None:
    """Print every benchmark's tables and the target summary with rich."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    for rep in reports:
        console.rule(f"[bold]{rep['title']}[/] ({rep['status']}, {rep['wall_s']:.1f} s)")
        for note in rep["notes"]:
            console.print(f"  {note}", markup=False, highlight=False)
        for t in rep["tables"]:
            table = Table(title=t["title"], show_lines=False)
            for c in t["columns"]:
                table.add_column(str(c))
            for row in t["rows"]:
                table.add_row(*[str(x) for x in row])
            console.print(table)
        if rep["status"] == "error" and rep.get("profile"):
            console.print(rep["profile"], markup=False, highlight=False)
    summary = Table(title="Targets")
    for c in ("benchmark", "claim", "measured", "target", "verdict"):
        summary.add_column(c)
    for rep in reports:
        for tg in rep["targets"]:
            style = "green" if tg["met"] else "red"
            summary.add_row(rep["name"], tg["claim"], tg["measured_text"], tg["target_text"],
                            f"[{style}]{tg['margin_text']}[/]")
    console.print(summary)


# ------------------------------------------------------------------------------------------ markdown
def _md_table(columns: list[Any], rows: list[list[Any]]) -> list[str]:
    def cell(x: Any) -> str:
        return str(x).replace("|", "\\|").replace("\n", " ")

    out = ["| " + " | ".join(cell(c) for c in columns) + " |", "|" + "---|" * len(columns)]
    out += ["| " + " | ".join(cell(x) for x in row) + " |" for row in rows]
    return out


def method_line(reports: list[dict[str, Any]]) -> str:
    """How each benchmark's timings were taken, from the Timing repetitions found in its data (so the header
    cannot claim more repetitions than were run) plus the report's own ``method`` text."""
    parts = []
    short = []
    for rep in reports:
        reps = timing_repeats(rep.get("data", {}))
        bits = []
        if reps:
            lo, hi = min(reps), max(reps)
            bits.append(f"medians of {lo}{f'–{hi}' if hi != lo else ''} repetitions after warm-up")
            if lo < DEFAULT_REPEAT:
                short.append(rep["name"])
        if rep.get("method"):
            bits.append(str(rep["method"]))
        if not bits:
            bits.append("no timings" if rep.get("status") == "ok" else f"not measured ({rep.get('status')})")
        parts.append(f"{rep['name']}: " + "; ".join(bits))
    head = (f"timings are medians of ≥ {DEFAULT_REPEAT} repetitions after 1 warm-up except where stated"
            if not short else f"**fewer than {DEFAULT_REPEAT} repetitions in: {', '.join(short)}**")
    return head + " — " + " | ".join(parts)


def render_markdown(reports: list[dict[str, Any]], machine: dict[str, Any], command: str, total_s: float,
                    load_before: str, load_after: str, quick: bool) -> str:
    """BENCHMARKS.md: command, date, machine, target summary, then one section per benchmark."""
    md: list[str] = ["# Benchmarks", ""]
    md += [
        "Generated by `bench/run_all.py` — do not edit by hand; rerun `make bench`. Smoke run in seconds: "
        "`.venv/bin/python bench/run_all.py --quick`; one benchmark: `--only NAME` "
        f"({', '.join(BENCHMARKS)}); each `bench/bench_*.py` also runs alone.",
        "",
        f"- **Command**: `{command}" + (" (**quick mode: reduced sizes, not the product figures**)" if quick else ""),
        f"- **Date**: {machine['date']}",
        f"- **Commit**: {machine['git_commit']}",
        f"- **Machine**: {machine['cpu']}, {machine['cores_usable']} usable cores ({machine['cores']} online), "
        f"{machine['memory_gib']} GiB RAM, {machine['platform']}; GPU: "
        f"{machine.get('cuda_device') or 'yes' if machine['cuda'] else 'none (torch.cuda.is_available() is False)'}",
        f"- **Software**: Python {machine['python']}, torch {machine['torch']} ({machine['torch_threads']} threads), "
        f"numpy {machine['numpy']}, zarr {machine['zarr']}, spconv {machine['spconv']}, "
        f"pytorch-lightning {machine['pytorch_lightning']}",
        f"- **Load** (`uptime`) before: `{load_before}`; after: `{load_after}`. The machine's cores may be "
        "shared with other processes (the load figures say how busy it was), so absolute timings carry that noise; every ratio compares two "
        "measurements taken back-to-back in the same run.",
        f"- **Method**: {method_line(reports)}; total wall time of this run: {total_s:.0f} s.",
        "",
        "## Targets",
        "",
    ]
    rows = []
    for rep in reports:
        if not rep["targets"]:
            what = "no target (projection from this run's measurements)" if rep["status"] == "ok" else rep["status"]
            rows.append([rep["title"], what, "", "", ""])
        for tg in rep["targets"]:
            verdict = ("✅ " if tg["met"] else "❌ ") + tg["margin_text"]
            rows.append([rep["title"], tg["claim"], tg["measured_text"], tg["target_text"], verdict])
    md += _md_table(["benchmark", "claim", "measured", "target", "verdict"], rows)
    md.append("")
    for rep in reports:
        md += [f"## {rep['title']}", "", f"_status: {rep['status']}, wall time {rep['wall_s']:.1f} s_", ""]
        for note in rep["notes"]:
            md.append(f"- {note}")
        if rep["notes"]:
            md.append("")
        for t in rep["tables"]:
            md += [f"**{t['title']}**", ""]
            md += _md_table(t["columns"], t["rows"])
            md.append("")
        if rep["targets"]:
            md += _md_table(
                ["claim", "measured", "target", "verdict"],
                [[tg["claim"], tg["measured_text"], tg["target_text"], ("✅ " if tg["met"] else "❌ ") + tg["margin_text"]]
                 for tg in rep["targets"]],
            )
            md.append("")
        for why in rep.get("miss_analysis", []):
            md.append(f"- {why}")
        if rep.get("miss_analysis"):
            md.append("")
        if rep.get("profile"):
            label = "Traceback" if rep["status"] == "error" else "Profile (where the time goes)"
            md += [f"<details><summary>{label}</summary>", "", "```", rep["profile"].rstrip(), "```", "", "</details>", ""]
    return "\n".join(md).rstrip() + "\n"


# ------------------------------------------------------------------------------------------ main
def main(argv: list[str] | None = None) -> int:
    """Parse arguments, run the selected benchmarks, print, write the markdown (and a JSON beside it)."""
    ap = argparse.ArgumentParser(description="Run the benchmark suite and write BENCHMARKS.md")
    ap.add_argument("--out", type=Path, default=None, help="markdown file to write (e.g. BENCHMARKS.md)")
    ap.add_argument("--quick", action="store_true", help="tiny sizes: checks the suite runs, not product figures")
    ap.add_argument("--only", action="append", default=[], metavar="NAME",
                    help=f"run only these (repeatable or comma-separated): {', '.join(BENCHMARKS)}")
    ap.add_argument("--json", type=Path, default=None, help="also dump every report dict as JSON here")
    args = ap.parse_args(argv)
    only = [n.strip() for item in args.only for n in item.split(",") if n.strip()]
    unknown = [n for n in only if n not in BENCHMARKS]
    if unknown:
        ap.error(f"unknown benchmark(s) {unknown}; known: {list(BENCHMARKS)}")
    names = [n for n in BENCHMARKS if not only or n in only]

    command = " ".join([".venv/bin/python", "bench/run_all.py", *[shlex.quote(a) for a in (argv or sys.argv[1:])]])
    if args.out and args.out.name == "BENCHMARKS.md" and not only and not args.quick and not args.json:
        command += "` (what `make bench` runs)"
    else:
        command += "`"
    machine = machine_info()  # before the runs: a benchmark may change e.g. torch's thread count
    load_before = uptime_line()
    t0 = time.perf_counter()
    results: dict[str, dict[str, Any]] = {}
    for name in names:
        print(f"[bench] running {name} ...", file=sys.stderr, flush=True)
        results[name] = run_one(name, args.quick, results)
        print(f"[bench] {name}: {results[name]['status']} in {results[name]['wall_s']:.1f} s", file=sys.stderr, flush=True)
    total = time.perf_counter() - t0
    load_after = uptime_line()
    reports = [results[n] for n in names]
    print_rich(reports)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(render_markdown(reports, machine, command, total, load_before, load_after, args.quick),
                            encoding="utf-8")
        print(f"[bench] wrote {args.out} (total {total:.0f} s)", file=sys.stderr)
    if args.json is not None:
        args.json.write_text(json.dumps({"machine": machine, "reports": reports}, indent=1, default=str))
    return 1 if any(r["status"] == "error" for r in reports) else 0


if __name__ == "__main__":
    sys.exit(main())
