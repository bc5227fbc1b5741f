"""Losses on hand-made tensors: values, which elements they use, gradients."""

from __future__ import annotations

import math

import pytest
import torch

from mllm3d.stage2_train3d.losses import (
    fused_loss,
    label_loss,
    mms_loss,
    spatial_feature_loss,
    spatial_prototype_loss,
)


def _bce(x: float, y: float) -> float:
    p = 1 / (1 + math.exp(-x))
    return -(y * math.log(p) + (1 - y) * math.log(1 - p))


def test_mms_loss_mean_and_weights():
    logits = torch.tensor([2.0, -1.0, 0.0])
    target = torch.tensor([1.0, 0.0, 1.0])
    expect = [_bce(2, 1), _bce(-1, 0), _bce(0, 1)]
    assert mms_loss(logits, target).item() == pytest.approx(sum(expect) / 3, rel=1e-5)
    w = torch.tensor([2.0, 1.0, 0.0])
    assert mms_loss(logits, target, w).item() == pytest.approx((2 * expect[0] + expect[1]) / 3, rel=1e-5)
    # positive_weight scales the pairs inside the mask (targets 1), then the weighted mean
    pw = mms_loss(logits, target, w, positive_weight=3.0).item()
    assert pw == pytest.approx((3 * 2 * expect[0] + expect[1]) / (3 * 2 + 1), rel=1e-5)
    assert mms_loss(logits, target, None, 3.0).item() == pytest.approx(
        (3 * expect[0] + expect[1] + 3 * expect[2]) / 7, rel=1e-5)
    empty = torch.zeros(0, requires_grad=True)
    z = mms_loss(empty, torch.zeros(0))
    assert z.item() == 0.0
    z.backward()  # stays differentiable


def test_fused_loss_ignores_unseen_points():
    logits = torch.tensor([3.0, -3.0, 100.0])
    prob = torch.tensor([1.0, 0.25, 0.0])
    seen = torch.tensor([True, True, False])
    expect = (_bce(3, 1) + (0.25 * _bce(-3, 1) + 0.75 * _bce(-3, 0))) / 2
    assert fused_loss(logits, prob, seen).item() == pytest.approx(expect, rel=1e-5)


def test_spatial_feature_loss_only_on_positives():
    local = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], requires_grad=True)
    f2d = torch.tensor([[1.0, 0.0], [1.0, 0.0], [5.0, 0.0]])
    positive = torch.tensor([True, False, True])
    loss = spatial_feature_loss(local, f2d, positive)
    assert loss.item() == pytest.approx(((1 - 1.0) + (1 - 1 / math.sqrt(2))) / 2, rel=1e-6)
    loss.backward()
    assert torch.all(local.grad[1] == 0)  # the negative pair gets no gradient
    assert local.grad[2].abs().sum() > 0
    # changing a negative's feature does not change the loss
    local2 = local.detach().clone()
    local2[1] = torch.tensor([-7.0, 3.0])
    assert spatial_feature_loss(local2, f2d, positive).item() == pytest.approx(loss.item())
    assert spatial_feature_loss(local2, f2d, torch.zeros(3, dtype=torch.bool)).item() == 0.0


def test_spatial_prototype_loss():
    # view 0: voxels 0,1 positive (same direction), voxel 2 negative pointing the same way
    local = torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [0.0, 1.0]], requires_grad=True)
    pair_voxel = torch.tensor([0, 1, 2, 3])
    pair_view = torch.tensor([0, 0, 0, 1])
    positive = torch.tensor([True, True, False, False])
    loss = spatial_prototype_loss(local, pair_voxel, pair_view, positive, num_views=2)
    # positives sit on the prototype (0); the negative is aligned with it (cos 1); view 1 has no prototype
    assert loss.item() == pytest.approx(1.0, abs=1e-6)
    loss.backward()
    assert local.grad[3].abs().sum() == 0
    # a negative orthogonal to the prototype costs nothing
    local2 = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    assert spatial_prototype_loss(local2, pair_voxel, pair_view, positive, 2).item() == pytest.approx(0.0, abs=1e-6)


def test_label_loss_only_valid_points():
    logits = torch.tensor([2.0, -2.0, 50.0])
    gt = torch.tensor([1.0, 0.0, 0.0])
    valid = torch.tensor([True, True, False])
    assert label_loss(logits, gt, valid).item() == pytest.approx(_bce(2, 1), rel=1e-5)


def test_mean_pairwise_cosine_analytic_cases() -> None:
    from mllm3d.stage2_train3d.losses import mean_pairwise_cosine

    same = torch.tensor([[1.0, 2.0, 0.0]] * 5)
    assert float(mean_pairwise_cosine(same)) == pytest.approx(1.0, abs=1e-6)  # collapsed: one direction
    assert float(mean_pairwise_cosine(torch.eye(4) * 3.0)) == pytest.approx(0.0, abs=1e-6)  # orthogonal
    assert float(mean_pairwise_cosine(torch.tensor([[1.0, 0.0], [-2.0, 0.0]]))) == pytest.approx(-1.0)
    # three unit vectors 120° apart: every pair has cosine -1/2
    ang = torch.tensor([0.0, 2.0944, 4.1888])
    assert float(mean_pairwise_cosine(torch.stack([ang.cos(), ang.sin()], 1))) == pytest.approx(-0.5, abs=1e-4)
    x = torch.randn(7, 5, generator=torch.Generator().manual_seed(0))
    u = x / x.norm(dim=1, keepdim=True)
    brute = sum(float(u[i] @ u[j]) for i in range(7) for j in range(7) if i != j) / 42
    assert float(mean_pairwise_cosine(x)) == pytest.approx(brute, abs=1e-6)
    assert float(mean_pairwise_cosine(x[:1])) == 0.0
