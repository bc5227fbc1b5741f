"""Load a released LISA checkpoint folder (HF layout) onto :class:`LisaModel`.

A released folder (e.g. ``LISA-7B-v1``, ``LISA-13B-llama2-v1``) holds ``config.json``, tokenizer files and
weights as ``*.safetensors`` / ``pytorch_model*.bin`` shards with an index json, or a single unsharded
file. Its keys follow LISA's module tree and are mapped by prefix (:data:`checkpoint_files.KEY_PREFIXES`)::

    model.embed_tokens.* / model.layers.{i}.* / model.norm.*  -> lm.model.*
    lm_head.*                                                -> lm.lm_head.*
    model.mm_projector.*                                     -> mm_projector.*
    model.visual_model.{image_encoder,prompt_encoder,mask_decoder}.* -> sam.*
    model.text_hidden_fcs.0.{0,2}.*                          -> text_hidden_fcs.0.{0,2}.*

The key set is read from the checkpoint (index or file headers) and compared with the model before
any weight is read: missing keys, unexpected keys and shape mismatches raise one BadInputError listing
them. SAM's shape is inferred from the checkpoint's tensor shapes; the CLIP tower comes from its own folder.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from transformers import CLIPVisionModel, PreTrainedTokenizerBase

from mllm3d.shared.errors import BadInputError

from .checkpoint_files import (
    WEIGHT_SUFFIXES,
    CheckpointFiles,
    checkpoint_key_for,
    is_ignored_key,
    map_checkpoint_key,
)
from .config import LisaConfig
from .model import LisaArch, LisaModel, llama_config_from_lisa
from .preprocess import ClipPreprocess
from .sam_shim import infer_sam_spec
from .tokenizer import SpecialTokenIds, load_tokenizer, special_token_ids


@contextlib.contextmanager
def params_on_meta() -> Iterator[None]:
    """Create every nn.Parameter on the meta device (buffers stay real), like accelerate's
    ``init_empty_weights``: building a 7B model then costs no memory until weights are assigned."""
    original = nn.Module.register_parameter

    def register(module: nn.Module, name: str, param: nn.Parameter | None) -> None:
        original(module, name, param)
        if param is not None and param.device.type != "meta":
            kwargs = {"requires_grad": param.requires_grad}
            module._parameters[name] = type(param)(param.to("meta"), **kwargs)

    nn.Module.register_parameter = register
    try:
        yield
    finally:
        nn.Module.register_parameter = original


def sam_weight_file(path: str) -> Path:
    """An official SAM state dict (``sam_vit_h_4b8939.pth`` …): the file, or the one weight file in a folder."""
    p = Path(path)
    if p.is_dir():
        found = sorted(f for f in p.iterdir() if f.suffix in WEIGHT_SUFFIXES)
        if len(found) != 1:
            raise BadInputError(f"sam_checkpoint {path}: expected exactly one weight file, found {[f.name for f in found]}")
        p = found[0]
    if not p.is_file():
        raise BadInputError(f"sam_checkpoint {path}: no such file")
    return p


def read_lisa_config(ckpt_dir: Path) -> dict:
    path = Path(ckpt_dir) / "config.json"
    if not path.is_file():
        raise BadInputError(f"{ckpt_dir}: not a LISA checkpoint folder (no config.json)")
    try:
        cfg = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise BadInputError(f"{path}: unreadable json ({e})") from e
    missing = [k for k in ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                           "vocab_size") if k not in cfg]
    if missing:
        raise BadInputError(f"{path}: missing Llama field(s) {missing}")
    return cfg


def resolve_clip_path(clip_path: str | None, ckpt_dir: Path, lisa_cfg: dict) -> Path:
    """The CLIP folder: ``clip_path`` if given, else the checkpoint config's vision tower if it is a
    local folder (absolute or relative to the checkpoint), else a ``clip`` folder beside or inside it."""
    def ok(p: Path) -> bool:
        return p.is_dir() and (p / "config.json").is_file()

    if clip_path:
        p = Path(clip_path)
        if not ok(p):
            raise BadInputError(f"clip_path {clip_path}: not a folder with a config.json (a CLIP checkpoint)")
        return p
    tried: list[Path] = []
    for name in (lisa_cfg.get("mm_vision_tower"), lisa_cfg.get("vision_tower")):
        if isinstance(name, str) and name:
            for cand in ([Path(name)] if Path(name).is_absolute() else [ckpt_dir / name]):
                tried.append(cand)
                if ok(cand):
                    return cand
    for cand in (ckpt_dir.parent / "clip", ckpt_dir / "clip"):
        tried.append(cand)
        if ok(cand):
            return cand
    raise BadInputError(
        f"{ckpt_dir}: cannot find the CLIP vision tower locally; tried {[str(t) for t in tried]}. "
        "Set clip_path to a local openai/clip-vit-large-patch14 folder"
    )


def load_vision_tower(clip_dir: Path, dtype: torch.dtype) -> CLIPVisionModel:
    """CLIP vision tower from a local folder (a full CLIPModel or a CLIPVisionModel checkpoint)."""
    try:
        with quiet_transformers():
            tower, info = CLIPVisionModel.from_pretrained(
                str(clip_dir), dtype=dtype, local_files_only=True, output_loading_info=True,
                attn_implementation="eager",
            )
    except Exception as e:
        raise BadInputError(f"{clip_dir}: cannot load the CLIP vision tower ({type(e).__name__}: {e})") from e
    missing = [k for k in info.get("missing_keys", []) if "position_ids" not in k]
    if missing:
        raise BadInputError(f"{clip_dir}: CLIP weights are missing key(s) {sorted(missing)[:20]}")
    return tower.eval()


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """Silence transformers' load reports and progress bars (e.g. CLIP's unused text weights)."""
    from transformers.utils import logging as hf_logging

    level, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()


@dataclass
class LoadReport:
    """What the loader found (for logs and config_dict)."""

    files: list[str]
    num_tensors: int
    ignored_keys: list[str] = field(default_factory=list)
    unexpected_keys: list[str] = field(default_factory=list)


@dataclass
class LoadedLisa:
    """Everything the inference engine needs, loaded from local folders."""

    model: LisaModel
    tokenizer: PreTrainedTokenizerBase
    token_ids: SpecialTokenIds
    clip_preprocess: ClipPreprocess
    checkpoint_dir: Path
    clip_dir: Path
    fingerprint: str
    report: LoadReport


def _fmt(keys: list[str], limit: int = 20) -> str:
    head = ", ".join(keys[:limit])
    return f"[{head}{', …' if len(keys) > limit else ''}] ({len(keys)})"


def check_keys(
    ckpt_dir: Path, expected: dict[str, tuple[int, ...]], ckpt_shapes: dict[str, tuple[int, ...]], *,
    strict: bool, tied_lm_head: bool = False,
) -> tuple[dict[str, str], LoadReport]:
    """Map checkpoint keys onto model keys; raise one BadInputError listing every problem."""
    mapping: dict[str, str] = {}
    ignored, unexpected, mismatched = [], [], []
    for key in sorted(ckpt_shapes):
        target = map_checkpoint_key(key)
        if target is None or target not in expected:
            (ignored if is_ignored_key(key) else unexpected).append(key)
            continue
        if tuple(ckpt_shapes[key]) != tuple(expected[target]):
            mismatched.append(f"{key}: checkpoint {tuple(ckpt_shapes[key])} vs model {tuple(expected[target])}")
            continue
        mapping[key] = target
    covered = set(mapping.values()) | {map_checkpoint_key(k) for k in ckpt_shapes}
    missing = sorted(checkpoint_key_for(t) for t in expected
                     if t not in covered and not (tied_lm_head and t == "lm.lm_head.weight"))
    problems = []
    if missing:
        problems.append(f"missing key(s) {_fmt(missing)}")
    if unexpected and strict:
        problems.append(f"unexpected key(s) {_fmt(unexpected)} (set strict: false to ignore them)")
    if mismatched:
        problems.append(f"shape mismatch {_fmt(mismatched)}")
    if problems:
        raise BadInputError(f"{ckpt_dir}: checkpoint does not match the LISA architecture: " + "; ".join(problems))
    return mapping, LoadReport(files=[], num_tensors=len(mapping), ignored_keys=ignored, unexpected_keys=unexpected)


def build_arch(lisa_cfg: dict, ckpt_shapes: dict[str, tuple[int, ...]], *, decoder_heads: int | None,
               mm_hidden_size: int, source: str) -> LisaArch:
    """The model shape from config.json (Llama, bridge) and the checkpoint's SAM tensor shapes."""
    sam_shapes = {}
    for k, shape in ckpt_shapes.items():
        target = map_checkpoint_key(k)
        if target is not None and target.startswith("sam."):
            sam_shapes[target[len("sam."):]] = shape
    heads = decoder_heads or int(lisa_cfg.get("sam_decoder_num_heads", 8))
    sam = infer_sam_spec(sam_shapes, decoder_num_heads=heads, source=source, key_prefix="model.visual_model.")
    out_dim = int(lisa_cfg.get("out_dim", sam.prompt_embed_dim))
    if out_dim != sam.prompt_embed_dim:
        raise BadInputError(f"{source}: config out_dim {out_dim} != SAM prompt dim {sam.prompt_embed_dim}")
    cfg_mm = lisa_cfg.get("mm_hidden_size")
    if cfg_mm is not None and int(cfg_mm) != mm_hidden_size:
        raise BadInputError(f"{source}: config mm_hidden_size {cfg_mm} != the CLIP tower's hidden size {mm_hidden_size}")
    return LisaArch(
        llama=llama_config_from_lisa(lisa_cfg),
        mm_hidden_size=mm_hidden_size,
        out_dim=out_dim,
        vision_select_layer=int(lisa_cfg.get("mm_vision_select_layer", -2)),
        vision_select_feature=str(lisa_cfg.get("mm_vision_select_feature", "patch")),
        use_im_start_end=bool(lisa_cfg.get("mm_use_im_start_end", True)),
        sam=sam,
    )


