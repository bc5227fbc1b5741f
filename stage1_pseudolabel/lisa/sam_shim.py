"""Import ``segment_anything`` without torchvision, and build a SAM whose shape matches a checkpoint.

``segment_anything/__init__.py`` imports torchvision (undeclared; it must not be installed here). When
torchvision is absent, :func:`import_sam_modeling` puts throw-away stub modules in ``sys.modules`` just
for that import and removes them afterwards, so nobody else ever sees a fake torchvision. The stubbed
functions (``resize``, ``to_pil_image``, ``batched_nms``, ``box_area``) raise if called; the LISA backend
only uses ``segment_anything.modeling``.
"""

from __future__ import annotations

import importlib
import importlib.util
import re
import sys
import types
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import partial

from torch import nn

from mllm3d.shared.errors import BadInputError

_STUB_NAMES = (
    "torchvision",
    "torchvision.transforms",
    "torchvision.transforms.functional",
    "torchvision.ops",
    "torchvision.ops.boxes",
)


def _unavailable(name: str):
    def fn(*args, **kwargs):
        raise RuntimeError(f"torchvision.{name} is not available (stub installed by the lisa sam_shim)")

    return fn


def _make_stubs() -> dict[str, types.ModuleType]:
    mods = {name: types.ModuleType(name) for name in _STUB_NAMES}
    fn = mods["torchvision.transforms.functional"]
    fn.resize = _unavailable("transforms.functional.resize")
    fn.to_pil_image = _unavailable("transforms.functional.to_pil_image")
    boxes = mods["torchvision.ops.boxes"]
    boxes.batched_nms = _unavailable("ops.boxes.batched_nms")
    boxes.box_area = _unavailable("ops.boxes.box_area")
    mods["torchvision"].transforms = mods["torchvision.transforms"]
    mods["torchvision"].ops = mods["torchvision.ops"]
    mods["torchvision.transforms"].functional = fn
    mods["torchvision.ops"].boxes = boxes
    return mods


def import_sam_modeling() -> types.ModuleType:
    """Return ``segment_anything.modeling``; stubs torchvision only for the import if it is absent."""
    if "segment_anything.modeling" in sys.modules:
        return sys.modules["segment_anything.modeling"]
    if "torchvision" in sys.modules or importlib.util.find_spec("torchvision") is not None:
        return importlib.import_module("segment_anything.modeling")
    stubs = _make_stubs()
    sys.modules.update(stubs)
    try:
        return importlib.import_module("segment_anything.modeling")
    finally:
        for name, mod in stubs.items():
            if sys.modules.get(name) is mod:
                del sys.modules[name]


@dataclass
class SamSpec:
    """Shape of a SAM model (defaults: ViT-H, as in LISA)."""

    encoder_embed_dim: int = 1280
    encoder_depth: int = 32
    encoder_num_heads: int = 16
    encoder_global_attn_indexes: list[int] = field(default_factory=lambda: [7, 15, 23, 31])
    encoder_mlp_ratio: float = 4.0
    image_size: int = 1024
    patch_size: int = 16
    window_size: int = 14
    prompt_embed_dim: int = 256
    decoder_depth: int = 2
    decoder_mlp_dim: int = 2048
    decoder_num_heads: int = 8
    num_multimask_outputs: int = 3
    iou_head_depth: int = 3
    iou_head_hidden_dim: int = 256

    @property
    def embedding_size(self) -> int:
        """Side of the image embedding grid (64 for SAM at 1024 px)."""
        return self.image_size // self.patch_size


