"""Contact sheet layout, mask overlay and PLY highlight colours."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from mllm3d.pipeline.render import (
    SheetStyle,
    contact_sheet,
    font,
    highlight_colors,
    mask_boundary,
    overlay_mask,
    project_point_mask,
    readable_thumbnails,
    resize_mask,
    save_png,
    sheet_size,
    tile_origin,
    wrap,
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
    from mllm3d.pipeline.inspect_cli import NEUTRAL, SHEET_STYLE, query_sheet
    from mllm3d.pipeline.query_inspection import inspect_query
    from tests.toy_store import SCENE, W, build_toy_store

    store = build_toy_store(tmp_path / "s.zarr")
    ins = inspect_query(store, SCENE, "chair")
    one = query_sheet(ins)
    n = ins.scene.num_points
    prob = np.zeros(n, np.float32)
    prob[np.arange(n) % W >= W // 2] = 1.0  # the network says: the right half of the plane
    two = query_sheet(ins, network_prob=prob)
    st = SHEET_STYLE
    # the toy's 16 px thumbnails are enlarged 20x to 320x240: 3 tiles of 320 + 2*4 frame, 4 gaps of 4 px
    assert one.shape[1] == two.shape[1] == 3 * 328 + 4 * 4
    assert two.shape[0] > one.shape[0] + 240
    assert (one[:20] != 255).any(), "the title is written"

    def tile(sheet: np.ndarray, frame: tuple[int, int, int], after: int = 0) -> np.ndarray:
        """The first 240x320 thumbnail below row ``after`` whose frame has colour ``frame``."""
        edge = sheet[:, st.gap : st.gap + 320]  # the first tile's top frame edge is a run of that colour
        rows = [r for r in range(after, sheet.shape[0]) if (edge[r] == frame).all()]
        r0 = rows[0] + st.frame
        return sheet[r0 : r0 + 240, st.gap + st.frame : st.gap + st.frame + 320], r0

    top, r_top = tile(two, st.kept)  # the chair's 3 views are kept
    # the chair = the left 8 of 32 columns = 80 px: tinted, its right boundary (2 px) drawn opaque
    tint = np.rint(0.45 * 100 + 0.55 * np.array(st.overlay)).astype(np.uint8)
    assert (top[:, :78] == tint).all() and (top[:, 78:80] == st.overlay).all()
    assert (top[:, 80:] == 100).all()
    bottom, r_bottom = tile(two, NEUTRAL, r_top + 240)  # the network's row: grey frames, no outline
    net_tint = np.rint(0.3 * 100 + 0.7 * np.array(st.overlay)).astype(np.uint8)
    assert r_bottom > r_top + 240 and (bottom[:, 160:] == net_tint).all() and (bottom[:, :160] == 100).all()
    assert not (one[:, st.gap : st.gap + 320] == NEUTRAL).all(axis=(1, 2)).any(), "no network row without scores"


def test_project_point_mask_fill_takes_the_majority_of_covered_neighbours() -> None:
    # one 1x7 view, points seen at column 0 (in the mask) and column 6 (not)
    views = [(np.array([0, 1]), np.array([0, 0]), np.array([0, 6]))]
    mask = np.array([True, False])
    assert project_point_mask(mask, views, (1, 7))[0, 0].tolist() == [1, 0, 0, 0, 0, 0, 0]
    # 2 steps: columns 1, 2 grow from the mask and 5, 4 from the other point
    assert project_point_mask(mask, views, (1, 7), fill=2)[0, 0].tolist() == [1, 1, 1, 0, 0, 0, 0]
    # step 3: column 3 has one neighbour of each: a tie is not in the mask
    assert project_point_mask(mask, views, (1, 7), fill=3)[0, 0].tolist() == [1, 1, 1, 0, 0, 0, 0]
    # a pixel seeing a masked point and an unmasked one is in the mask; nothing grows past `fill`
    views = [(np.array([0, 1]), np.array([0, 0]), np.array([3, 3]))]
    assert project_point_mask(mask, views, (1, 7), fill=1)[0, 0].tolist() == [0, 0, 1, 1, 1, 0, 0]


def test_readable_thumbnails_whole_factor_up_bilinear_down() -> None:
    small = np.arange(2 * 3 * 16 * 3, dtype=np.uint8).reshape(2, 3, 16, 3)
    big = readable_thumbnails(small)
    assert big.shape == (2, 60, 320, 3)
    assert (big[1, 20:40, 60:80] == small[1, 1, 3]).all(), "each stored pixel a 20x20 block"
    assert readable_thumbnails(np.zeros((1, 10, 100, 3), np.uint8)).shape == (1, 30, 300, 3)
    assert readable_thumbnails(np.zeros((1, 300, 640, 3), np.uint8)).shape == (1, 150, 320, 3)
    same = np.zeros((1, 240, 320, 3), np.uint8)
    assert readable_thumbnails(same) is same


def test_mask_boundary_and_wrap() -> None:
    m = np.zeros((6, 6), bool)
    m[1:5, 1:5] = True
    ring = mask_boundary(m, 1)
    assert ring.sum() == 12 and not ring[2:4, 2:4].any() and ring[1, 1:5].all()
    assert (mask_boundary(m, 2) == m).all()
    assert not mask_boundary(np.ones((3, 3), bool), 1).any()  # the image edge is no boundary
    edge = np.zeros((3, 4), bool)
    edge[:, :2] = True  # touches the top, bottom and left edges: only column 1 borders unmasked pixels
    assert mask_boundary(edge, 1).tolist() == [[False, True, False, False]] * 3
    fnt = font(15)
    text = "dropped: mask area 0.0012 < min_area 0.002 and more words here"
    lines = wrap(text, fnt, 120)
    assert " ".join(lines) == text and len(lines) > 1
    assert all(fnt.getlength(line) <= 120 for line in lines)
    for a, b in zip(lines, lines[1:], strict=False):
        assert fnt.getlength(f"{a} {b.split()[0]}") > 120, "a line takes every word that fits"


def test_save_png_palette(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)
    full = Image.open(save_png(img, tmp_path / "a.png"))
    assert full.mode == "RGB" and (np.asarray(full) == img).all()
    pal = Image.open(save_png(img, tmp_path / "b.png", colors=16))
    assert pal.mode == "P" and len(np.unique(np.asarray(pal.convert("RGB")).reshape(-1, 3), axis=0)) <= 16
