"""LisaEngine.segment(mode="cached"): CLIP/SAM encodings once per view, each query's LM on its own."""

from __future__ import annotations

import numpy as np
import pytest

from tests.lisa_helpers import QUERIES, engine, single_thread, smooth_image, tiny_checkpoint  # noqa: F401
from tests.stage1_pseudolabel.test_lisa_engine import _compare

pytestmark = pytest.mark.slow


def test_cached_equals_naive_and_shared() -> None:
    ckpt = tiny_checkpoint()
    texts = [q.text for q in QUERIES]
    color = smooth_image(48, 64, seed=0)
    eng = engine(ckpt, attention_map=True, image_features=True)
    cached, f_c = eng.segment(color, texts, mode="cached")
    naive, f_n = eng.segment(color, texts, mode="naive")
    shared, f_s = eng.segment(color, texts, mode="shared")
    _compare(cached, naive)
    _compare(cached, shared)
    np.testing.assert_allclose(f_c, f_n, atol=1e-5)
    np.testing.assert_allclose(f_c, f_s, atol=1e-5)


def test_cached_encodes_each_view_once_and_bad_mode_is_refused() -> None:
    eng = engine(tiny_checkpoint())
    calls = []
    real = eng.encode_view
    eng.encode_view = lambda color: calls.append(1) or real(color)  # type: ignore[method-assign]
    texts = [q.text for q in QUERIES]
    eng.segment(smooth_image(48, 64, seed=1), texts, mode="cached")
    assert len(calls) == 1
    calls.clear()
    eng.segment(smooth_image(48, 64, seed=1), texts, mode="naive")
    assert len(calls) == len(texts)
    with pytest.raises(ValueError, match="segment mode"):
        eng.segment(smooth_image(48, 64, seed=1), texts, mode="kv")