def build_sam(spec: SamSpec) -> nn.Module:
    """A ``segment_anything.modeling.Sam`` with the given shape (random init)."""
    m = import_sam_modeling()
    encoder = m.ImageEncoderViT(
        depth=spec.encoder_depth,
        embed_dim=spec.encoder_embed_dim,
        img_size=spec.image_size,
        mlp_ratio=spec.encoder_mlp_ratio,
        norm_layer=partial(nn.LayerNorm, eps=1e-6),
        num_heads=spec.encoder_num_heads,
        patch_size=spec.patch_size,
        qkv_bias=True,
        use_rel_pos=True,
        global_attn_indexes=tuple(spec.encoder_global_attn_indexes),
        window_size=spec.window_size,
        out_chans=spec.prompt_embed_dim,
    )
    prompt_encoder = m.PromptEncoder(
        embed_dim=spec.prompt_embed_dim,
        image_embedding_size=(spec.embedding_size, spec.embedding_size),
        input_image_size=(spec.image_size, spec.image_size),
        mask_in_chans=16,
    )
    decoder = m.MaskDecoder(
        num_multimask_outputs=spec.num_multimask_outputs,
        transformer=m.TwoWayTransformer(
            depth=spec.decoder_depth,
            embedding_dim=spec.prompt_embed_dim,
            mlp_dim=spec.decoder_mlp_dim,
            num_heads=spec.decoder_num_heads,
        ),
        transformer_dim=spec.prompt_embed_dim,
        iou_head_depth=spec.iou_head_depth,
        iou_head_hidden_dim=spec.iou_head_hidden_dim,
    )
    return m.Sam(
        image_encoder=encoder,
        prompt_encoder=prompt_encoder,
        mask_decoder=decoder,
        pixel_mean=[123.675, 116.28, 103.53],
        pixel_std=[58.395, 57.12, 57.375],
    )


def _count(shapes: Mapping[str, tuple[int, ...]], pattern: str) -> int:
    rx = re.compile(pattern)
    return len({m.group(1) for k in shapes if (m := rx.match(k))})


def infer_sam_spec(
    shapes: Mapping[str, tuple[int, ...]], *, decoder_num_heads: int = 8, source: str = "checkpoint",
    key_prefix: str = "",
) -> SamSpec:
    """Read a SAM's shape from its state-dict tensor shapes (keys relative to the Sam module).

    Everything but the mask decoder's head count is visible in the shapes (the encoder's head count
    from the relative-position tables, global-attention blocks from their larger tables).
    """
    need = [
        "image_encoder.patch_embed.proj.weight",
        "image_encoder.pos_embed",
        "image_encoder.blocks.0.attn.rel_pos_h",
        "image_encoder.blocks.0.mlp.lin1.weight",
        "mask_decoder.mask_tokens.weight",
        "mask_decoder.transformer.layers.0.mlp.lin1.weight",
        "mask_decoder.iou_prediction_head.layers.0.weight",
    ]
    missing = [k for k in need if k not in shapes]
    if missing:
        raise BadInputError(f"{source}: cannot infer the SAM shape, missing key(s) {[key_prefix + k for k in missing]}"
                            " (a LISA checkpoint without SAM weights needs sam_checkpoint: official SAM weights)")
    embed, _, patch, _ = shapes["image_encoder.patch_embed.proj.weight"]
    grid = shapes["image_encoder.pos_embed"][1]
    depth = _count(shapes, r"image_encoder\.blocks\.(\d+)\.")
    head_dim = shapes["image_encoder.blocks.0.attn.rel_pos_h"][1]
    global_idx, windows = [], set()
    for i in range(depth):
        size = (shapes[f"image_encoder.blocks.{i}.attn.rel_pos_h"][0] + 1) // 2
        if size == grid:
            global_idx.append(i)
        else:
            windows.add(size)
    if len(windows) > 1:
        raise BadInputError(f"{source}: SAM blocks use several window sizes {sorted(windows)}")
    prompt_dim = shapes["mask_decoder.mask_tokens.weight"][1]
    return SamSpec(
        encoder_embed_dim=int(embed),
        encoder_depth=depth,
        encoder_num_heads=int(embed // head_dim),
        encoder_global_attn_indexes=global_idx,
        encoder_mlp_ratio=shapes["image_encoder.blocks.0.mlp.lin1.weight"][0] / embed,
        image_size=int(grid * patch),
        patch_size=int(patch),
        window_size=int(windows.pop()) if windows else 14,
        prompt_embed_dim=int(prompt_dim),
        decoder_depth=_count(shapes, r"mask_decoder\.transformer\.layers\.(\d+)\."),
        decoder_mlp_dim=int(shapes["mask_decoder.transformer.layers.0.mlp.lin1.weight"][0]),
        decoder_num_heads=decoder_num_heads,
        num_multimask_outputs=int(shapes["mask_decoder.mask_tokens.weight"][0]) - 1,
        iou_head_depth=_count(shapes, r"mask_decoder\.iou_prediction_head\.layers\.(\d+)\."),
        iou_head_hidden_dim=int(shapes["mask_decoder.iou_prediction_head.layers.0.weight"][0]),
    )

