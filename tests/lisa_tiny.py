"""A tiny random-weight LISA saved in the released checkpoint layout (for tests and the CPU benchmark).

``build_tiny_lisa_checkpoint(out_dir)`` writes::

    out_dir/LISA-tiny/   config.json (LISA fields), tokenizer.json + configs ([SEG], <im_start>, <im_end>
                         added; [SEG]'s id depends on ``seg_token_first``), weight shards + index json
    out_dir/clip/        a tiny full CLIPModel (like openai/clip-vit-large-patch14) + preprocessor_config.json

The weights use LISA's key names (``model.layers.…``, ``model.visual_model.…``, ``model.text_hidden_fcs.0.0.…``)
built from independent modules (a LlamaForCausalLM, a SAM, a Linear, the bridge), not from LisaModel,
so loading them back exercises the real key mapping.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import save_file
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from torch import nn
from transformers import CLIPConfig, CLIPModel, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from mllm3d.stage1_pseudolabel.lisa.checkpoint import quiet_transformers
from mllm3d.stage1_pseudolabel.lisa.preprocess import CLIP_MEAN, CLIP_STD
from mllm3d.stage1_pseudolabel.lisa.sam_shim import SamSpec, build_sam
from mllm3d.stage1_pseudolabel.lisa.tokenizer import IM_END_TOKEN, IM_START_TOKEN, LLAVA_V1_SYSTEM, SEG_TOKEN

_CORPUS = [
    LLAVA_V1_SYSTEM,
    "USER: ASSISTANT: Sure, it is. Please output segmentation mask.",
    "the chair near the table where is the lamp on the desk find the bookshelf office chair",
    "Which object can I sit on? the white cabinet next to the door, a monitor, bed, sofa, window.",
]


@dataclass
class TinyLisaSpec:
    """Sizes of the tiny model (defaults: fast enough for unit tests on one CPU core)."""

    hidden_size: int = 64
    intermediate_size: int = 128
    num_layers: int = 2
    num_heads: int = 4
    clip_hidden: int = 32
    clip_layers: int = 2
    clip_heads: int = 2
    clip_image_size: int = 224
    clip_patch_size: int = 14
    sam: SamSpec = field(default_factory=lambda: SamSpec(
        encoder_embed_dim=32, encoder_depth=2, encoder_num_heads=2, encoder_global_attn_indexes=[1],
        image_size=128, patch_size=16, window_size=4, prompt_embed_dim=32, decoder_depth=2,
        decoder_mlp_dim=64, decoder_num_heads=2, iou_head_hidden_dim=32,
    ))
    bpe_vocab: int = 400


def build_tiny_tokenizer(seg_token_first: bool = False, vocab_size: int = 400) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer (LLaMA-style special ids 0/1/2) with LISA's added tokens."""
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=["<unk>", "<s>", "</s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
    )
    tok.train_from_iterator(_CORPUS, trainer)
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A $B", special_tokens=[("<s>", 1)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                                   pad_token="<unk>")
    order = [SEG_TOKEN, IM_START_TOKEN, IM_END_TOKEN] if seg_token_first else [IM_START_TOKEN, IM_END_TOKEN, SEG_TOKEN]
    for t in order:  # LISA: tokenizer.add_tokens("[SEG]"); <im_start>/<im_end> as special tokens
        fast.add_tokens([AddedToken(t, special=t != SEG_TOKEN, normalized=False)])
    return fast


def _tiny_clip(spec: TinyLisaSpec) -> CLIPModel:
    cfg = CLIPConfig(
        text_config={"vocab_size": 99, "hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1,
                     "num_attention_heads": 2, "max_position_embeddings": 16, "bos_token_id": 1,
                     "eos_token_id": 2, "pad_token_id": 0},
        vision_config={"hidden_size": spec.clip_hidden, "intermediate_size": 2 * spec.clip_hidden,
                       "num_hidden_layers": spec.clip_layers, "num_attention_heads": spec.clip_heads,
                       "image_size": spec.clip_image_size, "patch_size": spec.clip_patch_size},
        projection_dim=16,
    )
    return CLIPModel(cfg).eval()


def lisa_layout_state_dict(lm: nn.Module, projector: nn.Module, sam: nn.Module, bridge: nn.Module,
                           legacy_rotary_keys: bool = True) -> dict[str, torch.Tensor]:
    """Key names as in a released LISA checkpoint (LISAForCausalLM's module tree)."""
    sd = {k: v for k, v in lm.state_dict().items()}  # model.embed_tokens / model.layers / model.norm / lm_head
    sd.update({f"model.mm_projector.{k}": v for k, v in projector.state_dict().items()})
    sd.update({f"model.visual_model.{k}": v for k, v in sam.state_dict().items()})
    sd.update({f"model.text_hidden_fcs.{k}": v for k, v in bridge.state_dict().items()})
    if legacy_rotary_keys:  # transformers 4.31-era checkpoints carry these buffers
        head_dim = lm.config.hidden_size // lm.config.num_attention_heads
        inv = 1.0 / (10000.0 ** (torch.arange(0, head_dim, 2).float() / head_dim))
        for i in range(lm.config.num_hidden_layers):
            sd[f"model.layers.{i}.self_attn.rotary_emb.inv_freq"] = inv
    return {k: v.detach().clone().contiguous() for k, v in sd.items()}


