"""Report pieces (tables, targets, notes, miss analysis) of the Stage 2 step-cost measurements of
:mod:`bench.stage2_step_cost`: the scaling grid, its growth verdict and the network-share verdict."""

from __future__ import annotations

from typing import Any

from bench.common import target
from bench.stage2_step_cost import SCALING_COLUMNS, growth_ratios, scaling_rows


def scaling_section(cells: list[dict[str, Any]], cost: dict[str, Any], share_cell: tuple[int, int], repeat: int,
                    growth_threshold: float, share_threshold: float, model: str,
                    config: str = "default config") -> dict[str, Any]:
    """{"tables", "targets", "notes", "miss", "profile"} of the grid ``cells`` and the split ``cost``;
    ``model`` and ``config`` name the network and the config in titles and claims."""
    ratios = growth_ratios(cells)
    pts = sorted({c["points"] for c in cells})
    targets: list[dict[str, Any]] = []
    miss: list[str] = []
    if ratios:
        worst = max(ratios, key=lambda q: ratios[q]["ratio"])
        r = ratios[worst]
        tg = target(
            f"step time grows at most linearly with points: step-time growth / point growth from {pts[0]:,} to "
            f"{pts[-1]:,} points per scene, the worst of {sorted(ratios)} queries per item ({worst})",
            r["ratio"], growth_threshold, higher_is_better=False, fmt="{:.2f}")
        tg["target_text"] = f"≤ {growth_threshold:.2f}"
        if r["ratio"] <= growth_threshold and not tg["met"]:  # equality meets "at most"
            tg["met"], tg["margin_text"] = True, "met, 1.00× the target"
        targets.append(tg)
        if not tg["met"]:
            miss.append(f"{tg['claim']}: missed: the step grew {r['step_growth']:.2f}× for {r['point_growth']:.2f}× "
                        f"the points while the voxels grew {r['voxel_growth']:.2f}× (columns 'rest' and 'network' "
                        "of the scaling table say which part grew).")
    share = cost.get("split_share", float("nan"))
    n_pts, n_q = cost.get("split_cell", (share_cell[0], share_cell[1]))
    tg = target(f"U-Net + heads (forward + backward) share of the training step, {n_pts:,} points × {n_q} queries "
                f"per item, {config}", share, share_threshold, fmt="{:.0%}")
    targets.append(tg)
    profile = None
    if not tg["met"] and cost.get("split_rows"):
        biggest = max((row for row in cost["split_rows"][:-1] if not row[0].startswith("U-Net")),
                      key=lambda row: float(row[2].rstrip(" %")))
        miss.append(f"{tg['claim']}: missed: the largest part outside the network is '{biggest[0]}' with "
                    f"{biggest[1]} ({biggest[2]} of the step); the op profile below (torch.profiler, one step, "
                    "self CPU time) names the operators.")
        profile = f"torch.profiler of one training step ({n_pts:,} points × {n_q} queries):\n" + cost["op_profile"]
    growth_rows = [[q, f"{r['point_growth']:.2f}×", f"{r['voxel_growth']:.2f}×", f"{r['step_growth']:.2f}×",
                    f"{r['ratio']:.2f}"] for q, r in sorted(ratios.items())]
    tables = [
        {"title": f"Step time vs points per scene and queries per item (one item per batch, {model}; medians of "
                  f"{repeat} interleaved repetitions after 1 warm-up, range in brackets)",
         "columns": SCALING_COLUMNS, "rows": scaling_rows(cells)},
        {"title": f"Growth from {pts[0]:,} to {pts[-1]:,} points (ratio ≤ 1: at most linear)",
         "columns": ["queries per item", "points", "voxels", "step time", "step growth / point growth"],
         "rows": growth_rows},
    ]
    if cost.get("split_rows"):
        tables.append({"title": f"Where one training step goes, {n_pts:,} points × {n_q} queries per item "
                                f"(medians of {repeat} interleaved repetitions; backward parts are differences)",
                       "columns": ["part", "median", "share of the step"], "rows": cost["split_rows"]})
    stores = ", ".join(f"{c['store']['requested_points']:,} → {c['points']:,} points "
                       f"({c['store']['scenes']} scene{'s' if c['store']['scenes'] != 1 else ''}, "
                       f"{c['store']['seconds']:.1f} s)" for c in cells if c["queries_per_item"] == cells[0]["queries_per_item"])
    notes = [
        "Scaling grid: one synthetic store per point count (Stage 1, synthetic backend, configs/stage1/synthetic.yaml, "
        f"32 queries per scene; requested → measured points of the timed scene: {stores}). For each queries-per-item "
        "count one dataset item (the first of the store's first scene) is built and collated once in the bench "
        "process, then on that same batch a training step (`Stage2Module.model_step` + backward + optimizer step, "
        "no trainer) and the network alone (`Stage2Net.forward`: U-Net, semantic and local heads, + backward from "
        "fixed output gradients) run interleaved. Network share = network / step; 'rest' = step − network "
        "(query projection, logit gathers, fusion targets, losses and their backward, optimizer step).",
        "Item build + collate is one timing of building the batch (not part of the step; the scene decode excluded); "
        "training threads as the config sets them; the cosine LR schedule is off in this harness (it needs a "
        "trainer; its cost is one scalar update per step). In the split table the backward parts are differences "
        "of medians, so a small part can come out slightly negative from timing noise.",
    ]
    return {"tables": tables, "targets": targets, "notes": notes, "miss": miss, "profile": profile}
