"""Loading released-layout LISA checkpoints: key mapping, formats, [SEG] id, clear errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from mllm3d.shared.errors import BadInputError
from mllm3d.stage1_pseudolabel.lisa.checkpoint import load_lisa
from mllm3d.stage1_pseudolabel.lisa.checkpoint_files import checkpoint_key_for, map_checkpoint_key
from mllm3d.stage1_pseudolabel.lisa.config import LisaConfig
from mllm3d.stage1_pseudolabel.lisa.sam_shim import SamSpec, build_sam, infer_sam_spec
from tests.lisa_helpers import (
    QUERIES,
    engine,
    loaded,
    single_thread,  # noqa: F401  (autouse fixture)
    smooth_image,
    tiny_checkpoint,
)
from tests.lisa_tiny import build_tiny_lisa_checkpoint


def _copy(ckpt: Path, tmp_path: Path) -> Path:
    """A writable copy of a cached tiny checkpoint and its sibling clip folder."""
    dst = tmp_path / "copy"
    shutil.copytree(ckpt.parent, dst)
    return dst / ckpt.name


def _edit_shard(ckpt: Path, edit) -> None:
    """Apply ``edit(state_dict, weight_map, shard_name)`` to the first shard and rewrite it and the index."""
    index_path = ckpt / "model.safetensors.index.json"
    index = json.loads(index_path.read_text())
    shard = sorted(set(index["weight_map"].values()))[0]
    sd = load_file(str(ckpt / shard))
    edit(sd, index["weight_map"], shard)
    save_file(sd, str(ckpt / shard))
    index_path.write_text(json.dumps(index))


def test_key_mapping_rules():
    assert map_checkpoint_key("model.layers.3.mlp.up_proj.weight") == "lm.model.layers.3.mlp.up_proj.weight"
    assert map_checkpoint_key("lm_head.weight") == "lm.lm_head.weight"
    assert map_checkpoint_key("model.visual_model.mask_decoder.iou_token.weight") == "sam.mask_decoder.iou_token.weight"
    assert map_checkpoint_key("model.text_hidden_fcs.0.2.bias") == "text_hidden_fcs.0.2.bias"
    assert map_checkpoint_key("base_model.model.model.norm.weight") == "lm.model.norm.weight"
    assert map_checkpoint_key("model.something_else") is None
    for key in ("model.mm_projector.weight", "model.embed_tokens.weight", "model.visual_model.image_encoder.pos_embed"):
        assert checkpoint_key_for(map_checkpoint_key(key)) == key


@pytest.mark.parametrize("weight_format,num_shards", [("bin", 3), ("safetensors", 1), ("bin", 1)])
def test_all_weight_layouts_load_to_the_same_model(weight_format, num_shards):
    ref_ckpt = tiny_checkpoint()
    ckpt = tiny_checkpoint(weight_format=weight_format, num_shards=num_shards)
    files = sorted(p.name for p in ckpt.iterdir())
    assert any(f.endswith(weight_format) for f in files)
    assert (num_shards > 1) == any(f.endswith("index.json") for f in files)
    a, b = loaded(ref_ckpt).model.state_dict(), loaded(ckpt).model.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        if not k.startswith("vision_tower."):
            torch.testing.assert_close(a[k], b[k], rtol=0, atol=0)
    out_a, _ = engine(ref_ckpt).segment(smooth_image(), [QUERIES[0].text])
    out_b, _ = engine(ckpt).segment(smooth_image(), [QUERIES[0].text])
    np.testing.assert_allclose(out_a[0].embedding, out_b[0].embedding, atol=1e-6)


def test_legacy_rotary_buffers_are_ignored_not_loaded():
    report = loaded(tiny_checkpoint()).report
    assert report.ignored_keys == ["model.layers.0.self_attn.rotary_emb.inv_freq",
                                   "model.layers.1.self_attn.rotary_emb.inv_freq"]
    assert report.unexpected_keys == [] and report.num_tensors > 100


def test_missing_keys_are_named(tmp_path):
    ckpt = _copy(tiny_checkpoint(), tmp_path)
    removed = []

    def drop(sd, weight_map, shard):
        for key in sorted(sd)[:2]:
            removed.append(key)
            del sd[key]
            del weight_map[key]

    _edit_shard(ckpt, drop)
    with pytest.raises(BadInputError) as err:
        load_lisa(LisaConfig(checkpoint=str(ckpt)))
    msg = str(err.value)
    assert str(ckpt) in msg and "missing key(s)" in msg
    for key in removed:
        assert key in msg


def test_unexpected_keys_are_listed_and_optional(tmp_path):
    ckpt = _copy(tiny_checkpoint(), tmp_path)

    def add(sd, weight_map, shard):
        sd["model.extra_head.weight"] = torch.zeros(2, 2)
        weight_map["model.extra_head.weight"] = shard

    _edit_shard(ckpt, add)
    with pytest.raises(BadInputError, match=r"unexpected key\(s\) \[model\.extra_head\.weight\]"):
        load_lisa(LisaConfig(checkpoint=str(ckpt)))
    lo = load_lisa(LisaConfig(checkpoint=str(ckpt), strict=False))
    assert lo.report.unexpected_keys == ["model.extra_head.weight"]


def test_shape_mismatch_and_broken_index_are_named(tmp_path):
    ckpt = _copy(tiny_checkpoint(), tmp_path)
    target = "model.mm_projector.bias"

    def shrink(sd, weight_map, shard):
        if target not in sd:  # move it into this shard
            weight_map[target] = shard
        sd[target] = torch.zeros(3)

    _edit_shard(ckpt, shrink)
    for f in ckpt.glob("model-0000[2-9]*.safetensors"):  # drop a duplicate copy from the other shard
        sd = load_file(str(f))
        if target in sd:
            del sd[target]
            save_file(sd, str(f))
    with pytest.raises(BadInputError, match=r"shape mismatch.*model\.mm_projector\.bias: checkpoint \(3,\)"):
        load_lisa(LisaConfig(checkpoint=str(ckpt)))

    index = ckpt / "model.safetensors.index.json"
    data = json.loads(index.read_text())
    data["weight_map"]["model.norm.weight"] = "model-00009-of-00009.safetensors"
    index.write_text(json.dumps(data))
    with pytest.raises(BadInputError, match="model-00009-of-00009.safetensors"):
        load_lisa(LisaConfig(checkpoint=str(ckpt)))


def test_no_weights_or_config_are_clear_errors(tmp_path):
    with pytest.raises(BadInputError, match="no such directory"):
        load_lisa(LisaConfig(checkpoint=str(tmp_path / "nope")))
    ckpt = _copy(tiny_checkpoint(), tmp_path)
    for f in ckpt.glob("model*"):
        f.unlink()
    with pytest.raises(BadInputError, match="no weights found"):
        load_lisa(LisaConfig(checkpoint=str(ckpt)))
    (ckpt / "config.json").unlink()
    with pytest.raises(BadInputError, match="no config.json"):
        load_lisa(LisaConfig(checkpoint=str(ckpt)))


def test_seg_token_id_is_read_from_the_tokenizer():
    a, b = tiny_checkpoint(seg_token_first=False), tiny_checkpoint(seg_token_first=True)
    la, lb = loaded(a), loaded(b)
    assert la.token_ids.seg != lb.token_ids.seg
    for lo in (la, lb):
        assert lo.tokenizer.convert_ids_to_tokens(lo.token_ids.seg) == "[SEG]"
    for ckpt, lo in ((a, la), (b, lb)):
        out, _ = engine(ckpt).segment(smooth_image(), [QUERIES[1].text])
        assert out[0].has_seg and out[0].text == "Sure,[SEG]."  # 4.31 ids: no "▁" before [SEG]
        assert lo.token_ids.seg in out[0].answer_ids


def test_tokenizer_without_seg_is_rejected(tmp_path):
    ckpt = _copy(tiny_checkpoint(), tmp_path)
    tok = json.loads((ckpt / "tokenizer.json").read_text())
    tok["added_tokens"] = [t for t in tok["added_tokens"] if t["content"] != "[SEG]"]
    (ckpt / "tokenizer.json").write_text(json.dumps(tok))
    cfg_path = ckpt / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["added_tokens_decoder"] = {k: v for k, v in cfg.get("added_tokens_decoder", {}).items()
                                   if v["content"] != "[SEG]"}
    cfg_path.write_text(json.dumps(cfg))
    with pytest.raises(BadInputError, match=r"no \[SEG\] token"):
        load_lisa(LisaConfig(checkpoint=str(ckpt)))


def test_clip_folder_resolution(tmp_path):
    ckpt = _copy(tiny_checkpoint(), tmp_path)
    clip = ckpt.parent / "clip"
    assert load_lisa(LisaConfig(checkpoint=str(ckpt))).clip_dir == clip  # sibling fallback
    moved = tmp_path / "towers" / "clip-vit-tiny"
    moved.parent.mkdir()
    clip.rename(moved)
    with pytest.raises(BadInputError, match="cannot find the CLIP vision tower.*clip_path"):
        load_lisa(LisaConfig(checkpoint=str(ckpt)))
    assert load_lisa(LisaConfig(checkpoint=str(ckpt), clip_path=str(moved))).clip_dir == moved
    cfg = json.loads((ckpt / "config.json").read_text())
    cfg["mm_vision_tower"] = "../../towers/clip-vit-tiny"  # relative to the checkpoint folder
    (ckpt / "config.json").write_text(json.dumps(cfg))
    assert load_lisa(LisaConfig(checkpoint=str(ckpt))).clip_dir.resolve() == moved.resolve()


def test_sam_shape_inferred_for_real_vit_h_and_tiny():
    with torch.device("meta"):
        vit_h = build_sam(SamSpec())  # LISA's SAM ViT-H, no memory
    shapes = {k: tuple(v.shape) for k, v in vit_h.state_dict().items()}
    assert infer_sam_spec(shapes) == SamSpec()
    tiny = loaded(tiny_checkpoint()).model.arch.sam
    assert (tiny.encoder_embed_dim, tiny.encoder_global_attn_indexes, tiny.image_size, tiny.window_size) == (
        32, [1], 128, 4)


def test_builder_writes_released_layout(tmp_path):
    ckpt = build_tiny_lisa_checkpoint(tmp_path, seed=1, num_shards=3)
    index = json.loads((ckpt / "model.safetensors.index.json").read_text())["weight_map"]
    assert len(set(index.values())) == 3
    for key in ("model.embed_tokens.weight", "model.layers.1.mlp.down_proj.weight", "model.norm.weight",
                "lm_head.weight", "model.mm_projector.weight", "model.mm_projector.bias",
                "model.visual_model.image_encoder.patch_embed.proj.weight",
                "model.visual_model.prompt_encoder.no_mask_embed.weight",
                "model.visual_model.mask_decoder.iou_prediction_head.layers.2.weight",
                "model.text_hidden_fcs.0.0.weight", "model.text_hidden_fcs.0.2.bias"):
        assert key in index, key
    assert (tmp_path / "clip" / "config.json").is_file()
    cfg = json.loads((ckpt / "config.json").read_text())
    assert cfg["out_dim"] == 32 and cfg["mm_vision_select_layer"] == -2


def test_config_errors_name_the_key():
    with pytest.raises(BadInputError, match="unknown key.*'decodng'"):
        LisaConfig.from_dict({"checkpoint": "x", "decodng": "forced"})
    with pytest.raises(BadInputError, match="dtype"):
        LisaConfig.from_dict({"checkpoint": "x", "dtype": "float64"})
    with pytest.raises(BadInputError, match="checkpoint"):
        LisaConfig.from_dict({})
    with pytest.raises(BadInputError, match="feature_pool"):
        LisaConfig.from_dict({"checkpoint": "x", "feature_pool": 0})


def test_sam_weights_from_a_separate_official_sam_file(tmp_path):
    """A checkpoint without SAM's image encoder loads when `sam_checkpoint` supplies it (SAM key names)."""
    ckpt = _copy(tiny_checkpoint(), tmp_path)
    prefix = "model.visual_model."
    moved: dict[str, torch.Tensor] = {}
    for shard in sorted(ckpt.glob("model-*.safetensors")):
        sd = load_file(str(shard))
        for k in [k for k in sd if k.startswith(prefix + "image_encoder.")]:
            moved[k[len(prefix):]] = sd.pop(k)
        save_file(sd, str(shard))
    index_path = ckpt / "model.safetensors.index.json"
    index = json.loads(index_path.read_text())
    index["weight_map"] = {k: v for k, v in index["weight_map"].items() if not k.startswith(prefix + "image_encoder.")}
    index_path.write_text(json.dumps(index))
    sam_file = tmp_path / "sam_vit_tiny.pth"
    extra = {"mask_decoder.iou_token.weight": torch.full((1, 32), 7.0)}  # LISA's own decoder must win
    torch.save({**moved, **extra}, sam_file)

    with pytest.raises(BadInputError, match="model.visual_model.image_encoder.patch_embed.proj.weight"):
        load_lisa(LisaConfig(checkpoint=str(ckpt)))
    lo = load_lisa(LisaConfig(checkpoint=str(ckpt), sam_checkpoint=str(sam_file)))
    ref = loaded(tiny_checkpoint()).model.state_dict()
    got = lo.model.state_dict()
    for k in ("sam.image_encoder.patch_embed.proj.weight", "sam.mask_decoder.iou_token.weight"):
        torch.testing.assert_close(got[k], ref[k], rtol=0, atol=0)


def test_wrapped_vision_tower_keys_are_ignored_under_strict(tmp_path):
    """``base_model.model.model.vision_tower.*`` is the CLIP tower behind a wrapper: ignored, not unexpected."""
    from mllm3d.stage1_pseudolabel.lisa.checkpoint_files import is_ignored_key

    assert is_ignored_key("base_model.model.model.vision_tower.vision_model.post_layernorm.weight")
    assert is_ignored_key("module.model.layers.0.self_attn.rotary_emb.inv_freq")
    assert not is_ignored_key("base_model.model.model.extra.weight")
    ckpt = _copy(tiny_checkpoint(), tmp_path)
    wrapped = "base_model.model.model.vision_tower.vision_model.embeddings.class_embedding"

    def add(sd, weight_map, shard):
        sd[wrapped] = torch.zeros(4)
        weight_map[wrapped] = shard

    _edit_shard(ckpt, add)
    lo = load_lisa(LisaConfig(checkpoint=str(ckpt), strict=True))
    assert wrapped in lo.report.ignored_keys and lo.report.unexpected_keys == []
