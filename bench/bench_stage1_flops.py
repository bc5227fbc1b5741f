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
import json
import math
import os
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mllm3d.stage1_pseudolabel.lisa.model import LisaArch, LisaModel, llama_config_from_lisa  # noqa: E402
from mllm3d.stage1_pseudolabel.lisa.sam_shim import SamSpec  # noqa: E402

TITLE = "Stage 1: naive vs encoders-cached vs shared LISA (FLOPs of LISA-7B, tiny-model wall time)"
COMPONENTS = ("clip", "sam_encode", "lm_prefix", "lm_suffix", "lm_full", "sam_decode")
PER_VIEW = ("clip", "sam_encode", "lm_prefix")
PER_QUERY_SHARED = ("lm_suffix", "sam_decode")
PER_QUERY_NAIVE = ("clip", "sam_encode", "lm_full", "sam_decode")
PER_VIEW_CACHED = ("clip", "sam_encode")  # encoders-cached: CLIP + SAM once per view ...
PER_QUERY_CACHED = ("lm_full", "sam_decode")  # ... and every query's full prompt through the LM
SCANREFER_CAPTIONS = Path("query_annotations") / "seqvlm_scanrefer_250.json"
TOKENS_PER_WORD = 1.3
# LLaMA-tokenizer estimate of the suffix around the query: "<im_end>" (1, an added token) + "\n" (1)
# + " Please output segmentation mask." (6) + " ASSISTANT:" (5) + " Sure, [SEG]." (5)
SUFFIX_TEMPLATE_TOKENS = 18
ENGINE_QUERY_BATCH = 16  # LisaConfig.query_batch_size default: suffixes of a view padded per batch of 16
FIT_SUFFIX_LENGTHS = (16, 48, 96)
REALISTIC_DRAWS = 400


@dataclass
class RealConfig:
    """LISA-7B-v1 as released (Llama-7B + CLIP ViT-L/14-224 + SAM ViT-H) and prompt-length estimates."""

    hidden_size: int = 4096
    intermediate_size: int = 11008
    num_hidden_layers: int = 32
    num_attention_heads: int = 32
    vocab_size: int = 32004
    clip_hidden: int = 1024
    clip_intermediate: int = 4096
    clip_layers: int = 24
    clip_heads: int = 16
    clip_image_size: int = 224
    clip_patch_size: int = 14
    prefix_text_tokens: int = 40
    suffix_tokens: int = 48


def _flops(fn) -> tuple[int, Any]:
    with FlopCounterMode(display=False) as fc:
        out = fn()
    return int(fc.get_total_flops()), out


def build_meta_lisa(rc: RealConfig) -> LisaModel:
    """The full LISA-7B architecture on the meta device (shapes only)."""
    from transformers import CLIPVisionConfig, CLIPVisionModel

    llama = llama_config_from_lisa({
        "hidden_size": rc.hidden_size, "intermediate_size": rc.intermediate_size,
        "num_hidden_layers": rc.num_hidden_layers, "num_attention_heads": rc.num_attention_heads,
        "vocab_size": rc.vocab_size,
    })
    clip_cfg = CLIPVisionConfig(hidden_size=rc.clip_hidden, intermediate_size=rc.clip_intermediate,
                                num_hidden_layers=rc.clip_layers, num_attention_heads=rc.clip_heads,
                                image_size=rc.clip_image_size, patch_size=rc.clip_patch_size)
    with torch.device("meta"):
        tower = CLIPVisionModel(clip_cfg).eval()
        model = LisaModel(LisaArch(llama=llama, mm_hidden_size=rc.clip_hidden, out_dim=256, sam=SamSpec()),
                          vision_tower=tower).eval()
    return model


