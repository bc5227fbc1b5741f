"""LISA inference: the [SEG] one-token shift, attention scores, shared == naive, has_seg=False, features."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mllm3d.stage1_pseudolabel.lisa.checkpoint import load_lisa
from mllm3d.stage1_pseudolabel.lisa.config import LisaConfig
from mllm3d.stage1_pseudolabel.lisa.engine import LisaEngine
from mllm3d.stage1_pseudolabel.lisa.preprocess import clip_preprocess
from mllm3d.stage1_pseudolabel.lisa.tokenizer import LLAVA_V1_SYSTEM, encode_like_lisa
from tests.lisa_helpers import (
    QUERIES,
    engine,
    loaded,
    single_thread,  # noqa: F401  (autouse fixture)
    smooth_image,
    tiny_checkpoint,
)

IMAGE_TOKEN_INDEX = -200  # LLaVA's placeholder id


def llava_tokenizer_image_token(prompt: str, tokenizer) -> list[int]:
    """LLaVA's ``tokenizer_image_token``, transcribed (an independent reference for the engine's chunking).

    Each chunk is tokenised as transformers 4.31 does (``encode_like_lisa``, pinned against LISA's own ids by
    tests/stage1_pseudolabel/test_lisa_parity.py)."""
    chunks = [encode_like_lisa(tokenizer, c, tokenizer.bos_token_id) for c in prompt.split("<image>")]

    def insert_separator(x, sep):
        return [e for sub in zip(x, [sep] * len(x), strict=True) for e in sub][:-1]

    ids, offset = [], 0
    if chunks and chunks[0] and chunks[0][0] == tokenizer.bos_token_id:
        offset = 1
        ids.append(chunks[0][0])
    for x in insert_separator(chunks, [IMAGE_TOKEN_INDEX] * (offset + 1)):
        ids.extend(x[offset:])
    return ids


def manual_forward(eng: LisaEngine, color: np.ndarray, query: str, answer_ids: list[int] | None = None,
                   answer_text: str | None = "Sure, [SEG].") -> dict:
    """LISA's computation written out directly on the modules: returns hidden states, attentions, layout."""
    m, tok = eng.model, eng.tokenizer
    prompt = (f"{LLAVA_V1_SYSTEM} USER: <im_start><image><im_end>\n{query} Please output segmentation mask. "
              f"ASSISTANT:")
    if answer_text is not None:
        prompt += " " + answer_text
    ids = llava_tokenizer_image_token(prompt, tok) + list(answer_ids or [])
    with torch.no_grad():
        vis = m.vision_tower(pixel_values=clip_preprocess(color, eng.clip_pre), output_hidden_states=True)
        img = m.mm_projector(vis.hidden_states[-2][:, 1:])  # layer -2, CLS dropped
        n_img = img.shape[1]
        k = ids.index(IMAGE_TOKEN_INDEX)
        emb = m.lm.model.embed_tokens(torch.tensor([ids[:k] + ids[k + 1 :]]))
        full = torch.cat([emb[:, :k], img, emb[:, k:]], dim=1)
        out = m.lm(inputs_embeds=full, output_hidden_states=True, output_attentions=True)
    expanded = ids[:k] + [IMAGE_TOKEN_INDEX] * n_img + ids[k + 1 :]
    return {"hidden": out.hidden_states[-1][0], "attn": out.attentions[-1][0], "ids": expanded,
            "img_start": k, "n_img": n_img}


