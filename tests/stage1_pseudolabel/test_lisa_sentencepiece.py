"""A released LISA folder ships a SentencePiece ``tokenizer.model`` + ``added_tokens.json`` (no
tokenizer.json). Build such a folder with a tiny SentencePiece model trained here and load it through
the backend's tokenizer loader: the [SEG] id must come from the folder, as in LISA-7B-v1 (32000 + 3)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

spm = pytest.importorskip("sentencepiece")

from mllm3d.stage1_pseudolabel.lisa.tokenizer import SEG_TOKEN, load_tokenizer, special_token_ids  # noqa: E402


def _released_style_tokenizer(folder: Path) -> int:
    corpus = ["a chair near the window", "sure it is the lamp", "please output segmentation mask"] * 40
    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(corpus), model_writer=buf, vocab_size=50, model_type="bpe",
        unk_id=0, bos_id=1, eos_id=2, pad_id=-1, hard_vocab_limit=False, minloglevel=2,
    )
    folder.mkdir(parents=True)
    (folder / "tokenizer.model").write_bytes(buf.getvalue())
    n = spm.SentencePieceProcessor(model_proto=buf.getvalue()).get_piece_size()
    # LISA-7B-v1 order: <im_patch>, <im_start>, <im_end> (LLaVA), then [SEG]
    added = {"<im_patch>": n, "<im_start>": n + 1, "<im_end>": n + 2, SEG_TOKEN: n + 3}
    (folder / "added_tokens.json").write_text(json.dumps(added))
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "LlamaTokenizer", "add_bos_token": True, "add_eos_token": False, "legacy": False,
        "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "model_max_length": 512,
    }))
    (folder / "special_tokens_map.json").write_text(json.dumps(
        {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<unk>"}))
    return n


def test_sentencepiece_folder_loads_with_seg_id_from_added_tokens(tmp_path: Path) -> None:
    n = _released_style_tokenizer(tmp_path / "LISA-like")
    tok = load_tokenizer(tmp_path / "LISA-like")
    ids = special_token_ids(tok, "LISA-like")
    assert ids.seg == n + 3 and ids.bos == 1 and ids.eos == 2
    enc = tok("Sure, [SEG].").input_ids
    assert enc[0] == 1 and ids.seg in enc  # BOS first, [SEG] kept as one token
