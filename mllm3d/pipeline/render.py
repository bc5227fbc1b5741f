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
    font_size: int = 0  # captions and titles: 0 = PIL's small bitmap font, else its scalable font at this size
    title_size: int = 0  # the title band's font size (0: font_size)
    outline: int = 0  # px: also draw the mask's boundary in the overlay colour, opaque (0: tint only)

    @property
    def caption_height(self) -> int:
        return self.caption_lines * self.line_height if self.caption_lines > 0 else 0


def font(size: int = 0) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    """PIL's built-in font: the bitmap one (size 0) or the scalable one at ``size`` px (needs FreeType,
    else the bitmap one)."""
    return ImageFont.load_default(size=size) if size > 0 else ImageFont.load_default()


def wrap(text: str, fnt: ImageFont.ImageFont | ImageFont.FreeTypeFont, width: int) -> list[str]:
    """``text`` broken at spaces into lines no wider than ``width`` px (a word longer than that stays whole)."""
    lines: list[str] = []
    for word in text.split(" "):
        if lines and fnt.getlength(f"{lines[-1]} {word}") <= width:
            lines[-1] = f"{lines[-1]} {word}"
        else:
            lines.append(word)
    return lines or [""]


def mask_boundary(mask: np.ndarray, width: int) -> np.ndarray:
    """Pixels of ``mask`` within ``width`` px (8-neighbourhood steps) of a pixel outside it (the image's
    edge is no boundary: the tile's frame is there)."""
    m = np.asarray(mask, dtype=bool)
    inner = m.copy()
    for _ in range(max(0, width)):
        p = np.pad(inner, 1, mode="edge")
        h, w = inner.shape
        for dr in (0, 1, 2):
            for dc in (0, 1, 2):
                inner &= p[dr : dr + h, dc : dc + w]
    return m & ~inner


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


def overlay_mask(image: np.ndarray, mask: np.ndarray, color: RGB, alpha: float, outline: int = 0) -> np.ndarray:
    """Tint the pixels of ``image`` (h,w,3 uint8) under ``mask`` (any size, resized to h×w); with
    ``outline`` > 0 the mask's boundary (that many px) is drawn in ``color`` itself."""
    h, w = image.shape[:2]
    m = resize_mask(mask, (h, w))
    out = image.astype(np.float32).copy()
    out[m] = (1.0 - alpha) * out[m] + alpha * np.asarray(color, dtype=np.float32)
    if outline > 0:
        out[mask_boundary(m, outline)] = color
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
        sheet[r0 : r0 + th, c0 : c0 + tw] = overlay_mask(thumbnails[i], masks[i], style.overlay, style.alpha,
                                                          style.outline)
    if captions is not None and style.caption_lines > 0:
        img = Image.fromarray(sheet)
        draw = ImageDraw.Draw(img)
        fnt = font(style.font_size)
        for i, lines in enumerate(captions[:k]):
            r0, c0 = tile_origin(i, k, (th, tw), style)
            wrapped = [part for line in lines for part in wrap(line, fnt, tw + 2 * f)]
            for j, line in enumerate(wrapped[: style.caption_lines]):
                draw.text((c0 - f, r0 + th + f + j * style.line_height), line, fill=style.text, font=fnt)
        sheet = np.asarray(img)
    return sheet