@torch.inference_mode()
def lm_flops(model: LisaModel, prefix_tokens: int, suffix_tokens: int, device: str | torch.device = "meta",
             kv: list | None = None) -> tuple[int, int]:
    """(lm_suffix, lm_full) FLOPs of one query whose suffix has ``suffix_tokens`` tokens after a prefix of
    ``prefix_tokens`` (the suffix on the prefix's KV cache; the naive path's whole sequence)."""
    from transformers import DynamicCache

    h = model.arch.llama.hidden_size
    dt = model.dtype
    p, s = prefix_tokens, suffix_tokens
    if kv is None:
        pre = model.decoder(torch.zeros(1, p, h, device=device, dtype=dt), use_cache=True)
        kv = [(layer.keys, layer.values) for layer in pre.cache.layers]

    def suffix():
        cache = DynamicCache(ddp_cache_data=kv, config=model.lm.config)
        return model.decoder(torch.zeros(1, s, h, device=device, dtype=dt), cache=cache,
                             attention_mask=torch.ones(1, p + s, dtype=torch.bool, device=device),
                             position_ids=(p + torch.arange(s, device=device)).unsqueeze(0),
                             output_attentions=True)

    suffix_f, _ = _flops(suffix)
    full_f, _ = _flops(lambda: model.decoder(  # an all-ones mask: same FLOPs, no data-dependent check
        torch.zeros(1, p + s, h, device=device, dtype=dt), output_attentions=True,
        attention_mask=torch.ones(1, p + s, dtype=torch.bool, device=device)))
    return suffix_f, full_f


@torch.inference_mode()
def component_flops(model: LisaModel, prefix_text_tokens: int, suffix_tokens: int,
                    device: str | torch.device = "meta", extra_suffix: tuple[int, ...] = ()) -> dict[str, Any]:
    """FLOPs of each component for one view / one query, via the LisaModel methods the engine uses.

    ``extra_suffix``: also count (lm_suffix, lm_full) at these suffix lengths (``c["lm_by_suffix"]``) and fit
    ``c["lm_fit"]`` (see :func:`fit_lm`) to all of them.
    """
    h = model.arch.llama.hidden_size
    clip_size = model.vision_tower.config.image_size
    sam_size = model.arch.sam.image_size
    dt = model.dtype
    c: dict[str, Any] = {}
    c["clip"], img = _flops(lambda: model.image_tokens(torch.zeros(1, 3, clip_size, clip_size, device=device)))
    c["sam_encode"], emb = _flops(lambda: model.sam_embedding(torch.zeros(1, 3, sam_size, sam_size, device=device)))
    p = prefix_text_tokens + img.shape[1]
    s = suffix_tokens
    c["lm_prefix"], pre = _flops(lambda: model.decoder(torch.zeros(1, p, h, device=device, dtype=dt), use_cache=True))
    kv = [(layer.keys, layer.values) for layer in pre.cache.layers]
    c["lm_suffix"], c["lm_full"] = lm_flops(model, p, s, device, kv)
    c["sam_decode"], _ = _flops(lambda: model.decode_masks(
        emb, model.seg_projection(torch.zeros(1, h, device=device, dtype=dt))))
    c["image_tokens"], c["prefix_tokens"], c["suffix_tokens"] = int(img.shape[1]), int(p), int(s)
    if extra_suffix:
        by = {s: (c["lm_suffix"], c["lm_full"])}
        for s2 in extra_suffix:
            if s2 not in by:
                by[s2] = lm_flops(model, p, s2, device, kv)
        c["lm_by_suffix"] = {int(k): [int(a), int(b)] for k, b2 in sorted(by.items()) for a, b in [b2]}
        c["lm_fit"] = fit_lm(p, c["lm_by_suffix"])
    return c


def fit_lm(prefix_tokens: int, by_suffix: dict[int, list[int]]) -> dict[str, float]:
    """Fit LM FLOPs = a·tokens + c·tokens·keys (per-token linear layers + QKᵀ/AV attention) to counted
    (lm_suffix, lm_full) pairs: suffix(s) = a·s + c·s·(p+s), full(s) = a·(p+s) + c·(p+s)²."""
    p = prefix_tokens
    rows, y = [], []
    for s, (suf, full) in by_suffix.items():
        rows += [[s, s * (p + s)], [p + s, (p + s) ** 2]]
        y += [suf, full]
    a_mat, yv = np.asarray(rows, dtype=np.float64), np.asarray(y, dtype=np.float64)
    (a, c), *_ = np.linalg.lstsq(a_mat, yv, rcond=None)
    resid = float(np.max(np.abs(a_mat @ np.array([a, c]) - yv) / yv))
    return {"a_per_token": float(a), "c_per_token_key": float(c), "prefix_tokens": int(p), "max_rel_residual": resid}


def lm_suffix_at(fit: dict[str, float], s: int) -> float:
    p = fit["prefix_tokens"]
    return fit["a_per_token"] * s + fit["c_per_token_key"] * s * (p + s)


