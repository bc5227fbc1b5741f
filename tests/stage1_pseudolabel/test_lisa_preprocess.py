"""SAM / CLIP preprocessing and mask postprocessing of the lisa backend."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mllm3d.shared.errors import BadInputError
from mllm3d.stage1_pseudolabel.lisa.preprocess import (
    SAM_PIXEL_MEAN,
    SAM_PIXEL_STD,
    ClipPreprocess,
    check_color,
    clip_preprocess,
    longest_side_shape,
    postprocess_masks,
    sam_preprocess,
    valid_embedding_cells,
)
from mllm3d.stage1_pseudolabel.lisa.sam_shim import SamSpec, build_sam
from tests.lisa_helpers import (
    single_thread,  # noqa: F401  (autouse fixture)
    smooth_image,
)


def test_longest_side_shape_matches_sam_rule():
    assert longest_side_shape(968, 1296, 1024) == (765, 1024)  # ScanNet colour
    assert longest_side_shape(480, 640, 1024) == (768, 1024)
    assert longest_side_shape(640, 480, 1024) == (1024, 768)
    assert longest_side_shape(30, 50, 64) == (38, 64)  # 30*1.28 = 38.4 -> 38


def test_sam_preprocess_resizes_normalises_0_255_and_pads():
    color = np.zeros((30, 50, 3), np.uint8)
    color[...] = (200, 100, 50)
    sam_in = sam_preprocess(color, image_size=64)
    assert sam_in.pixels.shape == (1, 3, 64, 64)
    assert sam_in.input_size == (38, 64) and sam_in.original_size == (30, 50)
    expected = (np.array([200, 100, 50]) - np.array(SAM_PIXEL_MEAN)) / np.array(SAM_PIXEL_STD)
    valid = sam_in.pixels[0, :, :38, :64]
    # 0-255 normalisation (official MLLM-For3D fed [0,1] images: value would be ~ -2)
    np.testing.assert_allclose(valid.mean(dim=(1, 2)).numpy(), expected, atol=1e-5)
    assert float(valid.std(dim=(1, 2)).max()) < 1e-5
    assert torch.count_nonzero(sam_in.pixels[0, :, 38:, :]) == 0  # bottom padding is zeros


def test_postprocess_crops_padding_before_resizing_on_non_square_image():
    """A mask over the image's top-right quadrant must land on the top-right quadrant of the original."""
    h, w, size = 30, 50, 64
    input_size = longest_side_shape(h, w, size)  # (38, 64): canvas rows 38..63 are padding
    low = torch.full((1, 1, 16, 16), -10.0)  # low-res = canvas / 4
    low[..., 0:5, 8:16] = 10.0  # canvas rows 0..19 (of 38 valid), cols 32..63 -> image top-right quadrant
    mask = postprocess_masks(low, input_size, (h, w), size)[0, 0] > 0
    assert mask.shape == (h, w)
    rows = torch.nonzero(mask.any(dim=1)).flatten()
    cols = torch.nonzero(mask.any(dim=0)).flatten()
    assert abs(int(rows.max()) + 1 - h / 2) <= 1.5  # about half the height (a stretched canvas would give ~9)
    assert int(rows.min()) == 0 and int(cols.max()) == w - 1
    assert abs(int(cols.min()) - w / 2) <= 1.5
    expected = torch.zeros(h, w, dtype=torch.bool)
    expected[: h // 2, w // 2 :] = True
    iou = (mask & expected).sum() / (mask | expected).sum()
    assert float(iou) > 0.9
    # the naive stretch of the padded canvas (the official code's bug) misplaces it
    stretched = torch.nn.functional.interpolate(
        torch.nn.functional.interpolate(low, (size, size), mode="bilinear"), (h, w), mode="bilinear")[0, 0] > 0
    assert float((stretched & expected).sum() / (stretched | expected).sum()) < 0.75


def test_postprocess_equals_segment_anything():
    spec = SamSpec(encoder_embed_dim=16, encoder_depth=1, encoder_num_heads=2, encoder_global_attn_indexes=[0],
                   image_size=64, window_size=2, prompt_embed_dim=16, decoder_mlp_dim=16, decoder_num_heads=2,
                   iou_head_hidden_dim=16)
    sam = build_sam(spec)
    low = torch.randn(3, 1, 16, 16)
    ours = postprocess_masks(low, (38, 64), (30, 50), 64)
    theirs = sam.postprocess_masks(low, (38, 64), (30, 50))
    torch.testing.assert_close(ours, theirs)


def test_valid_embedding_cells():
    assert valid_embedding_cells((765, 1024), 1024, 64) == (48, 64)
    assert valid_embedding_cells((1024, 768), 1024, 64) == (64, 48)


@pytest.mark.parametrize("shape", [(60, 90), (90, 60), (224, 224)])
def test_clip_preprocess_matches_transformers_pil_processor(shape):
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    color = smooth_image(*shape, seed=3)
    ours = clip_preprocess(color, ClipPreprocess())
    ref = CLIPImageProcessorPil()(color, return_tensors="pt")["pixel_values"]
    assert ours.shape == ref.shape == (1, 3, 224, 224)
    torch.testing.assert_close(ours, ref.float(), atol=1e-4, rtol=0)


def test_check_color_rejects_bad_images():
    with pytest.raises(BadInputError, match="frame 7.*uint8"):
        check_color(np.zeros((4, 4, 3), np.float32), "view frame 7")
    with pytest.raises(BadInputError, match="RGB"):
        check_color(np.zeros((4, 4), np.uint8))