@pytest.mark.parametrize("clip_size", [224, 112])
def test_seg_embedding_is_hidden_state_before_seg_token(clip_size):
    ckpt = tiny_checkpoint(clip_image_size=clip_size)
    eng = engine(ckpt, attention_map=True)
    color = smooth_image(40, 70, seed=1)
    outputs, _ = eng.segment(color, [QUERIES[0].text])
    assert outputs[0].has_seg
    ref = manual_forward(eng, color, QUERIES[0].text)
    assert ref["n_img"] == (clip_size // 14) ** 2  # the actual image-token count, not 256 - 1 = 255
    seg_pos = ref["ids"].index(eng.ids.seg)
    with torch.no_grad():
        expected = eng.model.text_hidden_fcs[0](ref["hidden"][seg_pos - 1]).numpy()
        at_seg = eng.model.text_hidden_fcs[0](ref["hidden"][seg_pos]).numpy()
    np.testing.assert_allclose(outputs[0].embedding, expected, atol=1e-5)
    assert np.abs(outputs[0].embedding - at_seg).max() > 1e-2  # the shift matters

    # attention score: last layer, mean over heads, summed over exactly the n_img image keys
    att = ref["attn"][:, seg_pos - 1, ref["img_start"] : ref["img_start"] + ref["n_img"]].mean(0)
    assert outputs[0].attention == pytest.approx(float(att.sum()), abs=1e-5)
    side = clip_size // 14
    assert outputs[0].attention_map.shape == (side, side)
    np.testing.assert_allclose(outputs[0].attention_map, att.reshape(side, side).numpy(), atol=1e-6)
    assert (outputs[0].attention_map >= 0).all() and 0.0 < outputs[0].attention <= 1.0 + 1e-6


def test_attention_layers_option_averages_last_layers():
    ckpt = tiny_checkpoint()
    color = smooth_image(seed=2)
    one, _ = engine(ckpt, attention_layers=1).segment(color, [QUERIES[2].text])
    two, _ = engine(ckpt, attention_layers=2).segment(color, [QUERIES[2].text])
    assert one[0].attention >= 0 and two[0].attention >= 0
    assert one[0].attention != pytest.approx(two[0].attention, abs=1e-6)


def _compare(a, b, atol=1e-4):
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert x.has_seg == y.has_seg and x.text == y.text
        np.testing.assert_allclose(x.embedding, y.embedding, atol=atol)
        assert x.confidence == pytest.approx(y.confidence, abs=atol)
        assert x.attention == pytest.approx(y.attention, abs=atol)
        if x.attention_map is not None:
            np.testing.assert_allclose(x.attention_map, y.attention_map, atol=atol)
        assert (x.mask != y.mask).mean() <= 1e-3  # only pixels with |logit| ~ 0 may flip


@pytest.mark.parametrize("batch", [16, 2])
def test_shared_equals_naive_forced(batch):
    ckpt = tiny_checkpoint()
    texts = [q.text for q in QUERIES]  # different lengths: the padded batch is exercised
    for seed, (h, w) in enumerate([(48, 64), (60, 36)]):
        color = smooth_image(h, w, seed=seed)
        shared, f1 = engine(ckpt, attention_map=True, image_features=True, query_batch_size=batch).segment(color, texts)
        naive, f2 = engine(ckpt, attention_map=True, image_features=True, shared_encodings=False).segment(color, texts)
        assert all(o.has_seg for o in shared)
        _compare(shared, naive)
        np.testing.assert_allclose(f1, f2, atol=1e-5)
        # queries are not mixed up: different queries give different embeddings
        assert np.abs(shared[0].embedding - shared[2].embedding).max() > 1e-3


def _seg_emitting_model(ckpt, color, text):
    """A fresh copy whose LM head makes [SEG] the greedy first answer token for ``text``."""
    lo = load_lisa(LisaConfig(checkpoint=str(ckpt)))
    cfg = LisaConfig(checkpoint=str(ckpt), decoding="generate", max_new_tokens=1)
    first, _ = LisaEngine(lo.model, lo.tokenizer, lo.token_ids, lo.clip_preprocess, cfg).segment(color, [text])
    t0 = first[0].answer_ids[0]  # the untouched model's greedy first token
    with torch.no_grad():
        w = lo.model.lm.lm_head.weight
        w[lo.token_ids.seg] = 2.0 * w[t0]
    return lo


def test_generate_shared_equals_naive_and_matches_manual_shift():
    ckpt = tiny_checkpoint()
    color = smooth_image(seed=4)
    texts = [q.text for q in QUERIES]
    lo = _seg_emitting_model(ckpt, color, texts[0])

    def make(**kw):
        cfg = LisaConfig(checkpoint=str(ckpt), decoding="generate", max_new_tokens=5, attention_map=True, **kw)
        return LisaEngine(lo.model, lo.tokenizer, lo.token_ids, lo.clip_preprocess, cfg)

    shared, _ = make().segment(color, texts)
    naive, _ = make(shared_encodings=False).segment(color, texts)
    _compare(shared, naive)
    assert shared[0].has_seg and shared[0].text.startswith("[SEG]")
    assert all(o.has_seg == ("[SEG]" in o.text) for o in shared)
    # the generated [SEG]'s embedding is the hidden state of the position that predicted it
    ref = manual_forward(make(), color, texts[0], answer_ids=[lo.token_ids.seg], answer_text=None)
    seg_pos = len(ref["ids"]) - 1
    with torch.no_grad():
        expected = lo.model.text_hidden_fcs[0](ref["hidden"][seg_pos - 1]).numpy()
    np.testing.assert_allclose(shared[0].embedding, expected, atol=1e-5)


def test_generate_without_seg_gives_has_seg_false():
    ckpt = tiny_checkpoint()
    lo = load_lisa(LisaConfig(checkpoint=str(ckpt)))
    with torch.no_grad():
        lo.model.lm.lm_head.weight.zero_()  # every logit 0 -> greedy picks token 0 (<unk>), never [SEG]
    cfg = LisaConfig(checkpoint=str(ckpt), decoding="generate", max_new_tokens=4)
    eng = LisaEngine(lo.model, lo.tokenizer, lo.token_ids, lo.clip_preprocess, cfg)
    color = smooth_image(30, 50, seed=5)
    outputs, _ = eng.segment(color, [q.text for q in QUERIES])
    for o in outputs:
        assert not o.has_seg and "[SEG]" not in o.text and o.text.count("<unk>") == 4
        assert o.mask.shape == (30, 50) and not o.mask.any()
        assert not o.embedding.any() and o.confidence == 0.0 and o.attention == 0.0


def test_forced_answer_without_seg_gives_has_seg_false():
    ckpt = tiny_checkpoint()
    outputs, _ = engine(ckpt, forced_answer="Sorry, I cannot find it.").segment(smooth_image(), ["lamp", "a [SEG] b"])
    assert [o.has_seg for o in outputs] == [False, False]  # [SEG] inside the *question* does not count
    assert outputs[0].text == "Sorry, I cannot find it."


def test_image_features_pool_the_unpadded_sam_embedding():
    ckpt = tiny_checkpoint()
    eng = engine(ckpt, image_features=True, feature_pool=4)
    color = smooth_image(32, 64, seed=6)  # SAM input 64x128 of the 128 canvas -> 4 of 8 embedding rows valid
    outputs, feats = eng.segment(color, [QUERIES[0].text])
    _, feats_many = eng.segment(color, [q.text for q in QUERIES])
    _, feats_none = eng.segment(color, [])
    c = eng.model.arch.out_dim
    assert feats.shape == (c, 4, 4)
    np.testing.assert_allclose(feats, feats_many, atol=1e-6)  # query independent
    np.testing.assert_allclose(feats, feats_none, atol=1e-6)
    emb = eng.encode_view(color).sam_embedding[0]
    assert emb.shape == (c, 8, 8)
    expected = torch.nn.functional.avg_pool2d(emb[:, :4, :8].unsqueeze(0), (1, 2))[0]
    np.testing.assert_allclose(feats, expected.numpy(), atol=1e-5)


def test_bfloat16_runs_and_stays_close_to_float32():
    ckpt = tiny_checkpoint()
    lo32 = loaded(ckpt)
    lo16 = load_lisa(LisaConfig(checkpoint=str(ckpt), dtype="bfloat16"))
    assert lo16.model.lm.lm_head.weight.dtype == torch.bfloat16
    assert lo16.model.vision_tower.dtype == torch.bfloat16
    cfg = LisaConfig(checkpoint=str(ckpt), dtype="bfloat16")
    out16, _ = LisaEngine(lo16.model, lo16.tokenizer, lo16.token_ids, lo16.clip_preprocess, cfg).segment(
        smooth_image(), [QUERIES[0].text])
    out32, _ = engine(ckpt).segment(smooth_image(), [QUERIES[0].text])
    assert lo32.model.dtype == torch.float32
    a, b = out16[0].embedding, out32[0].embedding
    assert a.dtype == np.float32
    assert float(a @ b / np.linalg.norm(a) / np.linalg.norm(b)) > 0.98


def test_forced_seg_prob_is_the_models_own_p_seg_and_min_seg_prob_gates_has_seg():
    ckpt = tiny_checkpoint()
    color = smooth_image(44, 60, seed=8)
    texts = [q.text for q in QUERIES]
    eng = engine(ckpt)
    outputs, _ = eng.segment(color, texts)
    assert all(o.has_seg for o in outputs)  # teacher forcing alone always "finds" [SEG]
    # p([SEG]) = softmax(lm_head(h))[SEG] at the position before [SEG], from the hand-written forward
    for o, text in zip(outputs, texts, strict=True):
        ref = manual_forward(eng, color, text)
        seg_pos = ref["ids"].index(eng.ids.seg)
        with torch.no_grad():
            expected = torch.softmax(eng.model.lm.lm_head(ref["hidden"][seg_pos - 1]), -1)[eng.ids.seg]
        assert o.seg_prob == pytest.approx(float(expected), rel=1e-4)
        assert 0.0 < o.seg_prob < 1.0
    naive, _ = engine(ckpt, shared_encodings=False).segment(color, texts)
    for a, b in zip(outputs, naive, strict=True):
        assert a.seg_prob == pytest.approx(b.seg_prob, rel=1e-4)
    # a threshold between the queries' probabilities: the low ones become "no [SEG]"
    probs = sorted(o.seg_prob for o in outputs)
    assert probs[0] < probs[-1]
    threshold = (probs[0] + probs[-1]) / 2
    gated, _ = engine(ckpt, min_seg_prob=threshold).segment(color, texts)
    for g, o in zip(gated, outputs, strict=True):
        assert g.has_seg == (o.seg_prob >= threshold)
        assert g.seg_prob == pytest.approx(o.seg_prob, rel=1e-6)
        if g.has_seg:
            np.testing.assert_allclose(g.embedding, o.embedding, atol=1e-6)
            assert np.array_equal(g.mask, o.mask)
        else:  # as for a missing [SEG]: zero mask and embedding, confidence and attention 0
            assert g.mask.shape == (44, 60) and not g.mask.any() and not g.embedding.any()
            assert g.confidence == 0.0 and g.attention == 0.0 and g.attention_map is None
    off, _ = engine(ckpt, min_seg_prob=0.0).segment(color, texts)
    assert all(o.has_seg for o in off)
    none, _ = engine(ckpt, min_seg_prob=1.0).segment(color, texts)
    assert not any(o.has_seg for o in none)


def test_generate_reports_p_seg_of_the_generated_seg():
    ckpt = tiny_checkpoint()
    color = smooth_image(seed=4)
    text = QUERIES[0].text
    lo = _seg_emitting_model(ckpt, color, text)
    cfg = LisaConfig(checkpoint=str(ckpt), decoding="generate", max_new_tokens=2)
    eng = LisaEngine(lo.model, lo.tokenizer, lo.token_ids, lo.clip_preprocess, cfg)
    out, _ = eng.segment(color, [text])
    assert out[0].has_seg and out[0].answer_ids[0] == lo.token_ids.seg
    ref = manual_forward(eng, color, text, answer_ids=[lo.token_ids.seg], answer_text=None)
    with torch.no_grad():
        expected = torch.softmax(lo.model.lm.lm_head(ref["hidden"][len(ref["ids"]) - 2]), -1)[lo.token_ids.seg]
    assert out[0].seg_prob == pytest.approx(float(expected), rel=1e-4)
