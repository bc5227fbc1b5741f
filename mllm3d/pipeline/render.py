"""Pictures of pseudo-labels: a PNG contact sheet of a query's views, and point colours for PLY export."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

RGB = tuple[int, int, int]


@dataclass
class SheetStyle:
    """Layout and colours of a contact sheet."""

    columns: int = 4
    frame: int = 4  # width of the kept/filtered frame around each thumbnail, px
    gap: int = 4  # space between tiles, px
    caption_lines: int = 2
    line_height: int = 12
    overlay: RGB = (255, 0, 255)  # mask tint: magenta, neither a frame colour nor a synthetic palette colour
    alpha: float = 0.55  # tint opacity
    kept: RGB = (0, 200, 0)
    filtered: RGB = (220, 0, 0)
    background: RGB = (255, 255, 255)
    text: RGB = (0, 0, 0)
    placeholder_width: int = 160  # thumbnail width used when the store has no thumbnails

    @property
    def caption_height(self) -> int:
        return self.caption_lines * self.line_height if self.caption_lines > 0 else 0


def _cell_bounds(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray]:
    """[start, stop) of the input pixels that overlap each output pixel along one axis (never empty)."""
    i = np.arange(n_out, dtype=np.int64)
    start = (i * n_in) // n_out
    stop = np.maximum(-(-((i + 1) * n_in) // n_out), start + 1)
    return start, np.minimum(stop, n_in)


def resize_mask(mask: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
    """Resize a boolean mask to ``size_hw`` for display: an output pixel is set when *any* input pixel
    in its cell is (max-pool), so a mask smaller than one thumbnail pixel still shows; upsampling is
    nearest-neighbour."""
    mask = np.asarray(mask, dtype=bool)
    h, w = int(size_hw[0]), int(size_hw[1])
    if mask.shape == (h, w):
        return mask.copy()
    if mask.size == 0 or h == 0 or w == 0:
        return np.zeros((h, w), dtype=bool)
    # summed-area table: the count of set pixels of every cell in O(H*W + h*w)
    sat = np.zeros((mask.shape[0] + 1, mask.shape[1] + 1), dtype=np.int64)
    sat[1:, 1:] = mask.cumsum(axis=0, dtype=np.int64).cumsum(axis=1)
    r0, r1 = _cell_bounds(mask.shape[0], h)
    c0, c1 = _cell_bounds(mask.shape[1], w)
    count = sat[r1][:, c1] - sat[r0][:, c1] - sat[r1][:, c0] + sat[r0][:, c0]
    return count > 0


def overlay_mask(image: np.ndarray, mask: np.ndarray, color: RGB, alpha: float) -> np.ndarray:
    """Tint the pixels of ``image`` (h,w,3 uint8) under ``mask`` (any size, resized to h×w)."""
    h, w = image.shape[:2]
    m = resize_mask(mask, (h, w))
    out = image.astype(np.float32).copy()
    out[m] = (1.0 - alpha) * out[m] + alpha * np.asarray(color, dtype=np.float32)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def sheet_size(num_views: int, thumb_hw: tuple[int, int], style: SheetStyle) -> tuple[int, int]:
    """(height, width) of the contact sheet for ``num_views`` thumbnails of size ``thumb_hw``."""
    cols = max(1, min(style.columns, num_views))
    rows = max(1, -(-num_views // cols))
    tile_h = thumb_hw[0] + 2 * style.frame + style.caption_height
    tile_w = thumb_hw[1] + 2 * style.frame
    return rows * tile_h + (rows + 1) * style.gap, cols * tile_w + (cols + 1) * style.gap


def tile_origin(i: int, num_views: int, thumb_hw: tuple[int, int], style: SheetStyle) -> tuple[int, int]:
    """(row, col) pixel of the top-left corner of thumbnail ``i`` itself (inside its frame)."""
    cols = max(1, min(style.columns, num_views))
    r, c = divmod(i, cols)
    tile_h = thumb_hw[0] + 2 * style.frame + style.caption_height
    tile_w = thumb_hw[1] + 2 * style.frame
    return style.gap + r * (tile_h + style.gap) + style.frame, style.gap + c * (tile_w + style.gap) + style.frame


def placeholder_thumbnails(num_views: int, image_hw: tuple[int, int], width: int) -> np.ndarray:
    """Grey thumbnails with the masks' aspect ratio, for stores written without thumbnails."""
    h = max(1, round(image_hw[0] * width / image_hw[1]))
    return np.full((num_views, h, width, 3), 128, dtype=np.uint8)


