"""CUDA paths (skipped without a GPU): the tiny LISA in float32/bfloat16 on CUDA against the CPU, and the
Stage 2 network with spconv's GPU kernels against the CPU's Native ones."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mllm3d.stage1_pseudolabel.lisa.checkpoint import load_lisa
from mllm3d.stage1_pseudolabel.lisa.config import LisaConfig
from mllm3d.stage1_pseudolabel.lisa.engine import LisaEngine
from mllm3d.stage2_train3d.config import ModelConfig
from mllm3d.stage2_train3d.model import build_network
from tests.lisa_helpers import QUERIES, smooth_image, tiny_checkpoint

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (none visible)"),
]


def _segment(device: str, dtype: str):
    ckpt = tiny_checkpoint()
    cfg = LisaConfig.from_dict({"checkpoint": str(ckpt), "device": device, "dtype": dtype})
    lo = load_lisa(cfg)
    engine = LisaEngine(lo.model, lo.tokenizer, lo.token_ids, lo.clip_preprocess, cfg)
    outs, _ = engine.segment(smooth_image(), [q.text for q in QUERIES])
    return outs


@pytest.mark.parametrize("dtype, cos_min, mask_agree", [("float32", 0.9999, 0.999), ("bfloat16", 0.98, 0.95)])
def test_tiny_lisa_on_cuda_matches_cpu(dtype, cos_min, mask_agree):
    cpu, gpu = _segment("cpu", "float32"), _segment("cuda", dtype)
    for a, b in zip(cpu, gpu, strict=True):
        assert a.has_seg == b.has_seg
        cos = float(a.embedding @ b.embedding / (np.linalg.norm(a.embedding) * np.linalg.norm(b.embedding) + 1e-12))
        assert cos >= cos_min
        assert (a.mask == b.mask).mean() >= mask_agree
        assert abs(a.confidence - b.confidence) < 0.05


def test_stage2_net_gpu_kernels_match_cpu_native():
    torch.manual_seed(0)
    cfg = ModelConfig(stem=8, down=[8, 16], up=[16, 8], feature_dim=12, query_dim=6, image_feature_dim=5,
                      use_height=False)
    net = build_network(cfg).eval()
    rng = np.random.default_rng(0)
    c = np.unique(rng.integers(0, 20, size=(2000, 3)), axis=0)
    coords = torch.from_numpy(np.concatenate([np.zeros((len(c), 1)), c], 1).astype(np.int32))
    feats = torch.randn(len(c), 3)
    with torch.no_grad():
        cpu = net(coords, feats, 1)["semantic"]
        gpu = net.to("cuda")(coords.cuda(), feats.cuda(), 1)["semantic"].cpu()
    assert torch.allclose(cpu, gpu, atol=1e-4, rtol=1e-3)
    # one training step on the GPU gives finite gradients for W too
    net.train()
    out = net(coords.cuda(), feats.cuda(), 1)
    loss = net.score(out["semantic"], net.project_query(torch.randn(2, 6, device="cuda"))).mean()
    loss.backward()
    assert torch.isfinite(net.query_proj.weight.grad).all()
