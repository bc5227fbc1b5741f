"""Benchmark 5: scale on paper — Stage 1 GPU-hours and store size for ScanNet, from this run's measurements.

Inputs measured in the same run (never constants):
- Stage 1 FLOPs of the real LISA-7B configuration, naive vs shared, on a (V views, Q queries) grid
  (bench/bench_stage1_flops.py). They are fitted by the cost model the engine implies:
  ``naive(V,Q) = n·V·Q`` (everything per (view, query)) and ``shared(V,Q) = e·V + s·V·Q``
  (encoders + LM prefix once per view; query suffix + SAM decoder per (view, query)); the fit residual is reported.
- Store bytes per (query, view) and per query group, and the scene group's bytes per point / per view,
  from bench/bench_store.py on the real ScanNet fixture (640×480 masks).

Assumptions (stated in the output): ScanNet train = 1201 scenes; ~1,650 frames per scan on average
(2.5 M frames / 1513 scans) → ~83 frames per scene at every 20th frame; a mean mesh of 150k points per scene
(ScanNet's vh_clean_2 meshes have 50k–500k); sustained bf16 throughput = 40 % of dense peak (A100 312 TFLOP/s, H100 SXM 989 TFLOP/s).
Settings: {k = 4 random views per query from a pool of every 20th frame, the same from a pool of all ~1650
frames, k = 4 views shared by a scene's queries, every 20th frame per query} × {Intent3D ~43, ScanRefer ~64
queries/scene}; the frame pool is a column of every table.

Inputs come from this run's ``stage1_flops`` and ``store`` reports (passed by run_all). If one of them is
missing (``--only scale``) or failed in this run, this benchmark re-runs it itself and says so in its notes
and on stderr.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import traceback
from pathlib import Path
from typing import Any

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import fmt_bytes, report  # noqa: E402

SCANNET_TRAIN_SCENES = 1201
SCANNET_FRAMES = 2_500_000
SCANNET_SCANS = 1513
FRAME_STEP = 20
MESH_POINTS = 150_000
VIEWS_PER_QUERY = 4
QUERY_SETS = {"Intent3D (~43 queries/scene)": 43, "ScanRefer (~64 queries/scene)": 64}
UTILISATION = 0.40
GPUS = {"A100 (312 TFLOP/s bf16 dense)": 312e12, "H100 SXM (989 TFLOP/s bf16 dense)": 989e12}

_VIEW_KEYS = ("V", "v", "views", "num_views", "n_views")
_QUERY_KEYS = ("Q", "q", "queries", "num_queries", "n_queries")
_VQ_RE = re.compile(r"[Vv](?:iews)?\s*[=_:]?\s*(\d+)\D+[Qq](?:ueries)?\s*[=_:]?\s*(\d+)")


# ------------------------------------------------------------------------------------- FLOP grid
def _num(x: Any) -> float | None:
    if isinstance(x, bool):
        return None
    if isinstance(x, (int, float, np.integer, np.floating)):
        return float(x)
    if isinstance(x, dict):  # e.g. {"total": ..., "by_module": ...}
        for k in ("total", "flops", "total_flops"):
            if k in x:
                return _num(x[k])
    return None


_UNITS = {"_pflop": 1e15, "_tflop": 1e12, "_gflop": 1e9, "_mflop": 1e6}


def _scaled(key: str, value: Any) -> float | None:
    """A FLOP value in FLOPs, honouring a unit suffix in its key (``naive_tflop`` -> × 1e12)."""
    x = _num(value)
    if x is None:
        return None
    for suffix, scale in _UNITS.items():
        if key.endswith(suffix) or key.endswith(suffix + "s"):
            return x * scale
    return x


def _naive_shared(node: dict[str, Any]) -> tuple[float | None, float | None]:
    naive = shared = None
    for k, v in node.items():
        lk = str(k).lower()
        if "naive" in lk and "ratio" not in lk and naive is None:
            naive = _scaled(lk, v)
        elif "shared" in lk and "ratio" not in lk and shared is None:
            shared = _scaled(lk, v)
    return naive, shared


def extract_flop_grid(raw: Any, path: str = "") -> list[dict[str, float]]:
    """Every (V, Q, naive FLOPs, shared FLOPs) entry found in the FLOP script's dict (any nesting)."""
    found: list[dict[str, float]] = []
    if isinstance(raw, dict):
        naive, shared = _naive_shared(raw)
        v = next((_num(raw[k]) for k in _VIEW_KEYS if k in raw), None)
        q = next((_num(raw[k]) for k in _QUERY_KEYS if k in raw), None)
        if (v is None or q is None) and (m := _VQ_RE.search(path.split("/")[-1] if path else "")):
            v, q = float(m.group(1)), float(m.group(2))
        if naive is not None and shared is not None and v is not None and q is not None:
            found.append({"V": v, "Q": q, "naive": naive, "shared": shared})
        else:
            for k, val in raw.items():
                found += extract_flop_grid(val, f"{path}/{k}")
    elif isinstance(raw, (list, tuple)):
        for i, val in enumerate(raw):
            found += extract_flop_grid(val, f"{path}[{i}]")
    uniq = {(g["V"], g["Q"]): g for g in found}
    return [uniq[k] for k in sorted(uniq)]


