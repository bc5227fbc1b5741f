"""LISA's image preprocessing for SAM and CLIP, and SAM's mask postprocessing.

SAM (as LISA does it): resize the longest side to 1024 (PIL bilinear, ``ResizeLongestSide``), normalise
the 0–255 pixels with SAM's mean/std, pad bottom/right to 1024². The pre-pad size is kept: masks are
cropped to it before being resized to the original image size (the official MLLM-For3D code skipped
both, which stretched its masks).

CLIP (``CLIPImageProcessor`` of openai/clip-vit-large-patch14, reimplemented because transformers'
default processor needs torchvision): resize the shortest side to 224 (PIL bicubic), centre-crop 224,
scale to [0,1], normalise with the CLIP mean/std.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from mllm3d.shared.errors import BadInputError

SAM_PIXEL_MEAN = (123.675, 116.28, 103.53)
SAM_PIXEL_STD = (58.395, 57.12, 57.375)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def check_color(color: np.ndarray, where: str = "view") -> np.ndarray:
    """Validate an (H,W,3) uint8 RGB image; raise BadInputError naming ``where`` otherwise."""
    if not isinstance(color, np.ndarray) or color.ndim != 3 or color.shape[2] != 3:
        shape = getattr(color, "shape", None)
        raise BadInputError(f"{where}: color must be an (H,W,3) RGB array, got shape {shape}")
    if color.dtype != np.uint8:
        raise BadInputError(f"{where}: color must be uint8 0-255, got dtype {color.dtype}")
    if color.shape[0] < 1 or color.shape[1] < 1:
        raise BadInputError(f"{where}: color image is empty {color.shape}")
    return np.ascontiguousarray(color)


def longest_side_shape(height: int, width: int, long_side: int) -> tuple[int, int]:
    """SAM's ``ResizeLongestSide.get_preprocess_shape``: (new_h, new_w) with max == ``long_side``."""
    scale = long_side / max(height, width)
    return int(height * scale + 0.5), int(width * scale + 0.5)


@dataclass
class SamInput:
    """A preprocessed SAM input and the sizes needed to map masks back."""

    pixels: torch.Tensor  # (1,3,S,S) float32, normalised, zero-padded bottom/right
    input_size: tuple[int, int]  # pre-pad (h, w) after the longest-side resize
    original_size: tuple[int, int]  # (H, W) of the view's colour image


def sam_preprocess(color: np.ndarray, image_size: int = 1024) -> SamInput:
    """Resize longest side to ``image_size``, normalise 0–255 with SAM's mean/std, pad to a square."""
    h, w = color.shape[:2]
    new_h, new_w = longest_side_shape(h, w, image_size)
    resized = np.asarray(Image.fromarray(color).resize((new_w, new_h), Image.BILINEAR), dtype=np.float32)
    x = torch.from_numpy(resized).permute(2, 0, 1)
    mean = torch.tensor(SAM_PIXEL_MEAN).view(3, 1, 1)
    std = torch.tensor(SAM_PIXEL_STD).view(3, 1, 1)
    x = (x - mean) / std
    x = F.pad(x, (0, image_size - new_w, 0, image_size - new_h))
    return SamInput(pixels=x.unsqueeze(0), input_size=(new_h, new_w), original_size=(h, w))


def postprocess_masks(
    low_res: torch.Tensor, input_size: tuple[int, int], original_size: tuple[int, int], image_size: int
) -> torch.Tensor:
    """SAM's ``Sam.postprocess_masks``: upsample to the padded canvas, crop the pad, resize to original.

    ``low_res`` is (n,1,h,w) mask logits; returns (n,1,H,W) float logits.
    """
    masks = F.interpolate(low_res.float(), (image_size, image_size), mode="bilinear", align_corners=False)
    masks = masks[..., : input_size[0], : input_size[1]]
    return F.interpolate(masks, original_size, mode="bilinear", align_corners=False)


def valid_embedding_cells(input_size: tuple[int, int], image_size: int, grid: int) -> tuple[int, int]:
    """How many rows/cols of a (grid×grid) SAM embedding cover the un-padded image (rounded up)."""
    cell = image_size / grid
    return max(1, int(np.ceil(input_size[0] / cell))), max(1, int(np.ceil(input_size[1] / cell)))


@dataclass
class ClipPreprocess:
    """CLIP image preprocessing parameters (read from a CLIP folder's preprocessor_config.json)."""

    shortest_edge: int = 224
    crop_size: tuple[int, int] = (224, 224)
    mean: tuple[float, ...] = CLIP_MEAN
    std: tuple[float, ...] = CLIP_STD
    do_center_crop: bool = True

    @classmethod
    def from_dir(cls, clip_dir: Path, image_size: int) -> ClipPreprocess:
        """Read ``preprocessor_config.json`` if present; otherwise the defaults at ``image_size``."""
        path = Path(clip_dir) / "preprocessor_config.json"
        if not path.is_file():
            return cls(shortest_edge=image_size, crop_size=(image_size, image_size))
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise BadInputError(f"{path}: unreadable CLIP preprocessor config ({e})") from e
        size = data.get("size", image_size)
        short = size.get("shortest_edge", image_size) if isinstance(size, dict) else int(size)
        crop = data.get("crop_size", image_size)
        crop_hw = (crop.get("height", image_size), crop.get("width", image_size)) if isinstance(crop, dict) else (
            int(crop), int(crop))
        if crop_hw != (image_size, image_size):
            raise BadInputError(f"{path}: crop_size {crop_hw} != the vision tower's image_size {image_size}")
        return cls(
            shortest_edge=int(short),
            crop_size=crop_hw,
            mean=tuple(data.get("image_mean", CLIP_MEAN)),
            std=tuple(data.get("image_std", CLIP_STD)),
            do_center_crop=bool(data.get("do_center_crop", True)),
        )


def clip_preprocess(color: np.ndarray, cfg: ClipPreprocess) -> torch.Tensor:
    """(H,W,3) uint8 → (1,3,h,w) float32 CLIP input (shortest-side bicubic resize, centre crop)."""
    h, w = color.shape[:2]
    short, long = (h, w) if h <= w else (w, h)
    new_short, new_long = cfg.shortest_edge, int(cfg.shortest_edge * long / short)
    new_h, new_w = (new_short, new_long) if h <= w else (new_long, new_short)
    if not cfg.do_center_crop:
        new_h, new_w = cfg.crop_size
    img = np.asarray(Image.fromarray(color).resize((new_w, new_h), Image.BICUBIC), dtype=np.float32)
    ch, cw = cfg.crop_size
    top, left = (new_h - ch) // 2, (new_w - cw) // 2
    img = img[top : top + ch, left : left + cw] / 255.0
    x = (img - np.asarray(cfg.mean, dtype=np.float32)) / np.asarray(cfg.std, dtype=np.float32)
    return torch.from_numpy(np.ascontiguousarray(x)).permute(2, 0, 1).unsqueeze(0).float()