def lm_full_at(fit: dict[str, float], s: int) -> float:
    n = fit["prefix_tokens"] + s
    return fit["a_per_token"] * n + fit["c_per_token_key"] * n * n


def compose_lengths(c: dict[str, Any], views: int, suffix_lengths: list[int], batch: int) -> tuple[float, float, float]:
    """(naive, shared, shared FLOPs spent on padding) for one scene whose queries have these suffix lengths:
    naive runs each query at its own length; shared runs the suffixes in engine batches of ``batch``, each
    padded to its longest suffix (engine.LisaEngine.run_lm)."""
    fit = c["lm_fit"]
    q = len(suffix_lengths)
    naive = views * sum(c["clip"] + c["sam_encode"] + lm_full_at(fit, s) + c["sam_decode"] for s in suffix_lengths)
    suffix = padded = 0.0
    for b in range(0, q, batch):
        chunk = suffix_lengths[b : b + batch]
        longest = max(chunk)
        suffix += len(chunk) * lm_suffix_at(fit, longest)
        padded += sum(lm_suffix_at(fit, longest) - lm_suffix_at(fit, s) for s in chunk)
    shared = views * (c["clip"] + c["sam_encode"] + c["lm_prefix"]) + views * (suffix + q * c["sam_decode"])
    return naive, shared, views * padded


def caption_suffix_lengths() -> tuple[list[int] | None, list[str], str]:
    """Estimated LLaMA suffix lengths of the real ScanRefer captions (fixture file), the captions, and
    where they came from; (None, [], why not) if the file is absent or unreadable."""
    from tests.fixture_paths import fixtures_dir

    root = fixtures_dir()
    path = root / SCANREFER_CAPTIONS if root is not None else None
    if path is None or not path.is_file():
        return None, [], f"{SCANREFER_CAPTIONS} not found (set $MLLM3D_FIXTURES)"
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
        captions = [str(e["caption"]) for e in entries if str(e.get("caption", "")).strip()]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return None, [], f"{path} unreadable ({type(exc).__name__}: {exc})"
    if not captions:
        return None, [], f"{path} has no captions"
    lengths = [math.ceil(TOKENS_PER_WORD * len(t.split())) + SUFFIX_TEMPLATE_TOKENS for t in captions]
    return lengths, captions, f"{len(captions)} ScanRefer captions of {path.name}"


def realistic_flops(c: dict[str, Any], lengths: list[int], views=(4, 32), queries=(1, 10, 40),
                    batch: int = ENGINE_QUERY_BATCH, draws: int = REALISTIC_DRAWS, seed: int = 0) -> list[dict[str, Any]]:
    """Naive/shared totals when each scene's Q queries are drawn (with replacement) from ``lengths``:
    the FLOPs summed over ``draws`` random scenes (their ratio) and the range of the per-scene ratio."""
    rng = np.random.default_rng(seed)
    rows = []
    for q in queries:
        samples = [[int(x) for x in rng.choice(lengths, q)] for _ in range(draws)]
        for v in views:
            per = [compose_lengths(c, v, smp, batch) for smp in samples]
            naive = sum(x[0] for x in per) / draws
            shared = sum(x[1] for x in per) / draws
            pad = sum(x[2] for x in per) / draws
            ratios = [x[0] / x[1] for x in per]
            rows.append({"views": v, "queries": q, "naive_tflop": naive / 1e12, "shared_tflop": shared / 1e12,
                         "ratio": naive / shared, "ratio_min": float(min(ratios)), "ratio_max": float(max(ratios)),
                         "padding_share_of_shared": pad / shared})
    return rows


def compose(c: dict[str, int], views: int, queries: int) -> tuple[int, int]:
    """(naive, shared) total FLOPs for ``views`` views each segmented for ``queries`` queries."""
    naive = views * queries * sum(c[k] for k in PER_QUERY_NAIVE)
    shared = views * sum(c[k] for k in PER_VIEW) + views * queries * sum(c[k] for k in PER_QUERY_SHARED)
    return naive, shared


def compose_cached(c: dict[str, int], views: int, queries: int) -> int:
    """Encoders-cached total FLOPs: CLIP + SAM encodings once per view, each query's full LM + decode."""
    return views * sum(c[k] for k in PER_VIEW_CACHED) + views * queries * sum(c[k] for k in PER_QUERY_CACHED)


