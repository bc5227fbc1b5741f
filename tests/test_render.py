"""Contact sheet layout, mask overlay and PLY highlight colours."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from mllm3d.pipeline.render import (
    SheetStyle,
    contact_sheet,
    highlight_colors,
    overlay_mask,
    resize_mask,
    save_png,
    sheet_size,
    tile_origin,
)


def test_resize_mask_downsamples_by_area() -> None:
    m = np.zeros((8, 8), bool)
    m[:, :4] = True
    small = resize_mask(m, (2, 2))
    assert small.tolist() == [[True, False], [True, False]]
    assert resize_mask(np.ones((6, 9), bool), (4, 6)).all()


def test_overlay_only_tints_masked_pixels() -> None:
    img = np.full((4, 6, 3), 100, np.uint8)
    mask = np.zeros((8, 12), bool)
    mask[:4, :] = True  # top half at twice the resolution
    out = overlay_mask(img, mask, (200, 0, 0), 0.5)
    assert (out[:2] == [150, 50, 50]).all()
    assert (out[2:] == 100).all()


def test_contact_sheet_size_overlay_and_frames(tmp_path: Path) -> None:
    style = SheetStyle(columns=2, frame=3, gap=2, caption_lines=1, line_height=10, alpha=0.5)
    k, th, tw = 3, 20, 30
    thumbs = np.full((k, th, tw, 3), 100, np.uint8)
    masks = np.zeros((k, 40, 60), bool)
    masks[:, :, 30:] = True  # right half of every view (at 2x the thumbnail size)
    kept = [True, False, True]
    sheet = contact_sheet(thumbs, masks, kept, captions=None, style=style)
    # 2 columns x 2 rows of tiles of (20+6+10) x (30+6) px with 2 px gaps
    assert sheet.shape == (2 * 36 + 3 * 2, 2 * 36 + 3 * 2, 3) == (*sheet_size(k, (th, tw), style), 3)
    tint = np.rint(0.5 * 100 + 0.5 * np.array(style.overlay)).astype(np.uint8)
    for i in range(k):
        r0, c0 = tile_origin(i, k, (th, tw), style)
        tile = sheet[r0 : r0 + th, c0 : c0 + tw]
        assert (tile[:, 15:] == tint).all(), "overlay where the mask is"
        assert (tile[:, :15] == 100).all(), "untouched elsewhere"
        frame_pixel = sheet[r0 - 1, c0 + 5]
        assert tuple(frame_pixel) == (style.kept if kept[i] else style.filtered)
    # the unused 4th slot stays background
    r3, c3 = tile_origin(3, 4, (th, tw), style)
    assert (sheet[r3 : r3 + th, c3 : c3 + tw] == 255).all()
    out = save_png(contact_sheet(thumbs, masks, kept, [["a"], ["b"], ["c"]], style), tmp_path / "x" / "s.png")
    assert Image.open(out).size == (sheet.shape[1], sheet.shape[0])


def test_highlight_colors_dims_scene_and_marks_mask_red() -> None:
    colors = np.full((4, 3), 200, np.uint8)
    out = highlight_colors(colors, np.array([True, False, False, True]), dim=0.5)
    assert out[0].tolist() == [255, 0, 0] and out[3].tolist() == [255, 0, 0]
    assert out[1].tolist() == [100, 100, 100]


def test_one_pixel_mask_survives_downsampling() -> None:
    # a box filter + >= 0.5 makes a 1-pixel mask vanish at 4x; any-pixel-in-the-cell keeps it
    mask = np.zeros((48, 64), bool)
    mask[13, 38] = True
    small = resize_mask(mask, (12, 16))
    assert small.sum() == 1 and small[13 // 4, 38 // 4]
    img = np.full((12, 16, 3), 100, np.uint8)
    out = overlay_mask(img, mask, (200, 0, 0), 0.5)
    assert (out[3, 9] == [150, 50, 50]).all() and (np.delete(out.reshape(-1, 3), 3 * 16 + 9, axis=0) == 100).all()
    style = SheetStyle(columns=1, frame=2, gap=1, caption_lines=0, alpha=0.5)
    sheet = contact_sheet(img[None], mask[None], [True], style=style)
    r0, c0 = tile_origin(0, 1, (12, 16), style)
    tile = sheet[r0 : r0 + 12, c0 : c0 + 16]
    assert (tile != 100).any(axis=2).sum() == 1


def test_resize_mask_non_integer_factor_and_upsampling() -> None:
    m = np.zeros((5, 7), bool)
    m[4, 6] = True  # bottom-right corner pixel
    small = resize_mask(m, (2, 3))
    assert small.tolist() == [[False, False, False], [False, False, True]]
    up = resize_mask(np.eye(2, dtype=bool), (4, 4))
    assert up.tolist() == [[True, True, False, False], [True, True, False, False],
                           [False, False, True, True], [False, False, True, True]]
    assert not resize_mask(np.zeros((9, 9), bool), (3, 3)).any()


def test_query_sheet_title_readable_tiles_and_network_row(tmp_path: Path) -> None:
    from mllm3d.pipeline.inspect_cli import query_sheet
    from mllm3d.pipeline.inspect_store import inspect_query
    from tests.toy_store import SCENE, W, build_toy_store

    store = build_toy_store(tmp_path / "s.zarr")
    ins = inspect_query(store, SCENE, "chair")
    one = query_sheet(ins)
    n = ins.scene.num_points
    prob = np.zeros(n, np.float32)
    prob[np.arange(n) % W >= W // 2] = 1.0  # the network says: the right half of the plane
    two = query_sheet(ins, network_prob=prob)
    style = SheetStyle(caption_lines=3)
    # thumbnails scaled to the native mask width (32 px < 320): 3 tiles in a row, plus a title band
    body_h, body_w = sheet_size(3, (24, 32), style)
    title_h = style.line_height + 2 * style.gap
    assert one.shape == (title_h + body_h, body_w, 3)
    assert two.shape == (2 * (title_h + body_h), body_w, 3)
    assert (one[:title_h] != 255).any(), "the title is written"
    # second row: right half tinted (network mask), left half not; the first row tints the chair (left 8 cols)
    r0, c0 = tile_origin(0, 3, (24, 32), style)
    top = two[title_h + r0 : title_h + r0 + 24, c0 : c0 + 32]
    bottom = two[2 * title_h + body_h + r0 : 2 * title_h + body_h + r0 + 24, c0 : c0 + 32]
    assert (top[:, :8] != 100).any(axis=2).all() and (top[:, 8:] == 100).all()
    assert (bottom[:, 16:] != 100).any(axis=2).all() and (bottom[:, :16] == 100).all()