def contact_sheet(
    thumbnails: np.ndarray,
    masks: np.ndarray,
    kept: Sequence[bool],
    captions: Sequence[Sequence[str]] | None = None,
    style: SheetStyle | None = None,
) -> np.ndarray:
    """One tile per view: the thumbnail with its mask tinted, framed green (kept) or red (filtered).

    ``thumbnails`` (k,h,w,3) uint8, ``masks`` (k,H,W) bool at any resolution (downsampled to h×w),
    ``kept`` (k,), ``captions`` k lists of up to ``style.caption_lines`` strings. Returns (H,W,3) uint8.
    """
    style = style or SheetStyle()
    k = int(masks.shape[0])
    if thumbnails.shape[0] != k or len(kept) != k:
        raise ValueError(f"contact_sheet: {thumbnails.shape[0]} thumbnails, {k} masks and {len(kept)} flags must match")
    th, tw = int(thumbnails.shape[1]), int(thumbnails.shape[2])
    height, width = sheet_size(k, (th, tw), style)
    sheet = np.empty((height, width, 3), dtype=np.uint8)
    sheet[...] = np.asarray(style.background, dtype=np.uint8)
    f = style.frame
    for i in range(k):
        r0, c0 = tile_origin(i, k, (th, tw), style)
        sheet[r0 - f : r0 + th + f, c0 - f : c0 + tw + f] = np.asarray(
            style.kept if kept[i] else style.filtered, dtype=np.uint8
        )
        sheet[r0 : r0 + th, c0 : c0 + tw] = overlay_mask(thumbnails[i], masks[i], style.overlay, style.alpha)
    if captions is not None and style.caption_lines > 0:
        img = Image.fromarray(sheet)
        draw = ImageDraw.Draw(img)
        font = ImageFont.load_default()
        for i, lines in enumerate(captions[:k]):
            r0, c0 = tile_origin(i, k, (th, tw), style)
            for j, line in enumerate(list(lines)[: style.caption_lines]):
                draw.text((c0 - f, r0 + th + f + j * style.line_height), line, fill=style.text, font=font)
        sheet = np.asarray(img)
    return sheet


def title_band(text: str, width: int, style: SheetStyle, lines: int = 1) -> np.ndarray:
    """A (h,width,3) strip of ``style.background`` with ``text`` written on it (a title or a row label)."""
    h = lines * style.line_height + 2 * style.gap
    img = Image.new("RGB", (width, h), style.background)
    ImageDraw.Draw(img).text((style.gap, style.gap), text, fill=style.text, font=ImageFont.load_default())
    return np.asarray(img)


def readable_thumbnails(thumbnails: np.ndarray, image_hw: tuple[int, int], width: int = 320) -> np.ndarray:
    """Thumbnails scaled to ``width`` px wide, or to the image's native width when that is smaller."""
    k, th, tw = thumbnails.shape[:3]
    w = max(1, min(width, int(image_hw[1])))
    if w == tw or k == 0:
        return thumbnails
    h = max(1, round(th * w / tw))
    return np.stack([np.asarray(Image.fromarray(t).resize((w, h), Image.BILINEAR)) for t in thumbnails])


def project_point_mask(mask: np.ndarray, view_points: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]],
                       image_hw: tuple[int, int]) -> np.ndarray:
    """(k,H,W) bool: pixel (r,c) of view i is set when a point of ``mask`` (N,) is seen there.
    ``view_points`` holds each view's (point_idx, rows, cols) correspondences."""
    out = np.zeros((len(view_points), *image_hw), dtype=bool)
    m = np.asarray(mask, dtype=bool)
    for i, (idx, rows, cols) in enumerate(view_points):
        sel = m[idx]
        out[i, rows[sel], cols[sel]] = True
    return out


def save_png(image: np.ndarray, path: str | Path) -> Path:
    """Write an (H,W,3) uint8 image as PNG (parent directories created)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.ascontiguousarray(image)).save(p, format="PNG")
    return p


def highlight_colors(
    colors: np.ndarray, mask: np.ndarray, color: RGB = (255, 0, 0), dim: float = 0.35
) -> np.ndarray:
    """Point colours for a mask PLY: the scene's colours dimmed to ``dim``, masked points in ``color``."""
    out = np.rint(np.asarray(colors, dtype=np.float32) * dim).astype(np.uint8)
    out[np.asarray(mask, dtype=bool)] = np.asarray(color, dtype=np.uint8)
    return out