def save_sharded(sd: dict[str, torch.Tensor], out: Path, weight_format: str = "safetensors",
                 num_shards: int = 2) -> list[Path]:
    """Write HF-style shards + index json (``num_shards`` 1 = one unsharded file, no index)."""
    if weight_format not in ("safetensors", "bin"):
        raise ValueError(f"weight_format {weight_format!r} not in ('safetensors', 'bin')")
    keys = sorted(sd)
    if num_shards <= 1:
        path = out / ("model.safetensors" if weight_format == "safetensors" else "pytorch_model.bin")
        _save(sd, path, weight_format)
        return [path]
    per = -(-len(keys) // num_shards)
    weight_map, paths = {}, []
    for i in range(num_shards):
        part = {k: sd[k] for k in keys[i * per : (i + 1) * per]}
        stem = "model" if weight_format == "safetensors" else "pytorch_model"
        ext = "safetensors" if weight_format == "safetensors" else "bin"
        name = f"{stem}-{i + 1:05d}-of-{num_shards:05d}.{ext}"
        _save(part, out / name, weight_format)
        weight_map.update({k: name for k in part})
        paths.append(out / name)
    index = "model.safetensors.index.json" if weight_format == "safetensors" else "pytorch_model.bin.index.json"
    total = sum(v.numel() * v.element_size() for v in sd.values())
    (out / index).write_text(json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=1))
    return paths


def _save(sd: dict[str, torch.Tensor], path: Path, weight_format: str) -> None:
    if weight_format == "safetensors":
        save_file(sd, str(path), metadata={"format": "pt"})
    else:
        torch.save(sd, path)


def build_tiny_lisa_checkpoint(
    out_dir: str | Path,
    seed: int = 0,
    seg_token_first: bool = False,
    *,
    spec: TinyLisaSpec | None = None,
    weight_format: str = "safetensors",
    num_shards: int = 2,
    legacy_rotary_keys: bool = True,
    name: str = "LISA-tiny",
) -> Path:
    """Write a tiny random LISA checkpoint + its CLIP folder under ``out_dir``; return the checkpoint dir."""
    spec = spec or TinyLisaSpec()
    out_dir = Path(out_dir)
    ckpt, clip_dir = out_dir / name, out_dir / "clip"
    ckpt.mkdir(parents=True, exist_ok=True)
    clip_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)

    tokenizer = build_tiny_tokenizer(seg_token_first, spec.bpe_vocab)
    tokenizer.save_pretrained(str(ckpt))
    vocab = len(tokenizer)

    clip = _tiny_clip(spec)
    with quiet_transformers():
        clip.save_pretrained(str(clip_dir))
    (clip_dir / "preprocessor_config.json").write_text(json.dumps({
        "image_processor_type": "CLIPImageProcessor", "do_resize": True, "resample": 3,
        "size": {"shortest_edge": spec.clip_image_size}, "do_center_crop": True,
        "crop_size": {"height": spec.clip_image_size, "width": spec.clip_image_size},
        "do_rescale": True, "rescale_factor": 1 / 255, "do_normalize": True,
        "image_mean": list(CLIP_MEAN), "image_std": list(CLIP_STD),
    }, indent=1))

    llama_cfg = LlamaConfig(
        vocab_size=vocab, hidden_size=spec.hidden_size, intermediate_size=spec.intermediate_size,
        num_hidden_layers=spec.num_layers, num_attention_heads=spec.num_heads, num_key_value_heads=spec.num_heads,
        rms_norm_eps=1e-6, bos_token_id=1, eos_token_id=2, pad_token_id=0, tie_word_embeddings=False,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
    )
    lm = LlamaForCausalLM(llama_cfg)
    projector = nn.Linear(spec.clip_hidden, spec.hidden_size)
    sam = build_sam(spec.sam)
    with torch.no_grad():  # SAM's zero-initialised position tables would make the tiny model too regular
        sam.image_encoder.pos_embed.normal_(0, 0.02)
    out_dim = spec.sam.prompt_embed_dim
    bridge = nn.ModuleList([nn.Sequential(nn.Linear(spec.hidden_size, spec.hidden_size), nn.ReLU(inplace=True),
                                          nn.Linear(spec.hidden_size, out_dim), nn.Dropout(0.0))])
    sd = lisa_layout_state_dict(lm, projector, sam, bridge, legacy_rotary_keys)
    save_sharded(sd, ckpt, weight_format, num_shards)

    config = {
        "architectures": ["LISAForCausalLM"],
        "model_type": "llava",
        "hidden_size": spec.hidden_size,
        "intermediate_size": spec.intermediate_size,
        "num_hidden_layers": spec.num_layers,
        "num_attention_heads": spec.num_heads,
        "num_key_value_heads": spec.num_heads,
        "hidden_act": "silu",
        "max_position_embeddings": 2048,
        "rms_norm_eps": 1e-6,
        "vocab_size": vocab,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "pad_token_id": 0,
        "tie_word_embeddings": False,
        "mm_hidden_size": spec.clip_hidden,
        "mm_vision_select_layer": -2,
        "mm_vision_select_feature": "patch",
        "mm_use_im_start_end": True,
        "mm_use_im_patch_token": False,
        "mm_vision_tower": "openai/clip-vit-large-patch14",  # a hub id, as released: resolved to ../clip
        "out_dim": out_dim,
        "sam_decoder_num_heads": spec.sam.decoder_num_heads,
        "torch_dtype": "float32",
    }
    (ckpt / "config.json").write_text(json.dumps(config, indent=1))
    return ckpt
