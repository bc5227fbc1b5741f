"""The L_spatial forms (loss.spatial_form): per-voxel aggregation, the contrastive form, the projections."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from mllm3d.shared.errors import BadInputError
from mllm3d.stage2_train3d.config import ModelConfig, TrainConfig, with_overrides
from mllm3d.stage2_train3d.losses import (
    spatial_contrastive_loss,
    spatial_feature_loss,
    spatial_voxel_loss,
    voxel_feature_means,
)
from mllm3d.stage2_train3d.model import Stage2Net
from mllm3d.stage2_train3d.module import Stage2Module


def test_voxel_means_by_hand():
    f2d = torch.tensor([[1.0, 0.0], [3.0, 2.0], [0.0, 4.0]])
    used, mean, count = voxel_feature_means(f2d, torch.tensor([2, 2, 0]), 4)
    assert used.tolist() == [0, 2]
    assert mean.tolist() == [[0.0, 4.0], [2.0, 1.0]]
    assert count.tolist() == [1.0, 2.0]


def test_voxel_loss_equals_per_pair_loss_when_a_voxel_pairs_share_one_feature():
    torch.manual_seed(0)
    local_vox = torch.randn(5, 3)
    feat_vox = torch.randn(5, 3)
    pair_voxel = torch.tensor([0, 0, 1, 3, 3, 3, 4])
    per_pair = spatial_feature_loss(local_vox[pair_voxel], feat_vox[pair_voxel], torch.ones(7, dtype=torch.bool))
    used, mean, count = voxel_feature_means(feat_vox[pair_voxel], pair_voxel, 5)
    assert spatial_voxel_loss(local_vox[used], mean, count).item() == pytest.approx(per_pair.item(), abs=1e-6)


def test_contrastive_by_hand_and_collapse_is_not_a_minimum():
    # one view, two groups with orthogonal targets; local = targets: CE = log(1 + e^{-1/τ}) per row
    tg = torch.eye(2)
    view = torch.zeros(2, dtype=torch.long)
    loss = spatial_contrastive_loss(tg.clone(), tg, view, temperature=0.5)
    assert loss.item() == pytest.approx(math.log(1 + math.exp(-2.0)), abs=1e-6)
    # a collapsed local head (all rows equal) scores both candidates alike: log 2, worse than the above
    collapsed = spatial_contrastive_loss(torch.ones(2, 2), tg, view, temperature=0.5)
    assert collapsed.item() == pytest.approx(math.log(2), abs=1e-6)
    # a view with a single group has no negative: no term; groups of another view are not negatives
    assert spatial_contrastive_loss(tg[:1], tg[:1], view[:1]).item() == 0.0
    two_views = spatial_contrastive_loss(torch.cat([tg, tg]), torch.cat([tg, tg]), torch.tensor([0, 0, 1, 1]),
                                         temperature=0.5)
    assert two_views.item() == pytest.approx(loss.item(), abs=1e-6)


def test_contrastive_strides_large_views_deterministically():
    torch.manual_seed(1)
    x = F.normalize(torch.randn(10, 4), dim=1)
    view = torch.zeros(10, dtype=torch.long)
    sub = spatial_contrastive_loss(x, x, view, max_per_view=5, temperature=0.3)
    idx = torch.arange(0, 10, 2)  # stride 2: groups 0, 2, 4, 6, 8
    assert sub.item() == pytest.approx(spatial_contrastive_loss(x[idx], x[idx], view[idx], temperature=0.3).item())


def test_normalized_projection_keeps_cosines_and_fixed_is_frozen():
    net = Stage2Net(ModelConfig(stem=4, down=[4], up=[4], feature_dim=8, query_dim=4, image_feature_dim=3))
    a, b = torch.randn(3), torch.randn(3)
    pa, pb = net.project_image(torch.stack([a, b]), "normalized")
    assert F.cosine_similarity(pa, pb, dim=0).item() == pytest.approx(F.cosine_similarity(a, b, dim=0).item(), abs=1e-5)
    assert pa.norm().item() == pytest.approx(a.norm().item(), abs=1e-5)  # orthonormal columns
    cfg = with_overrides(TrainConfig(), ["loss.spatial_form=fixed"])
    module = Stage2Module(net, cfg)
    assert not net.image_proj.weight.requires_grad and not net.image_proj.bias.requires_grad
    assert float(net.image_proj.bias.abs().sum()) == 0.0
    module.trainer = None  # configure_optimizers reads only the config with scheduler none
    module.cfg.optim.scheduler = "none"
    opt = module.configure_optimizers()["optimizer"]
    in_opt = {id(p) for g in opt.param_groups for p in g["params"]}
    assert id(net.image_proj.weight) not in in_opt and id(net.local_head.weight) in in_opt


def test_bad_spatial_form_is_one_line():
    with pytest.raises(BadInputError, match="loss.spatial_form"):
        with_overrides(TrainConfig(), ["loss.spatial_form=bogus"])


@pytest.fixture(scope="module")
def toy_batch(tmp_path_factory):
    from mllm3d.stage2_train3d.datamodule import StoreDataModule, collate
    from tests.stage2_toy import EMBED_DIM, build_toy_store

    store = build_toy_store(tmp_path_factory.mktemp("forms") / "s.zarr", n_scenes=2, image_features=True)
    cfg = with_overrides(TrainConfig(), ["model.stem=8", "model.down=[8,16]", "model.up=[16,8]", "model.feature_dim=16",
                                         f"model.query_dim={EMBED_DIM}", "model.image_feature_dim=4",
                                         "data.num_workers=0", "data.val_fraction=0", "loss.spatial_mode=features"])
    dm = StoreDataModule(store, cfg)
    dm.setup()
    return cfg, collate([dm._dataset(dm.train_pairs, train=False)[0]])


@pytest.mark.parametrize("form", ["paper", "fixed", "normalized", "contrastive"])
def test_module_spatial_forms_on_a_real_batch(toy_batch, form):
    cfg, batch = toy_batch
    cfg = with_overrides(cfg, [f"loss.spatial_form={form}"])
    torch.manual_seed(0)
    module = Stage2Module(Stage2Net(cfg.model), cfg)
    out = module.forward(batch)
    loss = module._spatial_features(batch, out)
    assert torch.isfinite(loss) and loss.item() > 0
    loss.backward()
    assert module.net.local_head.weight.grad is not None
    assert (module.net.image_proj.weight.grad is not None) == (form != "fixed")
    if form in ("fixed", "normalized", "paper"):
        # independent per-voxel loop: mean image feature of each voxel's positive pairs, then the cosine
        idx = batch["f2d_pair"]
        vox = batch["point_voxel"][batch["pair_point"][idx]]
        total, n = 0.0, 0
        with torch.no_grad():
            for v in vox.unique().tolist():
                sel = vox == v
                target = module.net.project_image(batch["f2d"][sel].mean(0, keepdim=True), form)[0]
                cos = F.cosine_similarity(out["local"][v], target, dim=0)
                total += float(1 - cos) * int(sel.sum())
                n += int(sel.sum())
        assert loss.item() == pytest.approx(total / n, rel=1e-4)