def fit_cost_model(grid: list[dict[str, float]]) -> dict[str, float]:
    """Least-squares fit of naive = n·V·Q and shared = e·V + s·V·Q; max relative residuals."""
    v = np.array([g["V"] for g in grid])
    q = np.array([g["Q"] for g in grid])
    naive = np.array([g["naive"] for g in grid])
    shared = np.array([g["shared"] for g in grid])
    n = float(np.sum(naive * v * q) / np.sum((v * q) ** 2))
    a = np.stack([v, v * q], axis=1)
    (e, s), *_ = np.linalg.lstsq(a, shared, rcond=None)
    res_naive = float(np.max(np.abs(n * v * q - naive) / naive))
    res_shared = float(np.max(np.abs(a @ np.array([e, s]) - shared) / shared))
    return {"naive_per_pair": n, "shared_per_view": float(e), "shared_per_pair": float(s),
            "max_rel_residual_naive": res_naive, "max_rel_residual_shared": res_shared, "grid_points": len(grid)}


# ------------------------------------------------------------------------------------- projection
def _ratio(x: float) -> str:
    return f"{x:.0f}×" if x >= 10 else f"{x:.2g}×"


def _hours(h: float) -> str:
    return f"{h:.1f}" if h < 10 else f"{h:,.0f}"


def expected_distinct_views(frames: int, k: int, queries: int) -> float:
    """Expected number of distinct frames when each of ``queries`` draws ``k`` of ``frames`` without replacement."""
    return frames * (1.0 - (1.0 - k / frames) ** queries)


def _dep_state(deps: dict[str, Any], name: str) -> str:
    rep = deps.get(name)
    if rep is None:
        return "not run in this run"
    status = rep.get("status", "ok")
    return "ok" if status == "ok" else f"{status} in this run"


def _deps(deps: dict[str, Any] | None, quick: bool) -> tuple[dict[str, Any] | None, dict[str, Any] | None, list[str]]:
    """(FLOP raw dict, store data) from this run's other benchmarks; a missing or failed one is re-run here,
    which the returned notes (and stderr) say explicitly."""
    notes = []
    deps = deps or {}
    state_f, state_s = _dep_state(deps, "stage1_flops"), _dep_state(deps, "store")
    flops = deps["stage1_flops"].get("data") if state_f == "ok" else None
    store = deps["store"].get("data") if state_s == "ok" else None
    if flops is not None:
        notes.append("FLOPs: from this run's stage1_flops report.")
    else:
        msg = f"stage1_flops was {state_f} → **re-run by bench_scale** ({'quick' if quick else 'full'} mode)"
        print(f"[bench] scale: {msg}", file=sys.stderr, flush=True)
        try:
            from bench import bench_stage1_flops

            raw = bench_stage1_flops.run(quick=quick)
            flops = raw.get("data", raw) if isinstance(raw, dict) and "tables" in raw else raw
            notes.append(f"FLOPs: {msg}; the re-run succeeded.")
        except Exception as exc:  # noqa: BLE001 - reported; the projection says it is missing
            notes.append(f"FLOPs: {msg}; the re-run **failed** too (`{type(exc).__name__}: {exc}`).")
            traceback.print_exc()
    if store is not None and "scannet" in store:
        notes.append("Store sizes: from this run's store report.")
    else:
        why = state_s if store is None else "ok but without ScanNet-fixture sizes"
        msg = f"store was {why} → **re-run by bench_scale** ({'quick' if quick else 'full'} mode)"
        print(f"[bench] scale: {msg}", file=sys.stderr, flush=True)
        try:
            from bench import bench_store

            store = bench_store.run(quick=quick)["data"]
            notes.append(f"Store sizes: {msg}; the re-run succeeded.")
        except Exception as exc:  # noqa: BLE001
            notes.append(f"Store sizes: {msg}; the re-run **failed** too (`{type(exc).__name__}: {exc}`).")
            traceback.print_exc()
    return flops, store, notes