@dataclass
class LoadPlan:
    """The model built on the meta device and how each checkpoint key maps onto it (nothing read yet)."""

    arch: LisaArch
    model: LisaModel  # parameters on the meta device
    mapping: dict[str, str]  # checkpoint key -> model key
    report: LoadReport


def plan_load(lisa_cfg: dict, ckpt_shapes: dict[str, tuple[int, ...]], *, decoder_heads: int | None,
              mm_hidden_size: int, ckpt_dir: Path, strict: bool = True) -> LoadPlan:
    """Infer the architecture from config.json and the tensor shapes, build it on the meta device and map
    every checkpoint key onto it; raises one BadInputError listing missing/unexpected/mismatched keys."""
    arch = build_arch(lisa_cfg, ckpt_shapes, decoder_heads=decoder_heads, mm_hidden_size=mm_hidden_size,
                      source=str(ckpt_dir))
    with params_on_meta():
        model = LisaModel(arch)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    mapping, report = check_keys(ckpt_dir, expected, ckpt_shapes, strict=strict,
                                 tied_lm_head=arch.llama.tie_word_embeddings)
    return LoadPlan(arch=arch, model=model, mapping=mapping, report=report)


def load_lisa(cfg: LisaConfig) -> LoadedLisa:
    """Load tokenizer, CLIP tower and the LISA weights from local folders, on ``cfg.device``/``cfg.dtype``."""
    ckpt_dir = Path(cfg.checkpoint)
    if not ckpt_dir.is_dir():
        raise BadInputError(f"checkpoint {cfg.checkpoint}: no such directory")
    lisa_cfg = read_lisa_config(ckpt_dir)
    tokenizer = load_tokenizer(ckpt_dir)
    ids = special_token_ids(tokenizer, str(ckpt_dir))
    dtype = cfg.torch_dtype
    clip_dir = resolve_clip_path(cfg.clip_path, ckpt_dir, lisa_cfg)
    tower = load_vision_tower(clip_dir, dtype)

    files = CheckpointFiles(ckpt_dir)
    ckpt_shapes = files.shapes()
    sources = [files]
    if cfg.sam_checkpoint:  # fills SAM weights the LISA checkpoint lacks; LISA's own (trained) ones win
        sam_files = CheckpointFiles(sam_weight_file(cfg.sam_checkpoint), key_prefix="model.visual_model.")
        fill = {k: v for k, v in sam_files.shapes().items() if k not in ckpt_shapes}
        sam_files.restrict(fill)
        ckpt_shapes = {**ckpt_shapes, **fill}
        sources.append(sam_files)
    plan = plan_load(lisa_cfg, ckpt_shapes, decoder_heads=cfg.sam_decoder_heads,
                     mm_hidden_size=int(tower.config.hidden_size), ckpt_dir=ckpt_dir, strict=cfg.strict)
    arch, model, mapping, report = plan.arch, plan.model, plan.mapping, plan.report
    if len(tokenizer) > arch.llama.vocab_size:
        raise BadInputError(f"{ckpt_dir}: tokenizer has {len(tokenizer)} tokens > vocab_size {arch.llama.vocab_size}")
    buffers = {name for name, _ in model.named_buffers()}  # e.g. SAM's positional gaussian: kept float32
    for path, sd in (item for src in sources for item in src.iter_files()):
        part = {}
        for key, tensor in sd.items():
            if key in mapping:
                target = mapping[key]
                cast = tensor.is_floating_point() and target not in buffers
                part[target] = tensor.to(dtype) if cast else tensor.float() if tensor.is_floating_point() else tensor
        model.load_state_dict(part, strict=False, assign=True)
        report.files.append(path.name)
    if arch.llama.tie_word_embeddings:
        model.lm.lm_head.weight = model.lm.model.embed_tokens.weight
    still_meta = [n for n, p in model.named_parameters() if p.device.type == "meta"]
    if still_meta:  # guarded by check_keys; kept as a last line of defence
        raise BadInputError(f"{ckpt_dir}: parameters not loaded {_fmt(still_meta)}")
    model.vision_tower = tower
    model = model.to(torch.device(cfg.device)).eval().requires_grad_(False)
    return LoadedLisa(
        model=model,
        tokenizer=tokenizer,
        token_ids=ids,
        clip_preprocess=ClipPreprocess.from_dir(clip_dir, int(tower.config.image_size)),
        checkpoint_dir=ckpt_dir,
        clip_dir=clip_dir,
        fingerprint="+".join(src.fingerprint() for src in sources),
        report=report,
    )
