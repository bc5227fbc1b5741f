"""The lisa backend through the Stage-1 Segmenter interface (build_segmenter("lisa", {...}))."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mllm3d.shared.errors import BadInputError
from mllm3d.stage1_pseudolabel.segmenter import (
    SegmentationResult,
    Segmenter,
    ViewSegmentation,
    build_segmenter,
)
from tests.lisa_helpers import (
    QUERIES,
    make_view,
    single_thread,  # noqa: F401  (autouse fixture)
    tiny_checkpoint,
)


@pytest.fixture(scope="module")
def segmenter():
    return build_segmenter("lisa", {"checkpoint": str(tiny_checkpoint()), "attention_map": True,
                                    "image_features": True, "feature_pool": 8})


def test_build_segmenter_returns_a_segmenter(segmenter):
    assert isinstance(segmenter, Segmenter)
    assert segmenter.name == "lisa"
    assert segmenter.embed_dim == json.loads((tiny_checkpoint() / "config.json").read_text())["out_dim"]


def test_segment_view_contract_on_non_square_view(segmenter):
    view = make_view(36, 80, seed=7, frame_id=12)
    out = segmenter.segment_view(view, QUERIES)
    assert isinstance(out, ViewSegmentation) and len(out.results) == len(QUERIES)
    for r in out.results:
        assert isinstance(r, SegmentationResult)
        assert r.has_seg and r.text == "Sure,[SEG]."  # LISA (4.31) ids: no "▁" token before [SEG]
        assert r.mask.shape == (36, 80) and r.mask.dtype == bool and 0 < r.mask.sum() < r.mask.size
        assert r.seg_embedding.shape == (segmenter.embed_dim,) and r.seg_embedding.dtype == np.float32
        assert 0.0 <= r.attention <= 1.0 and r.attention_map.shape == (16, 16)
        assert np.isfinite(r.confidence)
    assert out.image_features.shape == (segmenter.embed_dim, 8, 8)


def test_no_queries_and_bad_views(segmenter):
    view = make_view()
    assert segmenter.segment_view(view, []).results == []
    view.color = view.color.astype(np.float32)
    with pytest.raises(BadInputError, match="frame 0"):
        segmenter.segment_view(view, QUERIES[:1])


def test_config_dict_is_json_and_path_free(segmenter):
    cfg = segmenter.config_dict()
    text = json.dumps(cfg)
    assert str(Path(tiny_checkpoint()).parent) not in text
    assert cfg["seg_token_id"] == segmenter.seg_token_id and cfg["checkpoint_name"] == "LISA-tiny"
    assert cfg["decoding"] == "forced" and "shared_encodings" not in cfg  # does not change outputs
    other = build_segmenter("lisa", {"checkpoint": str(tiny_checkpoint(seed=1)), "attention_map": True,
                                     "image_features": True, "feature_pool": 8})
    assert other.config_dict()["checkpoint_fingerprint"] != cfg["checkpoint_fingerprint"]


def test_unknown_option_is_rejected():
    with pytest.raises(BadInputError, match="unknown key"):
        build_segmenter("lisa", {"checkpoint": str(tiny_checkpoint()), "shared": True})


def test_no_hard_coded_cuda_calls():
    """Device placement goes through the `device` option: no `.cuda` attribute anywhere in the package."""
    import ast

    src = Path(__file__).resolve().parents[2] / "stage1_pseudolabel" / "lisa"
    files = sorted(src.glob("*.py"))
    assert len(files) >= 8
    for f in files:
        tree = ast.parse(f.read_text())
        assert not [n for n in ast.walk(tree) if isinstance(n, ast.Attribute) and n.attr == "cuda"], f


def test_min_seg_prob_option_hash_and_results(segmenter):
    assert "min_seg_prob" not in segmenter.config_dict()  # off: the config hash of older stores is kept
    gated = build_segmenter("lisa", {"checkpoint": str(tiny_checkpoint()), "attention_map": True,
                                     "image_features": True, "feature_pool": 8, "min_seg_prob": 1.0})
    cfg = gated.config_dict()
    assert cfg["min_seg_prob"] == 1.0 and {k: v for k, v in cfg.items() if k != "min_seg_prob"} == segmenter.config_dict()
    out = gated.segment_view(make_view(36, 80, seed=7), QUERIES)
    assert [r.has_seg for r in out.results] == [False] * len(QUERIES)
    assert all(not r.mask.any() and r.mask.shape == (36, 80) and r.confidence == 0.0 for r in out.results)
    for bad, match in (({"min_seg_prob": 1.5}, "min_seg_prob must be a number in"),
                       ({"min_seg_prob": "high"}, "min_seg_prob must be a number in"),
                       ({"min_seg_prob": 0.1, "decoding": "generate"}, "min_seg_prob applies to decoding: forced")):
        with pytest.raises(BadInputError, match=match):
            build_segmenter("lisa", {"checkpoint": str(tiny_checkpoint()), **bad})
