"""ScanNet image and matrix files: 16-bit depth PNGs (millimetres), colour images, text matrices.

Each reader raises one-line BadInputError naming the file on unreadable or wrongly typed input.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from mllm3d.shared.errors import BadInputError

DEPTH_SHIFT = 1000.0  # ScanNet depth PNGs are millimetres
# Depth beyond this (metres) is invalid, read as 0: Kinect / 7-Scenes exports mark invalid pixels 65535 mm
DEFAULT_MAX_DEPTH = 10.0


def read_matrix(path: Path, what: str) -> np.ndarray:
    """A whitespace-separated text matrix (ScanNet pose/intrinsic files)."""
    try:
        return np.loadtxt(path, dtype=np.float64, ndmin=2)
    except (OSError, ValueError) as exc:
        raise BadInputError(f"{path}: cannot read the {what} matrix: {exc}") from None


def image_size(path: Path) -> tuple[tuple[int, int], str]:
    """((height, width), PIL mode) from the image header only."""
    try:
        with Image.open(path) as im:
            return (im.height, im.width), im.mode
    except OSError as exc:
        raise BadInputError(f"{path}: unreadable image: {exc}") from None


#: PIL modes of a 16-bit single-channel PNG ("I" is how some Pillow versions open them)
DEPTH_MODES = ("I;16", "I;16B", "I;16L", "I")


def eight_bit_depth_error(path: Path, what: str) -> BadInputError:
    """The error for an 8-bit depth image (``what`` says how it was recognised)."""
    return BadInputError(
        f"{path}: depth must be a 16-bit PNG (uint16 millimetres), got an 8-bit image ({what}); "
        "8-bit values cannot hold millimetre depth (max 255 mm) - re-export the depth maps as 16-bit"
    )


def read_depth(path: Path, max_depth: float = DEFAULT_MAX_DEPTH, dropped: list[int] | None = None) -> np.ndarray:
    """Depth PNG (uint16 millimetres) -> float32 metres, 0 = invalid (also every pixel beyond ``max_depth`` m).

    The number of pixels dropped for lying beyond ``max_depth`` is appended to ``dropped`` when given.
    """
    try:
        with Image.open(path) as im:
            d = np.asarray(im)
    except OSError as exc:
        raise BadInputError(f"{path}: unreadable depth image: {exc}") from None
    if d.ndim == 2 and d.dtype in (np.uint8, np.int8, np.bool_):
        raise eight_bit_depth_error(path, f"dtype {d.dtype}")
    if d.ndim != 2 or not np.issubdtype(d.dtype, np.integer):
        raise BadInputError(f"{path}: depth must be a single-channel 16-bit PNG, got {d.dtype} {d.shape}")
    depth = (d.astype(np.float32) / DEPTH_SHIFT).astype(np.float32)
    far = depth > max_depth
    n_far = int(np.count_nonzero(far))
    if n_far:
        depth[far] = 0.0
    if dropped is not None:
        dropped.append(n_far)
    return depth


def valid_depth_fraction(depth: np.ndarray) -> float:
    """Share of valid depth pixels (finite and > 0), as view sampling's ``min_valid_depth`` counts them."""
    d = np.asarray(depth)
    return float(np.mean(np.isfinite(d) & (d > 0)))


def read_color(path: Path) -> np.ndarray:
    """Color image -> (H,W,3) uint8 RGB."""
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except OSError as exc:
        raise BadInputError(f"{path}: unreadable color image: {exc}") from None
