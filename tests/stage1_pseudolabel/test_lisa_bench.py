"""The Stage-1 FLOP benchmark's building blocks (bench/stage1_flop_model.py, bench/stage1_tiny_wall.py)."""

from __future__ import annotations

import pytest

from bench.stage1_flop_model import RealConfig, compose, real_flops
from bench.stage1_tiny_wall import tiny_wall
from tests.lisa_helpers import single_thread  # noqa: F401  (autouse fixture)


def test_compose_formula():
    c = {"clip": 1, "sam_encode": 10, "lm_prefix": 100, "lm_suffix": 5, "lm_full": 104, "sam_decode": 2}
    assert compose(c, views=3, queries=4) == (3 * 4 * (1 + 10 + 104 + 2), 3 * (1 + 10 + 100) + 3 * 4 * (5 + 2))


def test_real_lisa7b_flops_on_meta():
    res = real_flops(RealConfig(), views=(4,), queries=(1, 10))
    comp = res["components"]
    assert comp["image_tokens"] == 256 and comp["prefix_tokens"] == 296
    # Llama-7B: ~2 * 6.5e9 FLOPs per token; SAM ViT-H 1024 ~ 6 TFLOPs; CLIP-L/14-224 ~ 0.16 TFLOPs
    assert comp["lm_prefix"] / comp["prefix_tokens"] == pytest.approx(1.3e10, rel=0.1)
    assert comp["sam_encode"] == pytest.approx(5.96e12, rel=0.02)
    assert comp["clip"] == pytest.approx(1.64e11, rel=0.05)
    ratio = {r["queries"]: r["ratio"] for r in res["totals"]}
    assert ratio[1] == pytest.approx(1.0, abs=0.01) and ratio[10] >= 5.0


def test_tiny_composition_matches_counted_engine_calls():
    res = tiny_wall(quick=True, repeat=1, views=1, queries=3, threads=1)
    # exact up to SAM's dense positional encoding, computed once per batched decode call (shared path)
    assert res["composition_error"] < 1e-3
    assert res["flops_measured"]["naive"] > res["flops_measured"]["shared"] > 0
    assert res["wall_ratio"] > 1.0


def test_lm_fit_and_padded_composition():
    from bench.stage1_flop_model import compose_lengths, fit_lm, lm_full_at, lm_suffix_at

    a, c, p = 100.0, 2.0, 30
    by = {s: [int(a * s + c * s * (p + s)), int(a * (p + s) + c * (p + s) ** 2)] for s in (10, 20, 40)}
    fit = fit_lm(p, by)
    assert fit["max_rel_residual"] < 1e-12
    assert lm_suffix_at(fit, 25) == pytest.approx(a * 25 + c * 25 * 55)
    comp = {"clip": 1.0, "sam_encode": 10.0, "lm_prefix": 50.0, "sam_decode": 2.0, "lm_fit": fit}
    lengths = [10, 40, 20]
    naive, shared, pad = compose_lengths(comp, views=2, suffix_lengths=lengths, batch=2)
    assert naive == pytest.approx(2 * sum(1 + 10 + lm_full_at(fit, s) + 2 for s in lengths))
    # batches [10, 40] padded to 40, [20] alone
    suffix = 2 * lm_suffix_at(fit, 40) + lm_suffix_at(fit, 20)
    assert shared == pytest.approx(2 * (1 + 10 + 50) + 2 * (suffix + 3 * 2))
    assert pad == pytest.approx(2 * (lm_suffix_at(fit, 40) - lm_suffix_at(fit, 10)))


def test_caption_lengths_and_varied_texts(fixtures_root):
    from bench.stage1_flop_model import SUFFIX_TEMPLATE_TOKENS, caption_suffix_lengths
    from bench.stage1_tiny_wall import varied_texts

    lengths, captions, source = caption_suffix_lengths()
    assert lengths is not None and len(lengths) == len(captions) > 100, source
    assert min(lengths) > SUFFIX_TEMPLATE_TOKENS and max(lengths) > min(lengths) + 20
    texts, _ = varied_texts(10)
    assert len(texts) == 10 and len({len(t.split()) for t in texts}) >= 5
