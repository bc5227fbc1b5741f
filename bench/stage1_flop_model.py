"""LISA FLOP model: component FLOPs counted with FlopCounterMode and their naive / encoders-cached / shared
compositions (fixed suffix length and the ScanRefer caption-length distribution with the engine's padding).

Used by benchmark 1 (bench/bench_stage1_flops.py, part (a) and the composition check of part (b)) and by
benchmark 6 (bench/bench_stage1_e2e.py). See bench/bench_stage1_flops.py for the method.
"""

from __future__ import annotations

import json
import math
import sys
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


def count_flops(fn) -> tuple[int, Any]:
    """(FLOPs counted by FlopCounterMode, result) of ``fn()``."""
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

    suffix_f, _ = count_flops(suffix)
    full_f, _ = count_flops(lambda: model.decoder(  # an all-ones mask: same FLOPs, no data-dependent check
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
    c["clip"], img = count_flops(lambda: model.image_tokens(torch.zeros(1, 3, clip_size, clip_size, device=device)))
    c["sam_encode"], emb = count_flops(lambda: model.sam_embedding(torch.zeros(1, 3, sam_size, sam_size, device=device)))
    p = prefix_text_tokens + img.shape[1]
    s = suffix_tokens
    c["lm_prefix"], pre = count_flops(lambda: model.decoder(torch.zeros(1, p, h, device=device, dtype=dt), use_cache=True))
    kv = [(layer.keys, layer.values) for layer in pre.cache.layers]
    c["lm_suffix"], c["lm_full"] = lm_flops(model, p, s, device, kv)
    c["sam_decode"], _ = count_flops(lambda: model.decode_masks(
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
