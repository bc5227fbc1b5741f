"""Benchmark 1: Stage 1 (LISA) — shared encodings vs the naive per-(view, query) path.

(a) FLOPs of the real LISA-7B configuration (Llama-7B: hidden 4096, 32 layers, 32 heads, intermediate
    11008, vocab 32004; CLIP ViT-L/14 at 224; SAM ViT-H at 1024: embed 1280, depth 32, 16 heads, global
    attention in blocks 7/15/23/31), built on the *meta* device (no weights, no memory) and counted with
    ``torch.utils.flop_counter.FlopCounterMode``. Each component is counted once through the same
    ``LisaModel`` methods the engine calls — CLIP encode (+ projector), SAM encode, LM prefix (system
    prompt + image tokens, with KV cache), LM suffix of one query on that cache, LM full sequence (naive),
    SAM decode of one query (incl. ``text_hidden_fcs``) — and totals are composed:

        naive(V, Q)  = V·Q·(clip + sam_encode + lm_full + sam_decode)
        shared(V, Q) = V·(clip + sam_encode + lm_prefix) + V·Q·(lm_suffix + sam_decode)

    The composition is checked against FlopCounterMode wrapped around the engine's real ``segment`` calls
    on the tiny model (same formula, measured token counts, batch padding included). Token counts for
    LISA-7B are estimates for the LLaMA tokenizer (no tokenizer offline): prefix text 40 tokens (BOS +
    llava_v1 system prompt + ``USER: <im_start>``); suffix either a fixed 48 tokens, or — the realistic
    distribution — each real ScanRefer caption of the fixture file ``query_annotations/
    seqvlm_scanrefer_250.json`` as ceil(1.3 × words) tokens + 18 template tokens (``<im_end>``, ``\\n``,
    `` Please output segmentation mask.``, `` ASSISTANT:``, `` Sure, [SEG].``), with the engine's padding:
    the shared path runs a view's suffixes in batches of ``query_batch_size`` (16), each right-padded to
    its longest suffix, while the naive path runs each query at its own length. LM FLOPs as a function
    of the suffix length come from an exact fit ``a·tokens + c·tokens·keys`` to counts at 16/48/96 tokens.
(b) Wall time naive vs shared of a small random-weight LISA on this CPU (naive and shared runs
    interleaved, median of ≥ 7 after a warm-up, one thread by default), on queries of varied lengths,
    compared with the FLOP ratio FlopCounterMode predicts for the very same calls. Target: the measured
    speed-up within 30 % of the predicted one.

``run(quick) -> dict`` returns a report dict (bench/common.py format) with the raw numbers under
``data``: ``data["real"]`` = {config, components (FLOPs per call + token counts), totals [{views, queries,
naive_tflop, shared_tflop, ratio}], suffix_sensitivity, lm_fit, realistic {source, lengths, totals [...]}},
``data["tiny"]`` = {spec, views, queries, components,
flops_measured, flops_composed, composition_error, timing, flop_ratio, wall_ratio, deviation, loadavg}.
``python bench/bench_stage1_flops.py [--quick]`` prints the tables.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.stage1_flop_model import (  # noqa: E402
    COMPONENTS,
    FIT_SUFFIX_LENGTHS,
    PER_VIEW,
    SUFFIX_TEMPLATE_TOKENS,
    TOKENS_PER_WORD,
    RealConfig,
    real_flops,
)
from bench.stage1_tiny_wall import tiny_wall  # noqa: E402

TITLE = "Stage 1: naive vs encoders-cached vs shared LISA (FLOPs of LISA-7B, tiny-model wall time)"


def run(quick: bool = False, repeat: int = 7, threads: int = 1) -> dict[str, Any]:
    """Both parts as a report dict (bench/common.py format); raw numbers under ``data``."""
    from bench.common import report, target

    real = real_flops(RealConfig())
    tiny = tiny_wall(quick, repeat=repeat, views=1 if quick else 2, queries=4 if quick else 10, threads=threads)
    comp = real["components"]
    rl = real["realistic"]
    comp_rows = [[k, f"{comp[k] / 1e12:.3f}", "per view" if k in PER_VIEW else
                  ("per (view, query), naive only" if k == "lm_full" else "per (view, query)")]
                 for k in COMPONENTS]
    by_vq = {(r["views"], r["queries"]): r for r in rl.get("totals", [])}
    tot_rows = []
    for r in real["totals"]:
        row = [r["views"], r["queries"], f"{r['naive_tflop']:.1f}", f"{r['cached_tflop']:.1f}",
               f"{r['shared_tflop']:.1f}", f"{r['ratio']:.2f}×", f"{r['ratio_vs_cached']:.2f}×"]
        x = by_vq.get((r["views"], r["queries"]))
        row += ([f"{x['naive_tflop']:.1f}", f"{x['shared_tflop']:.1f}",
                 f"{x['ratio']:.2f}× ({x['ratio_min']:.2f}–{x['ratio_max']:.2f})",
                 f"{x['padding_share_of_shared'] * 100:.1f} %"] if x else ["n/a"] * 4)
        tot_rows.append(row)
    q10 = next(r["ratio"] for r in real["totals"] if r["queries"] == 10)
    q10_real = next((r["ratio"] for r in rl.get("totals", []) if r["queries"] == 10), float("nan"))
    t = tiny["timing"]
    wall_rows = [[name, f"{t[name]['median']:.3f}", f"{t[name]['min']:.3f}–{t[name]['max']:.3f}",
                  f"{tiny['flops_measured'][name] / 1e9:.2f}", f"{tiny['flops_composed'][name] / 1e9:.2f}"]
                 for name in ("naive", "cached", "shared")]
    fit = real["lm_fit"]
    if rl["available"]:
        st = rl["suffix_tokens"]
        realistic_note = (
            f"Realistic suffix lengths: {rl['source']}, each estimated as ceil({TOKENS_PER_WORD} × words) + "
            f"{SUFFIX_TEMPLATE_TOKENS} template tokens → mean {st['mean']:.1f}, median {st['median']:.0f}, "
            f"p90 {st['p90']:.0f}, range {st['min']}–{st['max']} tokens. Each scene's Q queries are drawn from "
            f"them ({rl['draws']} random scenes per (V, Q); ratio of the summed FLOPs, per-scene range in brackets); "
            f"the shared path pads each batch of {rl['query_batch']} suffixes (engine `query_batch_size` default) to "
            "its longest, the naive path runs each query at its own length; 'padding' = share of the shared FLOPs "
            "spent on pad tokens."
        )
    else:
        realistic_note = (f"Realistic suffix lengths: **not computed** — {rl['source']}; only the fixed-length "
                          "assumption is reported.")
    notes = [
        "FLOPs = `torch.utils.flop_counter.FlopCounterMode` (2 per multiply-add; matmul/conv/attention only; "
        "softmax, norms, interpolation not counted).",
        "(a) LISA-7B built on the meta device; each component counted once and the totals composed "
        "(naive = V·Q·(clip + sam_encode + lm_full + sam_decode); encoders-cached = V·(clip + sam_encode) + "
        "V·Q·(lm_full + sam_decode), the CLIP/SAM encodings cached per view as LISA's own training forward does, "
        "run by `LisaEngine.segment(mode=\"cached\")`; shared = V·(clip + sam_encode + lm_prefix) "
        "+ V·Q·(lm_suffix + sam_decode)). Prompt lengths are LLaMA-tokenizer estimates (no tokenizer for the "
        f"real checkpoint offline): prefix {comp['prefix_tokens']} tokens ({real['config']['prefix_text_tokens']} "
        f"text + {comp['image_tokens']} image); fixed-length columns: suffix {comp['suffix_tokens']} tokens for "
        "every query. Forced decoding (the default) needs no lm_head; `generate` adds per-token decoding steps "
        "to both paths.",
        realistic_note,
        f"LM FLOPs vs suffix length s: counted at s = {', '.join(map(str, FIT_SUFFIX_LENGTHS))} and fitted by "
        f"a·tokens + c·tokens·keys (a = {fit['a_per_token'] / 1e9:.2f} GFLOP/token, c = "
        f"{fit['c_per_token_key'] / 1e6:.2f} MFLOP per token·key); max relative residual "
        f"{fit['max_rel_residual']:.1e} (exact up to rounding).",
        f"Composition checked on the small model: composed (per-query suffix lengths, batch padding) vs "
        f"FlopCounterMode around the engine's real calls differ by {tiny['composition_error'] * 100:.4f} % (max "
        "over naive/shared; the shared path computes SAM's dense positional encoding once per batched decode "
        "instead of once per query).",
        f"(b) small random LISA on CPU ({tiny['threads']} thread(s)), V={tiny['views']} views × "
        f"Q={tiny['queries']} queries ({tiny['texts_from']}; suffixes {min(tiny['suffix_lengths'])}–"
        f"{max(tiny['suffix_lengths'])} tokens of its tokenizer, one padded batch of ≤ {tiny['query_batch']}), "
        f"colour 120×160; naive, encoders-cached and shared runs interleaved (order alternating), median of {tiny['repeat']} each "
        f"after 1 warm-up; spec {tiny['spec']}; 1-min load average {tiny['loadavg'][0]:.1f} → "
        f"{tiny['loadavg'][1]:.1f} (the CPU is shared: timings are noisy).",
        "Real-size speed-up depends on the query length (suffix): Q=10 → "
        + ", ".join(f"{s['ratio_q10']:.2f}× at {s['suffix_tokens']} tokens" for s in real["suffix_sensitivity"])
        + ".",
    ]
    targets = [
        target(f"LISA-7B FLOPs naive/shared at Q=10 queries per scene, fixed {comp['suffix_tokens']}-token suffix",
               q10, 5.0, unit="×", fmt="{:.2f}"),
    ]
    if rl["available"]:
        targets.append(target("LISA-7B FLOPs naive/shared at Q=10, ScanRefer caption lengths with batch padding",
                              q10_real, 5.0, unit="×", fmt="{:.2f}"))
    q10_cached = next(r["ratio_vs_cached"] for r in real["totals"] if r["queries"] == 10)
    targets.append(target(f"LISA-7B FLOPs encoders-cached/shared at Q=10 (the KV-prefix reuse alone), fixed "
                          f"{comp['suffix_tokens']}-token suffix; reported, the 5× target is against naive",
                          q10_cached, 1.0, unit="×", fmt="{:.2f}"))
    tcached = tiny["timing"]["cached"]["median"] / tiny["timing"]["shared"]["median"]
    targets.append(target("small model on CPU: wall time encoders-cached/shared (same run, interleaved); reported",
                          tcached, 1.0, unit="×", fmt="{:.2f}"))
    targets.append(target("small-model wall-time speed-up within 30 % of its FLOP ratio", tiny["deviation"], 0.30,
                          higher_is_better=False, fmt="{:.1%}"))
    tables = [
        {"title": "LISA-7B component FLOPs (TFLOP, one call, fixed-length suffix)",
         "columns": ["component", "TFLOP", "counted"], "rows": comp_rows},
        {"title": "LISA-7B totals (TFLOP): fixed-length suffix vs ScanRefer caption lengths",
         "columns": ["views V", "queries Q", f"naive ({comp['suffix_tokens']} tok)",
                     f"encoders-cached ({comp['suffix_tokens']} tok)",
                     f"shared ({comp['suffix_tokens']} tok)", f"naive/shared ({comp['suffix_tokens']} tok)",
                     f"cached/shared ({comp['suffix_tokens']} tok)",
                     "naive (captions)", "shared (captions)", "naive/shared (captions; per-scene range)",
                     "padding share (captions)"],
         "rows": tot_rows},
        {"title": f"Small model on CPU: wall time (s) and FLOPs (GFLOP) per scene, median of {tiny['repeat']}",
         "columns": ["path", "median s", "range s", "GFLOP (measured)", "GFLOP (composed)"], "rows": wall_rows},
        {"title": "Small model: speed-up", "columns": ["FLOP ratio", "wall-time ratio", "deviation"],
         "rows": [[f"{tiny['flop_ratio']:.2f}×", f"{tiny['wall_ratio']:.2f}×", f"{tiny['deviation']:.1%}"]]},
    ]
    miss: list[str] = []
    profile = None
    if tiny["deviation"] >= 0.30:
        miss.append(
            f"The small model's wall-time ratio ({tiny['wall_ratio']:.2f}×) is off its FLOP ratio "
            f"({tiny['flop_ratio']:.2f}×) by {tiny['deviation']:.0%}. Per scene, the FLOP-free share of the time "
            f"(profile below: everything outside matmul/conv/attention kernels — Python, tokenisation, "
            f"pre/post-processing, small-kernel dispatch) is what FlopCounterMode cannot see; at this model size it "
            "is a larger part of one path than the other, and a loaded shared CPU adds noise to both."
        )
        profile = tiny.get("profile")
    return report("stage1_flops", TITLE, notes=notes, tables=tables, targets=targets,
                  data={"real": real, "tiny": tiny}, miss_analysis=miss, profile=profile,
                  method="FLOPs are counts (no timing); small-model naive/shared wall times interleaved")


def _print(rep: dict[str, Any]) -> None:
    print(f"== {rep['title']}")
    for note in rep["notes"]:
        print(" -", note)
    for tab in rep["tables"]:
        print(f"\n{tab['title']}")
        widths = [max(len(str(x)) for x in col) for col in zip(tab["columns"], *tab["rows"], strict=False)]
        for row in [tab["columns"], *tab["rows"]]:
            print("  " + "  ".join(str(x).rjust(w) for x, w in zip(row, widths, strict=True)))
    print()
    for tg in rep["targets"]:
        print(f"target: {tg['claim']}: {tg['measured_text']} (target {tg['target_text']}) -> {tg['margin_text']}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny default model, V=1, Q=4")
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    t0 = time.perf_counter()
    _print(run(quick=args.quick, repeat=args.repeat, threads=args.threads))
    print(f"({time.perf_counter() - t0:.1f} s)")


if __name__ == "__main__":
    main()