def real_flops(rc: RealConfig, views=(4, 32), queries=(1, 10, 40)) -> dict[str, Any]:
    """Part (a): LISA-7B component FLOPs on meta and the composed naive/shared totals (fixed suffix length
    and the ScanRefer caption-length distribution with the engine's batch padding)."""
    t0 = time.perf_counter()
    model = build_meta_lisa(rc)
    comp = component_flops(model, rc.prefix_text_tokens, rc.suffix_tokens, extra_suffix=FIT_SUFFIX_LENGTHS)
    rows = []
    for v in views:
        for q in queries:
            naive, shared = compose(comp, v, q)
            cached = compose_cached(comp, v, q)
            rows.append({"views": v, "queries": q, "naive_tflop": naive / 1e12, "shared_tflop": shared / 1e12,
                         "cached_tflop": cached / 1e12, "ratio": naive / shared, "ratio_vs_cached": cached / shared})
    sens = []
    for s in FIT_SUFFIX_LENGTHS:  # query length sensitivity at Q=10 (only the suffix changes)
        suf, full = comp["lm_by_suffix"][s]
        n, sh = compose({**comp, "lm_suffix": suf, "lm_full": full}, 1, 10)
        sens.append({"suffix_tokens": s, "ratio_q10": n / sh})
    lengths, _captions, source = caption_suffix_lengths()
    realistic: dict[str, Any] = {"source": source, "available": lengths is not None,
                                 "tokens_per_word": TOKENS_PER_WORD, "template_tokens": SUFFIX_TEMPLATE_TOKENS,
                                 "query_batch": ENGINE_QUERY_BATCH, "draws": REALISTIC_DRAWS}
    if lengths is not None:
        arr = np.asarray(lengths)
        realistic["suffix_tokens"] = {"mean": float(arr.mean()), "median": float(np.median(arr)),
                                      "min": int(arr.min()), "max": int(arr.max()),
                                      "p90": float(np.percentile(arr, 90))}
        realistic["totals"] = realistic_flops(comp, lengths, views, queries)
    lm_by = comp.pop("lm_by_suffix")
    lm_fit = comp.pop("lm_fit")
    return {"config": asdict(rc), "components": comp, "totals": rows, "suffix_sensitivity": sens,
            "lm_by_suffix": lm_by, "lm_fit": lm_fit, "realistic": realistic, "seconds": time.perf_counter() - t0}


# --------------------------------------------------------------------------- (b) tiny-model wall time
def bench_spec(quick: bool):
    """A small LISA whose cost is dominated by matmuls (so FLOPs predict time), still quick on one core."""
    from tests.lisa_tiny import TinyLisaSpec

    if quick:
        return TinyLisaSpec()
    return TinyLisaSpec(
        hidden_size=256, intermediate_size=688, num_layers=4, num_heads=4,
        clip_hidden=128, clip_layers=4, clip_heads=4, clip_image_size=224, clip_patch_size=14,
        sam=SamSpec(encoder_embed_dim=128, encoder_depth=4, encoder_num_heads=4, encoder_global_attn_indexes=[1, 3],
                    image_size=256, patch_size=16, window_size=8, prompt_embed_dim=64, decoder_depth=2,
                    decoder_mlp_dim=256, decoder_num_heads=4, iou_head_hidden_dim=64),
    )


def varied_texts(queries: int) -> tuple[list[str], str]:
    """``queries`` query texts of varied lengths: real ScanRefer captions spread from the shortest to the
    longest of the fixture file, else synthetic sentences of 2-30 words."""
    _lengths, captions, source = caption_suffix_lengths()
    if captions:
        by_len = sorted(set(captions), key=lambda t: (len(t.split()), t))
        pick = np.linspace(0, len(by_len) - 1, max(queries, 1)).round().astype(int)
        texts = [by_len[i] for i in pick][:queries]
        rng = np.random.default_rng(0)
        rng.shuffle(texts)  # the engine batches in the given order: no accidental length sorting
        return texts, f"real ScanRefer captions of varied length ({source})"
    words = "the brown wooden chair that is closest to the window next to the small round table by the door".split()
    lens = np.linspace(2, 30, max(queries, 1)).round().astype(int)
    return [" ".join((words * 3)[:n]) for n in lens][:queries], f"synthetic texts of 2-30 words ({source})"


