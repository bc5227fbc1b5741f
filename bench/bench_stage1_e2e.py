"""Benchmark 6: Stage 1 end to end through the CLI with tiny LISA: naive vs shared vs shared + pooled views.

``mllm3d pseudolabel --backend lisa`` on the synthetic source (2 scenes, 16 views, 12 and 10 queries),
k = 4 random views per query, CPU, float32, forced decoding, one torch thread. Each configuration is a
fresh process into a fresh store (model load, scene loading, correspondences and store writes included);
the configurations are run alternately. The FLOP ratios for LISA-7B use the views each run really drew
(read back from its store) and the LISA-7B component counts of bench/stage1_flop_model.py.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import Timing, fmt_s, report, target  # noqa: E402

TARGET = 3.0
NO_LISA = "same pipeline, synthetic backend (no LISA)"
LOAD = "import torch + transformers, load tiny LISA (own process)"
POOL = 6
VIEWS = 4
MODES = {  # name -> extra CLI arguments
    "naive": ["--set", "backend_config.shared_encodings=false"],
    "shared": [],
    f"shared + pool {POOL}": ["--set", f"view_pool={POOL}"],
}


def _cli() -> list[str]:
    exe = Path(sys.executable).parent / "mllm3d"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "mllm3d.cli"]


def _run(ckpt: Path | None, store: Path, scenes: int, extra: list[str]) -> tuple[float, float]:
    """One ``mllm3d pseudolabel`` process (tiny LISA, or the synthetic backend if ckpt is None): (its wall
    time, the time its summary reports in the segment loop, store writes excluded)."""
    backend = ["--backend", "synthetic"] if ckpt is None else [
        "--backend", "lisa", "--checkpoint", str(ckpt), "--device", "cpu", "--dtype", "float32",
        "--decoding", "forced"]
    summary = store.with_suffix(".summary.json")
    cmd = [*_cli(), "pseudolabel", "--source", f"synthetic:{scenes}:0", *backend, "--views", str(VIEWS),
           "--no-progress", "--store", str(store), "--summary-json", str(summary), *extra]
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    t0 = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, capture_output=True, text=True, timeout=1200)
    wall = time.perf_counter() - t0
    doc = json.loads(summary.read_text())
    return wall, float((doc.get("summary") or doc).get("segment_s", float("nan")))


_LOAD_SNIPPET = (
    "import sys; from mllm3d.stage1_pseudolabel.lisa.checkpoint import load_lisa; "
    "from mllm3d.stage1_pseudolabel.lisa.config import LisaConfig; "
    "load_lisa(LisaConfig(checkpoint=sys.argv[1], device='cpu', dtype='float32'))"
)


def _load_cost(ckpt: Path) -> float:
    """Wall time of a process that imports the LISA backend (torch, transformers) and loads the checkpoint,
    minus a process importing only what the synthetic-backend run imports too (the runner: numpy, zarr, the
    store): the fixed part every LISA mode pays and the synthetic backend does not."""
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    times = []
    for code in (_LOAD_SNIPPET, "import mllm3d.stage1_pseudolabel.runner"):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", code, str(ckpt)], env=env, check=True, capture_output=True, timeout=600)
        times.append(time.perf_counter() - t0)
    return times[0] - times[1]


def _drawn(store: Path) -> dict[str, list[np.ndarray]]:
    """{scene: [view_index of each query]} of a written store."""
    from mllm3d.shared.store import open_store

    st = open_store(store)
    out: dict[str, list[np.ndarray]] = {}
    for sid, qid in st.complete_pairs():
        out.setdefault(sid, []).append(np.asarray(st.read_query(sid, qid).view_index))
    return out


def _flops(comp: dict[str, Any], drawn: dict[str, list[np.ndarray]]) -> dict[str, float]:
    """LISA-7B FLOPs of the drawn (query, view) pairs: naive, encoders-cached (each distinct view encoded
    once per scene) and shared (each distinct view encoded and its prefix run once)."""
    pairs = sum(len(v) for qs in drawn.values() for v in qs)
    distinct = sum(len(set(np.concatenate(qs).tolist())) for qs in drawn.values())
    naive = pairs * (comp["clip"] + comp["sam_encode"] + comp["lm_full"] + comp["sam_decode"])
    cached = distinct * (comp["clip"] + comp["sam_encode"]) + pairs * (comp["lm_full"] + comp["sam_decode"])
    shared = distinct * (comp["clip"] + comp["sam_encode"] + comp["lm_prefix"]) + pairs * (
        comp["lm_suffix"] + comp["sam_decode"])
    return {"pairs": pairs, "distinct_views": distinct, "naive": naive, "cached": cached, "shared": shared}


def run(quick: bool = False, repeat: int = 3) -> dict[str, Any]:
    """Time every mode through the CLI (alternating), read back the drawn views, compose LISA-7B FLOPs."""
    from bench.stage1_flop_model import RealConfig, build_meta_lisa, component_flops
    from tests.lisa_tiny import build_tiny_lisa_checkpoint

    scenes = 1 if quick else 2
    repeat = 1 if quick else repeat
    times: dict[str, list[float]] = {m: [] for m in MODES}
    seg: dict[str, list[float]] = {m: [] for m in MODES}  # in-process segment-loop time of each run
    drawn: dict[str, dict[str, list[np.ndarray]]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-e2e-") as tmp:
        ckpt = build_tiny_lisa_checkpoint(Path(tmp) / "ckpt", seed=0)
        for r in range(repeat):
            order = list(MODES) if r % 2 == 0 else list(MODES)[::-1]
            for m in order:
                store = Path(tmp) / f"{m.replace(' ', '_')}-{r}.zarr"
                wall, seg_s = _run(ckpt, store, scenes, MODES[m])
                times[m].append(wall)
                seg[m].append(seg_s)
                if m not in drawn:
                    drawn[m] = _drawn(store)
            times.setdefault(NO_LISA, []).append(_run(None, Path(tmp) / f"nolisa-{r}.zarr", scenes, [])[0])
            if not quick:  # two more processes, only for the explanation of a miss
                times.setdefault(LOAD, []).append(_load_cost(ckpt))
    rc = RealConfig()
    comp = component_flops(build_meta_lisa(rc), rc.prefix_text_tokens, rc.suffix_tokens)
    fl = {m: _flops(comp, d) for m, d in drawn.items()}
    tim = {m: Timing(float(np.median(t)), float(min(t)), float(max(t)), t, 0) for m, t in times.items()}
    pool = f"shared + pool {POOL}"
    queries = sum(len(qs) for qs in drawn["naive"].values())
    speed = tim["naive"].median / tim[pool].median
    per_query = fl["shared"]  # encoders-cached with per-query sampling is the baseline a user has today
    base = tim[NO_LISA].median
    load = fmt_s(tim[LOAD].median) if LOAD in tim else "(not measured in quick mode)"
    # the segment loop's own time, reported by each run (images, the segmenter, masks; no store writes, no
    # process start, imports or checkpoint load): the part sharing can change, without subtracting noisy runs
    model_part = {m: float(np.median(seg[m])) for m in MODES}
    model_speed = model_part["naive"] / model_part[pool]
    rows = []
    for m in MODES:
        f = fl[m]
        rows.append([m, fmt_s(tim[m].median), f"{fmt_s(tim[m].min)}–{fmt_s(tim[m].max)}",
                     f"{tim['naive'].median / tim[m].median:.2f}×", f"{f['pairs']} / {f['distinct_views']}",
                     f"{f['naive'] / 1e12:.1f}", f"{f['cached'] / 1e12:.1f}", f"{f['shared'] / 1e12:.1f}",
                     f"{fmt_s(model_part[m])} ({fmt_s(min(seg[m]))}–{fmt_s(max(seg[m]))})",
                     f"{model_part['naive'] / model_part[m]:.2f}×"])
    for name in (n for n in (NO_LISA, LOAD) if n in tim):
        rows.append([name, fmt_s(tim[name].median), f"{fmt_s(tim[name].min)}–{fmt_s(tim[name].max)}", "—", "—", "—",
                     "—", "—", "—", "—"])
    vs_cached_same = fl[pool]["cached"] / fl[pool]["shared"]
    miss = []
    if speed < TARGET:
        miss.append(
            f"Why it is missed: fixed costs every mode pays equally. (1) The same CLI run with the synthetic backend "
            f"(process start, imports, scene generation, correspondences, store writes; no torch) takes {fmt_s(base)}. "
            f"(2) Importing torch + transformers and loading the tiny checkpoint, timed in its own process less one "
            f"importing only the runner, takes {load}. The segment loop itself (images, the segmenter, masks; "
            f"timed inside each run, store writes excluded) takes {fmt_s(model_part['naive'])} of the naive "
            f"{fmt_s(tim['naive'].median)}, against {fmt_s(model_part[pool])} for shared + pool ({model_speed:.2f}× "
            f"on the part sharing can change). At tiny-LISA size the model's compute is small "
            "beside the import, so no engine change can reach 3× end to end here. At LISA-7B size the model FLOPs "
            f"dominate; the FLOP ratio naive/(shared + pool) of the drawn views is "
            f"{fl['naive']['naive'] / fl[pool]['shared']:.2f}×, but no 7B wall time was measured here."
        )
    vs_cached_perq = per_query["cached"] / fl[pool]["shared"]
    targets = [
        target(f"end-to-end Stage 1 through the CLI, tiny LISA, {queries} queries on {scenes} scene(s) "
               f"(≥ 10 per scene), naive / (shared + pool {POOL}) wall time", speed, TARGET, unit="×",
               fmt="{:.2f}"),
        target(f"the segment loop alone (timed inside each run: no process start, imports, checkpoint load or store "
               f"writes): naive / (shared + pool {POOL}); reported", model_speed, 1.0, unit="×",
               fmt="{:.2f}"),
        target(f"LISA-7B FLOPs encoders-cached (per-query sampling) / (shared + pool {POOL}), the drawn views; "
               "reported", vs_cached_perq, 1.0, unit="×", fmt="{:.2f}"),
        target(f"LISA-7B FLOPs encoders-cached / shared, both with pool {POOL} (the KV-prefix reuse alone); "
               "reported", vs_cached_same, 1.0, unit="×", fmt="{:.2f}"),
    ]
    notes = [
        f"`mllm3d pseudolabel --source synthetic:{scenes}:0 --backend lisa --checkpoint <tiny> --device cpu "
        f"--dtype float32 --decoding forced --views {VIEWS}`; naive adds `--set backend_config.shared_encodings"
        f"=false`, pooled adds `--set view_pool={POOL}` (k = {VIEWS} random views per query from a per-scene "
        f"pool of {POOL} of the 16 frames). One torch/BLAS thread; each run a fresh process and store (so "
        f"model load and store writes are in every time); modes alternate, {repeat} run(s) each.",
        "FLOP columns: LISA-7B component counts (bench 1) composed over the (query, view) pairs each run drew "
        "(read back from its store): naive = pairs·(clip + sam_encode + lm_full + sam_decode); encoders-cached = "
        "distinct views·(clip + sam_encode) + pairs·(lm_full + sam_decode); shared = distinct views·(clip + "
        "sam_encode + lm_prefix) + pairs·(lm_suffix + sam_decode).",
        "The pool's effect on accuracy is row (o) of the controlled benchmark (`mllm3d benchmark --variants f,o`; "
        "RESULTS.md), not measured here.",
    ]
    return report(
        name="stage1_e2e", title="Stage 1 end to end: naive vs shared vs shared + pooled views", notes=notes,
        tables=[{"title": "Wall time per run (s) and LISA-7B FLOPs (TFLOP) of the drawn views",
                 "columns": ["mode", "median", "range", "vs naive", "pairs / distinct views",
                             "naive TFLOP", "encoders-cached TFLOP", "shared TFLOP", "segment loop (in-run)",
                             "segment loop vs naive"], "rows": rows}],
        targets=targets, miss_analysis=miss,
        data={"segment_loop_s": seg,
              "timing": {m: t.as_dict() for m, t in tim.items()}, "flops": fl, "queries": queries,
              "scenes": scenes, "pool": POOL, "views": VIEWS},
        method=f"each mode run {repeat}× as a fresh CLI process, alternating; FLOPs counted, not timed",
    )


def main() -> None:
    """CLI: print the report dict as JSON."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    print(json.dumps(run(quick=args.quick), indent=1, default=str))


if __name__ == "__main__":
    main()