def title_band(text: str, width: int, style: SheetStyle, lines: int = 1, size: int | None = None) -> np.ndarray:
    """A (h,width,3) strip of ``style.background`` with ``text`` written on it (a title or a row label),
    wrapped to ``width`` over at least ``lines`` lines; ``size`` the font size (default ``style.font_size``)."""
    size = style.font_size if size is None else size
    fnt = font(size)
    text_lines = wrap(text, fnt, width - 2 * style.gap)
    line_h = max(style.line_height, size + size // 3) if size else style.line_height
    h = max(lines, len(text_lines)) * line_h + 2 * style.gap
    img = Image.new("RGB", (width, h), style.background)
    draw = ImageDraw.Draw(img)
    for j, line in enumerate(text_lines):
        draw.text((style.gap, style.gap + j * line_h), line, fill=style.text, font=fnt)
    return np.asarray(img)


def readable_thumbnails(thumbnails: np.ndarray, width: int = 320) -> np.ndarray:
    """Thumbnails at about ``width`` px wide: a smaller one is enlarged by the largest whole factor that
    fits (nearest neighbour: every stored pixel stays a visible block), a larger one scaled down."""
    k, th, tw = thumbnails.shape[:3]
    if k == 0 or tw == width:
        return thumbnails
    if tw < width:
        f = max(1, width // tw)
        return thumbnails if f == 1 else thumbnails.repeat(f, axis=1).repeat(f, axis=2)
    h = max(1, round(th * width / tw))
    return np.stack([np.asarray(Image.fromarray(t).resize((width, h), Image.BILINEAR)) for t in thumbnails])


def project_point_mask(mask: np.ndarray, view_points: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]],
                       image_hw: tuple[int, int], fill: int = 0) -> np.ndarray:
    """(k,H,W) bool: pixel (r,c) of view i is set when a point of ``mask`` (N,) is seen there.
    ``view_points`` holds each view's (point_idx, rows, cols) correspondences.

    Points cover only some pixels of a view; with ``fill`` > 0 an empty pixel takes the majority label
    (in the mask or not) of the pixels around it that points cover, growing at most ``fill`` px from
    them (ties: not in the mask), so the mask reads as a surface rather than as dots."""
    out = np.zeros((len(view_points), *image_hw), dtype=bool)
    m = np.asarray(mask, dtype=bool)
    for i, (idx, rows, cols) in enumerate(view_points):
        pos = np.zeros(image_hw, dtype=bool)
        neg = np.zeros(image_hw, dtype=bool)
        sel = m[idx]
        pos[rows[sel], cols[sel]] = True
        neg[rows[~sel], cols[~sel]] = True
        neg &= ~pos  # a pixel that sees a masked point is in the mask
        for _ in range(fill):
            pos, neg = _grow(pos, neg)
        out[i] = pos
    return out


def _grow(pos: np.ndarray, neg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One step of ``project_point_mask``'s fill: empty pixels with a labelled 8-neighbour get the majority."""
    h, w = pos.shape
    counts = []
    for lab in (pos, neg):
        p = np.pad(lab, 1).astype(np.int16)
        counts.append(sum(p[dr : dr + h, dc : dc + w] for dr in (0, 1, 2) for dc in (0, 1, 2)))
    empty = ~(pos | neg)
    grow_pos = empty & (counts[0] > counts[1])
    grow_neg = empty & (counts[1] >= counts[0]) & (counts[1] > 0)
    return pos | grow_pos, neg | grow_neg


def save_png(image: np.ndarray, path: str | Path, colors: int | None = None) -> Path:
    """Write an (H,W,3) uint8 image as PNG (parent directories created); with ``colors`` as a palette
    image of that many colours (no dithering), which makes a rendered contact sheet about 2.5x smaller."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    img = Image.fromarray(np.ascontiguousarray(image))
    if colors is not None:
        img = img.quantize(colors, dither=Image.Dither.NONE)
    img.save(p, format="PNG", optimize=colors is not None)
    return p


def highlight_colors(
    colors: np.ndarray, mask: np.ndarray, color: RGB = (255, 0, 0), dim: float = 0.35
) -> np.ndarray:
    """Point colours for a mask PLY: the scene's colours dimmed to ``dim``, masked points in ``color``."""
    out = np.rint(np.asarray(colors, dtype=np.float32) * dim).astype(np.uint8)
    out[np.asarray(mask, dtype=bool)] = np.asarray(color, dtype=np.uint8)
    return out