def tiny_wall(quick: bool, repeat: int, views: int, queries: int, threads: int) -> dict[str, Any]:
    """Part (b): naive vs shared wall time on a random small LISA vs the FLOP ratio of the same calls."""
    from bench.common import measure_interleaved
    from mllm3d.stage1_pseudolabel.lisa.checkpoint import load_lisa
    from mllm3d.stage1_pseudolabel.lisa.config import LisaConfig
    from mllm3d.stage1_pseudolabel.lisa.engine import LisaEngine
    from tests.lisa_tiny import build_tiny_lisa_checkpoint

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with tempfile.TemporaryDirectory(prefix="bench-lisa-") as tmp:
            spec = bench_spec(quick)
            ckpt = build_tiny_lisa_checkpoint(tmp, seed=0, spec=spec)
            lo = load_lisa(LisaConfig(checkpoint=str(ckpt)))
        rng = np.random.default_rng(0)
        colors = [rng.integers(0, 256, (120, 160, 3), dtype=np.uint8) for _ in range(views)]
        texts, texts_from = varied_texts(queries)
        batch = LisaConfig(checkpoint=str(ckpt)).query_batch_size  # the product's default batching

        def engine(shared: bool) -> LisaEngine:
            cfg = LisaConfig(checkpoint=str(ckpt), shared_encodings=shared, query_batch_size=batch)
            return LisaEngine(lo.model, lo.tokenizer, lo.token_ids, lo.clip_preprocess, cfg)

        runs = {name: engine(name == "shared") for name in ("naive", "cached", "shared")}

        def scene(name: str):
            return lambda: [runs[name].segment(c, texts, mode=name) for c in colors]

        measured = {name: _flops(scene(name))[0] for name in runs}
        eng = runs["shared"]
        prompts = [eng.prompt_tokens(t) for t in texts]
        suffix_lens = [len(pr.suffix) for pr in prompts]
        fit_lens = tuple(sorted({min(suffix_lens), int(np.median(suffix_lens)), max(suffix_lens)}))
        comp = component_flops(lo.model, len(prompts[0].prefix), suffix_lens[0], device="cpu",
                               extra_suffix=fit_lens)
        naive_c, shared_c, pad_c = compose_lengths(comp, views, suffix_lens, batch)
        fit = comp["lm_fit"]
        cached_c = views * (comp["clip"] + comp["sam_encode"]) + views * sum(
            lm_full_at(fit, s) + comp["sam_decode"] for s in suffix_lens)
        composed = {"naive": naive_c, "cached": cached_c, "shared": shared_c}
        load_before = os.getloadavg()[0]
        timing = measure_interleaved({name: scene(name) for name in runs}, repeat=repeat, warmup=1)
        flop_ratio = measured["naive"] / measured["shared"]
        wall_ratio = timing["naive"].median / timing["shared"].median
        profile = None
        if abs(wall_ratio / flop_ratio - 1) >= 0.30:  # the target is missed: where does the time go?
            from bench.common import format_stats, profile_stats

            profile = "\n\n".join(f"{name} path, one scene:\n" + format_stats(profile_stats(scene(name)), 12, "tottime")
                                   for name in runs)
        return {
            "profile": profile,
            "spec": {"hidden": spec.hidden_size, "layers": spec.num_layers, "clip_hidden": spec.clip_hidden,
                     "clip_layers": spec.clip_layers, "sam_embed": spec.sam.encoder_embed_dim,
                     "sam_depth": spec.sam.encoder_depth, "sam_image": spec.sam.image_size},
            "views": views, "queries": queries, "threads": threads, "repeat": repeat, "query_batch": batch,
            "texts_from": texts_from, "suffix_lengths": suffix_lens,
            "prefix_tokens": comp["prefix_tokens"], "suffix_tokens": comp["suffix_tokens"],
            "components": {k: v for k, v in comp.items() if k not in ("lm_by_suffix",)},
            "flops_measured": measured, "flops_composed": composed, "padding_flops": pad_c,
            "composition_error": max(abs(composed[k] / measured[k] - 1) for k in runs),
            "timing": {k: v.as_dict() for k, v in timing.items()},
            "interleaved": True,
            "flop_ratio": flop_ratio, "wall_ratio": wall_ratio,
            "deviation": abs(wall_ratio / flop_ratio - 1),
            "loadavg": [load_before, os.getloadavg()[0]],
        }
    finally:
        torch.set_num_threads(before)


# --------------------------------------------------------------------------- report
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