def flop_grids(flops_raw: Any) -> tuple[list[dict[str, float]], list[dict[str, float]]]:
    """(fixed-suffix grid, ScanRefer-caption-length grid) from benchmark 1's raw dict."""
    real = flops_raw.get("real", flops_raw) if isinstance(flops_raw, dict) else flops_raw  # the LISA-7B part
    if real is None:
        return [], []
    if isinstance(real, dict):
        fixed = extract_flop_grid({k: v for k, v in real.items() if k != "realistic"})
        realistic = extract_flop_grid((real.get("realistic") or {}).get("totals", []))
        return fixed, realistic
    return extract_flop_grid(real), []


def run(quick: bool = False, deps: dict[str, Any] | None = None) -> dict:
    """Project Stage 1 GPU-hours and store size for ScanNet; the report dict (see bench.common)."""
    flops_raw, store, notes = _deps(deps, quick)
    frames = int(round(SCANNET_FRAMES / SCANNET_SCANS / FRAME_STEP))
    all_frames = int(round(SCANNET_FRAMES / SCANNET_SCANS))
    pool_step = f"every {FRAME_STEP}th frame (~{frames})"
    pool_all = f"all frames (~{all_frames:,})"
    # (views per query, frame pool, pool size, views per query, distinct views per scene as a function of Q)
    view_settings: list[tuple[str, str, int, int, Any]] = [
        (f"k={VIEWS_PER_QUERY} random per query", pool_step, frames, VIEWS_PER_QUERY,
         lambda nq: expected_distinct_views(frames, VIEWS_PER_QUERY, nq)),
        (f"k={VIEWS_PER_QUERY} random per query", pool_all, all_frames, VIEWS_PER_QUERY,
         lambda nq: expected_distinct_views(all_frames, VIEWS_PER_QUERY, nq)),
        (f"k={VIEWS_PER_QUERY} per scene, shared by all its queries (design alternative)", pool_step, frames,
         VIEWS_PER_QUERY, lambda nq: float(VIEWS_PER_QUERY)),
        (f"all of the pool (~{frames} views/query)", pool_step, frames, frames, lambda nq: float(frames)),
    ]
    notes.append(
        f"ScanNet train: {SCANNET_TRAIN_SCENES} scenes; assumed ~{all_frames:,} frames per scan "
        f"(2.5 M / 1513) → {frames} frames per scene at every {FRAME_STEP}th frame. The frame pool the views are "
        f"drawn from is a column of each table: with k={VIEWS_PER_QUERY} views per query drawn independently per "
        "query from a pool of F frames, the shared engine encodes each distinct drawn frame once (expected "
        f"distinct frames = F·(1 − (1 − k/F)^Q)); from the all-frames pool (F ≈ {all_frames:,}) almost every "
        "query's views are distinct, so little is shared across queries. The 'shared by all' row is the "
        "alternative where a scene's queries all use the same k frames (what benchmark 1's V×Q grid measures)."
    )
    data: dict[str, Any] = {"frames_per_scene": frames, "all_frames_per_scene": all_frames, "assumptions": {
        "scenes": SCANNET_TRAIN_SCENES, "frames_per_scene": frames, "all_frames_per_scene": all_frames,
        "mesh_points": MESH_POINTS, "utilisation": UTILISATION, "gpus": GPUS}}
    tables = []

    # ---- GPU hours
    fixed_grid, real_grid = flop_grids(flops_raw)
    grid, grid_label = ((real_grid, "ScanRefer caption-length suffixes with batch padding") if len(real_grid) >= 2
                        else (fixed_grid, "the fixed-length suffix (caption lengths unavailable)"))
    if len(grid) >= 2:
        fit = fit_cost_model(grid)
        data["flop_fit"] = fit
        data["flop_grid"] = grid_label
        notes.append(
            f"FLOP cost model fitted to the {fit['grid_points']} (V, Q) points of benchmark 1 (LISA-7B, real config, "
            f"meta-device count, {grid_label}): naive {fit['naive_per_pair'] / 1e12:.2f} TFLOP per (query, view); "
            f"shared {fit['shared_per_view'] / 1e12:.2f} TFLOP per view + {fit['shared_per_pair'] / 1e12:.3f} TFLOP per "
            f"(query, view); max relative residual {fit['max_rel_residual_naive'] * 100:.1f} % (naive), "
            f"{fit['max_rel_residual_shared'] * 100:.1f} % (shared; batch padding grows with Q, which the linear "
            "model only approximates)."
        )
        notes.append(
            f"GPU-hours = FLOPs / ({UTILISATION:.0%} × dense bf16 peak) — an assumption, not a measurement; "
            "it ignores data loading, host overhead and padding beyond what the FLOP count includes."
        )
        rows = []
        for vlabel, plabel, _pool, vq, distinct_fn in view_settings:
            for qlabel, nq in QUERY_SETS.items():
                pairs = nq * vq
                distinct = distinct_fn(nq)
                naive = SCANNET_TRAIN_SCENES * fit["naive_per_pair"] * pairs
                shared = SCANNET_TRAIN_SCENES * (fit["shared_per_view"] * distinct + fit["shared_per_pair"] * pairs)
                row = [vlabel, plabel, qlabel, f"{distinct:.0f}", f"{naive / 1e18:,.1f}", f"{shared / 1e18:,.1f}",
                       f"{naive / shared:.1f}×"]
                for peak in GPUS.values():
                    rate = peak * UTILISATION * 3600
                    row.append(f"{_hours(naive / rate)} / {_hours(shared / rate)}")
                rows.append(row)
                data.setdefault("gpu", []).append({"views": vlabel, "pool": plabel, "queries": qlabel,
                                                   "naive_flops": naive, "shared_flops": shared,
                                                   "distinct_views": distinct})
        tables.append({
            "title": f"Stage 1 compute for ScanNet train ({SCANNET_TRAIN_SCENES} scenes), LISA-7B",
            "columns": ["views per query", "frame pool", "queries", "distinct views/scene", "naive EFLOP",
                        "shared EFLOP", "naive/shared", *[f"GPU-h {g.split(' (')[0]} naive / shared" for g in GPUS]],
            "rows": rows,
        })
    else:
        notes.append("GPU-hours: **not projected** — no (V, Q) naive/shared FLOP grid from benchmark 1 in this run.")

    # ---- store size
    sc = (store or {}).get("scannet")
    geo = (store or {}).get("scene_geometry")
    if sc and geo:
        per_view = sc["mask_bytes_per_view"] + sc.get("embedding_bytes_per_view", 0.0)
        per_group = sc.get("group_fixed_bytes", (sc["group_bytes_per_view"] - per_view) * VIEWS_PER_QUERY)
        pairs_per_view = geo["visible_fraction"] * MESH_POINTS

        def scene_bytes_for(pool: int) -> float:
            """Scene group bytes when correspondences and thumbnails are stored for ``pool`` frames."""
            return (geo["per_point"] * MESH_POINTS
                    + pool * (pairs_per_view * geo["per_visible_pair"] + geo["thumbnail_per_view"]) + geo["other"])

        scene_bytes = scene_bytes_for(frames)
        notes.append(
            f"Store: {fmt_bytes(per_view)} per (query, view) (mask + [SEG] embedding) + {fmt_bytes(per_group)} fixed per "
            f"query group (metadata, scores), measured on the ScanNet fixture's 640×480 object-region masks; scene group "
            f"= {geo['per_point']:.1f} B/point × {MESH_POINTS:,} points + per frame of the pool "
            f"({geo['visible_fraction'] * 100:.1f} % of points visible × {geo['per_visible_pair']:.2f} B/pair + a "
            f"{fmt_bytes(geo['thumbnail_per_view'])} thumbnail) = {fmt_bytes(scene_bytes)} per scene for a pool of "
            f"{frames} frames, {fmt_bytes(scene_bytes_for(all_frames))} for all {all_frames:,}. The visible share comes "
            "from the fixture, whose cloud was back-projected from the same 19 views, so it overstates what one view "
            "sees of a full scan (an upper bound). Optional image features (off by default) are not included."
        )
        rows = []
        for vlabel, plabel, pool, vq, _ in view_settings:
            if "shared by all" in vlabel:  # same bytes as k random views per query
                continue
            sb = scene_bytes_for(pool)
            for qlabel, nq in QUERY_SETS.items():
                q_bytes = nq * (per_group + vq * per_view)
                total = SCANNET_TRAIN_SCENES * (sb + q_bytes)
                raw = SCANNET_TRAIN_SCENES * nq * vq * sc["raw_uint8_per_view"]
                rows.append([vlabel, plabel, qlabel, fmt_bytes(sb), fmt_bytes(q_bytes), fmt_bytes(total),
                             fmt_bytes(raw), _ratio(raw / total)])
                data.setdefault("store", []).append({"views": vlabel, "pool": plabel, "queries": qlabel,
                                                     "total_bytes": total, "raw_mask_bytes": raw})
        tables.append({
            "title": f"Pseudo-label store for ScanNet train ({SCANNET_TRAIN_SCENES} scenes)",
            "columns": ["views per query", "frame pool (correspondences stored)", "queries", "scene group",
                        "query groups / scene", "store total", "raw uint8 masks alone", "raw / store"],
            "rows": rows,
        })
    else:
        notes.append("Store size: **not projected** — benchmark 3 produced no ScanNet-fixture sizes in this run.")
    return report(name="scale", title="Scale on paper", notes=notes, tables=tables, targets=[], data=data)


def main() -> None:
    """CLI: print the report dict as JSON (runs the FLOP and store benchmarks it needs)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    print(json.dumps(run(quick=args.quick), indent=1, default=str))


if __name__ == "__main__":
    main()
