"""Shared helpers for the lisa backend tests: tiny checkpoints (built once per session), engines, views."""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch

from mllm3d.shared.scene import Query, View
from mllm3d.stage1_pseudolabel.lisa.checkpoint import LoadedLisa, load_lisa
from mllm3d.stage1_pseudolabel.lisa.config import LisaConfig
from mllm3d.stage1_pseudolabel.lisa.engine import LisaEngine
from tests.lisa_tiny import TinyLisaSpec, build_tiny_lisa_checkpoint


@pytest.fixture(autouse=True, scope="module")
def single_thread():
    """Tiny models run ~10x faster on one thread when the shared CPU is busy; restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


_ROOT = Path(tempfile.mkdtemp(prefix="lisa-tests-"))
atexit.register(shutil.rmtree, _ROOT, True)


@functools.cache
def tiny_checkpoint(seed: int = 0, seg_token_first: bool = False, weight_format: str = "safetensors",
                    num_shards: int = 2, clip_image_size: int = 224) -> Path:
    """A tiny LISA checkpoint, built once per parameter set and test session (read-only for tests)."""
    out = _ROOT / f"s{seed}-seg{int(seg_token_first)}-{weight_format}-{num_shards}-clip{clip_image_size}"
    return build_tiny_lisa_checkpoint(out, seed, seg_token_first, spec=TinyLisaSpec(clip_image_size=clip_image_size),
                                      weight_format=weight_format, num_shards=num_shards)


@functools.cache
def loaded(ckpt: Path) -> LoadedLisa:
    """Loaded once per checkpoint; tests that modify weights must call ``load_lisa`` themselves."""
    return load_lisa(LisaConfig(checkpoint=str(ckpt)))


def engine(ckpt: Path, **options) -> LisaEngine:
    """An engine with its own config over the shared loaded model."""
    lo = loaded(ckpt)
    cfg = LisaConfig.from_dict({"checkpoint": str(ckpt), **options})
    return LisaEngine(lo.model, lo.tokenizer, lo.token_ids, lo.clip_preprocess, cfg)


def smooth_image(h: int = 48, w: int = 64, seed: int = 0) -> np.ndarray:
    """A smooth random RGB image (uint8)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    img = np.stack([np.sin(6 * xx + rng.uniform(0, 6)) + np.cos(4 * yy + rng.uniform(0, 6)) for _ in range(3)], -1)
    img = (img - img.min()) / (np.ptp(img) + 1e-9) * 255
    return (img + rng.normal(0, 8, img.shape)).clip(0, 255).astype(np.uint8)


def make_view(h: int = 48, w: int = 64, seed: int = 0, frame_id: int = 0) -> View:
    return View(frame_id=frame_id, color=smooth_image(h, w, seed), depth=np.ones((h, w), np.float32),
                intrinsic=np.eye(3), pose=np.eye(4))


QUERIES = [
    Query("scene", "q0", "the chair near the table"),
    Query("scene", "q1", "Which object can I sit on? It is next to the white cabinet by the door."),
    Query("scene", "q2", "lamp"),
]
