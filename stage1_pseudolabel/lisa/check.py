"""``mllm3d lisa check``: the dry run before spending GPU hours on a LISA checkpoint.

Reads only metadata: config.json, the tokenizer files, the CLIP folder's configs, and tensor shapes from
the weight index and file headers (safetensors headers; ``.bin`` files are memory-mapped, not read). The
model is built on the meta device and every checkpoint key is mapped onto it, exactly as
:func:`~mllm3d.stage1_pseudolabel.lisa.checkpoint.load_lisa` does before it reads a weight. Nothing runs on a GPU.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from mllm3d.shared.errors import BadInputError

from .checkpoint import plan_load, read_lisa_config, resolve_clip_path
from .checkpoint_files import CheckpointFiles
from .config import DEFAULT_FORCED_ANSWER, DEFAULT_PROMPT
from .preprocess import ClipPreprocess
from .tokenizer import (
    IM_END_TOKEN,
    IM_START_TOKEN,
    llava_v1_prompt,
    load_tokenizer,
    special_token_ids,
    tokenize_prompt,
)

EXAMPLE_QUERY = "something I can sit on near the window"


@dataclass
class CheckReport:
    """What the dry run found: ``sections`` of (name, value) rows, and the problems that block loading."""

    checkpoint: Path
    sections: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def add(self, section: str, name: str, value: object) -> None:
        self.sections.setdefault(section, []).append((name, str(value)))


def _clip_hidden_size(clip_dir: Path) -> tuple[int, int, int]:
    """(hidden size, image size, patch size) from a CLIP folder's config.json (CLIPModel or vision-only)."""
    path = clip_dir / "config.json"
    try:
        cfg = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise BadInputError(f"{path}: unreadable json ({e})") from e
    vision = cfg.get("vision_config", cfg)
    try:
        return int(vision["hidden_size"]), int(vision["image_size"]), int(vision["patch_size"])
    except (KeyError, TypeError, ValueError) as e:
        raise BadInputError(f"{path}: not a CLIP vision config (missing {e})") from e


def check_checkpoint(checkpoint: str | Path, clip: str | Path | None = None, *,
                     sam_decoder_heads: int | None = None) -> CheckReport:
    """Everything :func:`load_lisa` would check, without reading the weights; problems are collected."""
    ckpt = Path(checkpoint)
    rep = CheckReport(checkpoint=ckpt)
    try:
        lisa_cfg = read_lisa_config(ckpt)
    except BadInputError as e:
        rep.problems.append(str(e))
        return rep
    rep.add("config", "model_type / architectures", f"{lisa_cfg.get('model_type')} / {lisa_cfg.get('architectures')}")
    rep.add("config", "Llama", f"hidden {lisa_cfg['hidden_size']}, layers {lisa_cfg['num_hidden_layers']}, "
            f"heads {lisa_cfg['num_attention_heads']}, vocab {lisa_cfg['vocab_size']}")

    use_im = bool(lisa_cfg.get("mm_use_im_start_end", True))
    try:
        tok = load_tokenizer(ckpt)
        ids = special_token_ids(tok, str(ckpt))
        vocab = tok.get_vocab()
        rep.add("tokenizer", "class", type(tok).__name__)
        rep.add("tokenizer", "[SEG] id", ids.seg)
        rep.add("tokenizer", "bos / eos / pad", f"{ids.bos} / {ids.eos} / {ids.pad}")
        for name in (IM_START_TOKEN, IM_END_TOKEN):
            if use_im and name not in vocab:
                rep.problems.append(f"{ckpt}: mm_use_im_start_end is set but the tokenizer has no {name}")
            rep.add("tokenizer", f"{name} id", vocab.get(name, "-"))
        if len(tok) > int(lisa_cfg["vocab_size"]):
            rep.problems.append(f"{ckpt}: tokenizer has {len(tok)} tokens > vocab_size {lisa_cfg['vocab_size']}")
        instruction = DEFAULT_PROMPT.replace("{query}", EXAMPLE_QUERY)
        prompt = tokenize_prompt(tok, llava_v1_prompt(instruction, answer=DEFAULT_FORCED_ANSWER,
                                                      use_im_start_end=use_im), ids.bos)
        shown = tok.convert_ids_to_tokens(prompt.prefix[-4:]) + ["<image: CLIP tokens>"] + \
            tok.convert_ids_to_tokens(prompt.suffix)
        rep.add("prompt", "query", EXAMPLE_QUERY)
        rep.add("prompt", "ids", f"{len(prompt.prefix)} + image + {len(prompt.suffix)}")
        rep.add("prompt", "tokens", " ".join(shown))
    except BadInputError as e:
        rep.problems.append(str(e))

    mm_hidden = None
    try:
        clip_dir = resolve_clip_path(str(clip) if clip else None, ckpt, lisa_cfg)
        mm_hidden, image_size, patch = _clip_hidden_size(clip_dir)
        pre = ClipPreprocess.from_dir(clip_dir, image_size)
        rep.add("clip", "folder", clip_dir)
        rep.add("clip", "hidden / image / patch", f"{mm_hidden} / {image_size} / {patch} "
                f"({(image_size // patch) ** 2} patch tokens)")
        rep.add("clip", "preprocess", f"shortest edge {pre.shortest_edge}, crop {pre.crop_size}, "
                f"centre crop {pre.do_center_crop}")
        rep.add("clip", "select layer / feature",
                f"{lisa_cfg.get('mm_vision_select_layer', -2)} / {lisa_cfg.get('mm_vision_select_feature', 'patch')}")
    except BadInputError as e:
        rep.problems.append(str(e))

    try:
        files = CheckpointFiles(ckpt)
        shapes = files.shapes()
        rep.add("weights", "files", ", ".join(p.name for p in files.files))
        rep.add("weights", "tensors", f"{len(shapes)} ({sum(_numel(s) for s in shapes.values()):,} numbers)")
        if mm_hidden is not None:
            plan = plan_load(lisa_cfg, shapes, decoder_heads=sam_decoder_heads, mm_hidden_size=mm_hidden,
                             ckpt_dir=ckpt, strict=True)
            sam = plan.arch.sam
            rep.add("weights", "mapped / missing / unexpected", f"{len(plan.mapping)} / 0 / 0")
            rep.add("weights", "ignored", f"{len(plan.report.ignored_keys)} "
                    f"({_summarise(plan.report.ignored_keys)})")
            rep.add("sam", "variant", _sam_variant(sam.encoder_embed_dim, sam.encoder_depth))
            rep.add("sam", "encoder", f"embed {sam.encoder_embed_dim}, depth {sam.encoder_depth}, "
                    f"heads {sam.encoder_num_heads}, global {sam.encoder_global_attn_indexes}")
            rep.add("sam", "decoder", f"depth {sam.decoder_depth}, mlp {sam.decoder_mlp_dim}, "
                    f"heads {sam.decoder_num_heads} (not visible in shapes), out {plan.arch.out_dim}")
    except BadInputError as e:
        rep.problems.append(str(e))
    return rep


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n


def _summarise(keys: list[str]) -> str:
    kinds = sorted({k.rsplit(".", 1)[-1] if "inv_freq" in k else k.split(".")[1] for k in keys})
    return ", ".join(kinds) if kinds else "none"


def _sam_variant(embed: int, depth: int) -> str:
    known = {(1280, 32): "ViT-H (LISA's)", (1024, 24): "ViT-L", (768, 12): "ViT-B"}
    return known.get((embed, depth), f"custom (embed {embed}, depth {depth})")
