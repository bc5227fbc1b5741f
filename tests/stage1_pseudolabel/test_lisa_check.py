"""``mllm3d lisa check`` (the dry run) and the mapping of the real LISA-7B index onto our modules."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from mllm3d.cli import main
from mllm3d.stage1_pseudolabel.lisa.check import check_checkpoint
from mllm3d.stage1_pseudolabel.lisa.checkpoint import plan_load
from tests.fixture_paths import fixtures_dir

ROOT = fixtures_dir()
REF = ROOT / "lisa_reference" if ROOT is not None else None
pytestmark = pytest.mark.skipif(
    REF is None or not (REF / "checkpoint").is_dir(),
    reason="LISA reference fixture not found (../shared/fixtures/lisa_reference or $MLLM3D_FIXTURES)",
)


def run_check(ckpt: Path, clip: Path | None = None):
    args = ["lisa", "check", "--checkpoint", str(ckpt)]
    if clip is not None:
        args += ["--clip", str(clip)]
    return CliRunner().invoke(main, args)


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    """A writable copy of the reference checkpoint with its CLIP folder beside it (as ``../clip``)."""
    shutil.copytree(REF / "checkpoint", tmp_path / "checkpoint", copy_function=shutil.copyfile)
    shutil.copytree(REF / "clip", tmp_path / "clip", copy_function=shutil.copyfile)
    return tmp_path / "checkpoint"


def test_check_on_the_reference_checkpoint_is_clean() -> None:
    res = run_check(REF / "checkpoint", REF / "clip")
    assert res.exit_code == 0, res.output
    assert "OK: this checkpoint would load." in res.output
    rep = check_checkpoint(REF / "checkpoint")  # CLIP found through config.json's "../clip"
    assert rep.ok, rep.problems
    rows = {(s, k): v for s, items in rep.sections.items() for k, v in items}
    assert rows[("tokenizer", "[SEG] id")] == "403"  # read from the tokenizer (the fixture's README)
    assert rows[("tokenizer", "bos / eos / pad")] == "1 / 2 / 0"
    assert rows[("weights", "mapped / missing / unexpected")] == "201 / 0 / 0"
    assert rows[("weights", "ignored")] == "2 (inv_freq)"  # the two rotary buffers
    assert rows[("weights", "tensors")] == "203 (5,006,752 numbers)"
    assert rows[("sam", "encoder")] == "embed 32, depth 2, heads 2, global [1]"  # as the README states
    assert rows[("clip", "hidden / image / patch")] == "32 / 224 / 14 (256 patch tokens)"
    # the rendered prompt, tokenised as LISA (transformers 4.31) does: no '▁' next to the added tokens
    assert "▁US ER : <im_start>" in rows[("prompt", "tokens")]
    assert rows[("prompt", "tokens")].endswith("▁Su re , [SEG] ▁ .")


def test_check_fails_on_a_missing_shard(copy: Path) -> None:
    (copy / "pytorch_model-00002-of-00002.bin").unlink()
    res = run_check(copy)
    assert res.exit_code == 1
    assert "pytorch_model-00002-of-00002.bin" in res.output and "do not exist" in res.output
    assert "Traceback" not in res.output


def test_check_fails_on_a_renamed_key(copy: Path) -> None:
    shard = copy / "pytorch_model-00002-of-00002.bin"
    sd = torch.load(shard, weights_only=True)
    old = next(k for k in sd if k.startswith("model.text_hidden_fcs."))
    sd[old.replace("text_hidden_fcs", "text_hidden_fc")] = sd.pop(old)
    torch.save(sd, shard)
    index = copy / "pytorch_model.bin.index.json"
    data = json.loads(index.read_text())
    data["weight_map"][old.replace("text_hidden_fcs", "text_hidden_fc")] = data["weight_map"].pop(old)
    index.write_text(json.dumps(data))
    res = run_check(copy)
    assert res.exit_code == 1
    text = " ".join(res.output.split())
    assert "missing key(s)" in text and old in text
    assert "unexpected key(s)" in text and old.replace("text_hidden_fcs", "text_hidden_fc") in text


def test_check_fails_on_a_tokenizer_without_seg(copy: Path) -> None:
    added = copy / "added_tokens.json"
    tokens = json.loads(added.read_text())
    del tokens["[SEG]"]
    added.write_text(json.dumps(tokens))
    res = run_check(copy)
    assert res.exit_code == 1
    assert "no [SEG] token" in " ".join(res.output.split())


def test_check_fails_without_a_clip_folder(copy: Path) -> None:
    shutil.rmtree(copy.parent / "clip")
    res = run_check(copy)
    assert res.exit_code == 1
    assert "CLIP" in res.output


# --- the real LISA-7B index ----------------------------------------------------------------------------

def _lisa7b_config() -> dict:
    """The release's config.json: the fixture's (same key set) with the 7B values it changed put back."""
    cfg = json.loads((REF / "checkpoint" / "config.json").read_text())
    changed = json.loads((REF / "build_meta.json").read_text())["config_fields_changed"]
    for key, (release_value, _tiny_value) in changed.items():
        cfg[key] = release_value
    return cfg


def _index_shapes() -> dict[str, tuple[int, ...]]:
    shapes = {}
    for line in (REF / "index_keys_lisa7b.txt").read_text().splitlines():
        if not line or line.startswith("#"):
            continue
        key, _shard, shape = line.split("\t")
        shapes[key] = tuple(json.loads(shape))
    return shapes


def test_real_lisa7b_index_maps_onto_our_modules() -> None:
    shapes = _index_shapes()
    assert len(shapes) == 923
    cfg = _lisa7b_config()
    assert (cfg["hidden_size"], cfg["num_hidden_layers"], cfg["vocab_size"]) == (4096, 32, 32004)
    # CLIP ViT-L/14 (hidden 1024) is loaded from its own folder; the model is built on the meta device
    plan = plan_load(cfg, shapes, decoder_heads=None, mm_hidden_size=1024, ckpt_dir=Path("LISA-7B-v1"), strict=True)
    assert len(plan.report.unexpected_keys) == 0
    assert len(plan.mapping) + len(plan.report.ignored_keys) == 923  # nothing missing, nothing unexpected
    ignored = sorted(plan.report.ignored_keys)
    assert ignored == [f"model.layers.{i}.self_attn.rotary_emb.inv_freq" for i in sorted(range(32), key=str)]
    model_keys = set(plan.model.state_dict())
    assert set(plan.mapping.values()) == model_keys  # every parameter/buffer of ours has a checkpoint key
    sam = plan.arch.sam
    assert (sam.encoder_embed_dim, sam.encoder_depth, sam.encoder_num_heads) == (1280, 32, 16)
    assert sam.encoder_global_attn_indexes == [7, 15, 23, 31]
    assert plan.arch.out_dim == 256
    for key, target in plan.mapping.items():  # shapes agree key by key (meta tensors carry shapes)
        assert tuple(plan.model.state_dict()[target].shape) == shapes[key], key
    assert all(re.match(r"(model\.|lm_head\.)", k) for k in shapes)
