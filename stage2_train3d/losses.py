"""Stage 2 losses (docs/method.md, "Losses"), as pure functions of tensors.

- L_MMS     = Σ_pairs w_pi · BCEWithLogits(s_pi, m_pi) / Σ w_pi over visible (point, view) pairs,
              s_pi = f3D_p · t (t = W q; per-view t_i = W ê_i without Token-for-Query),
              m_pi = the view's mask value at the point's pixel (``--target pairs``);
  or        = mean over seen points of BCEWithLogits(s_p, fused_p) (``--target fused``).
- L_spatial = mean over positive pairs of 1 − cos(local_p, W_img f2D_{p,i})            (features)
              computed per voxel against the voxel's mean image feature (``voxel_feature_means``);
              ``loss.spatial_form`` picks W_img and the form (docs/stage2.md, "Spatial loss forms"):
              paper = trainable W_img with a bias (collapses: W_img → 0, local = the bias);
              fixed = a fixed random bias-free W_img (the released code's effective target);
              normalized = a trainable bias-free W_img with orthonormal columns/rows (QR), which keeps
              the features' cosines (cannot map them all to one direction when feature_dim >= C);
              contrastive = InfoNCE over (voxel, view) groups with the same view's groups as negatives.
  or the geometric "prototype" alternative when the store has no image features:
              proto_i = normalise(mean of normalise(local_p) over view i's positive pairs) (no grad)
              L = mean_pos (1 − cos(local_p, proto_i)) + mean_neg max(0, cos(local_p, proto_i))
              i.e. points inside a view's mask share one local feature and points outside it in
              the same view are pushed to be orthogonal or opposite (the negative term prevents
              the trivial collapse of the local head).
- L_label   = BCEWithLogits(s_p, gt_p) on the points of queries with ground truth (--with-labels).
- L = L_MMS + λ · L_spatial (+ label_weight · L_label).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _zero(like: torch.Tensor) -> torch.Tensor:
    """A zero that stays connected to the graph (so backward works on empty batches)."""
    return like.sum() * 0.0


def mms_loss(
    logits: torch.Tensor,
    targets: torch.Tensor,
    weights: torch.Tensor | None = None,
    positive_weight: float = 1.0,
) -> torch.Tensor:
    """Weighted mean BCE-with-logits over (point, view) pairs; 0 when there are no pairs.

    ``positive_weight`` multiplies the weight of pairs whose target is > 0.5 (inside the mask).
    """
    if logits.numel() == 0:
        return _zero(logits)
    targets = targets.to(logits.dtype)
    bce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    if weights is None and positive_weight == 1.0:
        return bce.mean()
    w = torch.ones_like(bce) if weights is None else weights.to(bce.dtype)
    if positive_weight != 1.0:
        w = torch.where(targets > 0.5, w * positive_weight, w)
    total = w.sum()
    if total <= 0:
        return _zero(logits)
    return (bce * w).sum() / total


def fused_loss(point_logits: torch.Tensor, fused_prob: torch.Tensor, seen: torch.Tensor) -> torch.Tensor:
    """BCE-with-logits against the soft fused label on points seen by a weighted view (others ignored)."""
    if not bool(seen.any()):
        return _zero(point_logits)
    return F.binary_cross_entropy_with_logits(point_logits[seen], fused_prob[seen].to(point_logits.dtype))


def spatial_feature_loss(local: torch.Tensor, f2d: torch.Tensor, positive: torch.Tensor) -> torch.Tensor:
    """Mean over positive pairs of 1 − cos(local_p, projected f2D_{p,i}); negatives are ignored."""
    if not bool(positive.any()):
        return _zero(local) + _zero(f2d)
    cos = F.cosine_similarity(local[positive], f2d[positive], dim=-1, eps=1e-8)
    return (1.0 - cos).mean()


def voxel_feature_means(f2d: torch.Tensor, pair_voxel: torch.Tensor, num_voxels: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Scatter mean of the pairs' image features per voxel: (voxels that have pairs, means (V', C), counts (V',)).

    The local feature is one vector per voxel, so the spatial loss compares it with its voxel's mean image
    feature once (index_add over pairs) instead of once per pair; equal to the per-pair loss where the pairs
    of a voxel carry the same feature.
    """
    sums = f2d.new_zeros(num_voxels, f2d.shape[1])
    sums.index_add_(0, pair_voxel, f2d)
    counts = torch.bincount(pair_voxel, minlength=num_voxels).to(f2d.dtype)
    used = torch.nonzero(counts > 0).squeeze(1)
    return used, sums[used] / counts[used, None], counts[used]


def spatial_voxel_loss(local_vox: torch.Tensor, target: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """Pair-weighted mean over voxels of 1 − cos(local_v, target_v); ``counts`` = the voxel's pair count."""
    if local_vox.shape[0] == 0:
        return _zero(local_vox) + _zero(target)
    cos = F.cosine_similarity(local_vox, target, dim=-1, eps=1e-8)
    return ((1.0 - cos) * counts).sum() / counts.sum()


def spatial_contrastive_loss(
    local_vox: torch.Tensor,
    target: torch.Tensor,
    group_view: torch.Tensor,
    max_per_view: int = 128,
    temperature: float = 0.1,
) -> torch.Tensor:
    """InfoNCE with in-view negatives: each (voxel, view) group's local feature must pick its own image
    feature among the other groups of the same view (cosine / temperature, cross-entropy).

    local_vox/target (G, D): the group's local feature and (projected) mean image feature; group_view (G,)
    the view of each group. A view with more than ``max_per_view`` groups keeps an evenly strided subset
    (deterministic); views with fewer than two groups have no negatives and contribute nothing. A collapsed
    local head scores every candidate alike (loss log n), so collapse is never a minimum.
    """
    if local_vox.shape[0] == 0:
        return _zero(local_vox) + _zero(target)
    order = torch.argsort(group_view, stable=True)
    view_sorted = group_view[order]
    _, inverse, counts = torch.unique_consecutive(view_sorted, return_inverse=True, return_counts=True)
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.arange(len(order), device=order.device) - starts[inverse]
    stride = torch.div(counts + max_per_view - 1, max_per_view, rounding_mode="floor")
    keep = (rank % stride[inverse] == 0) & (counts[inverse] >= 2)
    if not bool(keep.any()):
        return _zero(local_vox) + _zero(target)
    sel, slot = order[keep], torch.div(rank[keep], stride[inverse[keep]], rounding_mode="floor")
    _, row = torch.unique_consecutive(inverse[keep], return_inverse=True)
    n_rows, d = int(row.max()) + 1, local_vox.shape[1]
    width = int(slot.max()) + 1
    lo = local_vox.new_zeros(n_rows, width, d)
    tg = target.new_zeros(n_rows, width, d)
    valid = torch.zeros(n_rows, width, dtype=torch.bool, device=local_vox.device)
    lo[row, slot] = F.normalize(local_vox[sel], dim=-1, eps=1e-8)
    tg[row, slot] = F.normalize(target[sel], dim=-1, eps=1e-8)
    valid[row, slot] = True
    logits = torch.bmm(lo, tg.transpose(1, 2)) / temperature  # (views, width, width)
    logits = logits.masked_fill(~valid[:, None, :], float("-inf"))
    labels = torch.arange(width, device=logits.device).expand(n_rows, width)
    ce = F.cross_entropy(logits[valid], labels[valid], reduction="mean")
    return ce


def spatial_prototype_loss(
    local_vox: torch.Tensor,
    pair_voxel: torch.Tensor,
    pair_view: torch.Tensor,
    positive: torch.Tensor,
    num_views: int,
) -> torch.Tensor:
    """Geometric L_spatial (no image features): see the module docstring.

    local_vox (M,D) per-voxel local features; pair_voxel/pair_view (P,) the voxel and the (global)
    view of each pair; positive (P,) bool. Views without positive pairs contribute nothing.
    """
    if not bool(positive.any()):
        return _zero(local_vox)
    unit = F.normalize(local_vox, dim=-1, eps=1e-8)
    d = unit.shape[1]
    proto = torch.zeros(num_views, d, dtype=unit.dtype, device=unit.device)
    pos_vox = pair_voxel[positive]
    proto.index_add_(0, pair_view[positive], unit[pos_vox].detach())
    proto = F.normalize(proto, dim=-1, eps=1e-8)
    has_proto = torch.zeros(num_views, dtype=torch.bool, device=unit.device)
    has_proto[pair_view[positive]] = True
    use = has_proto[pair_view]
    # (M, V) cosines, then one gather per pair: no (P, D) copies of the features (P >> M at scale)
    cos = (unit @ proto.T)[pair_voxel[use], pair_view[use]]
    pos = positive[use]
    loss = (1.0 - cos[pos]).mean()
    if bool((~pos).any()):
        loss = loss + torch.clamp(cos[~pos], min=0.0).mean()
    return loss


def label_loss(point_logits: torch.Tensor, gt: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """BCE-with-logits against ground-truth 3D masks on the points whose query has ground truth."""
    if not bool(valid.any()):
        return _zero(point_logits)
    return F.binary_cross_entropy_with_logits(point_logits[valid], gt[valid].to(point_logits.dtype))


def mean_pairwise_cosine(x: torch.Tensor) -> torch.Tensor:
    """Mean cosine similarity over all pairs i != j of the rows of ``x`` (n, d), in O(n d).

    With unit rows u_i, sum_{i != j} u_i·u_j = ||sum_i u_i||² − n. The collapse diagnostic of the spatial
    loss: near 1 when every voxel's local feature points the same way, near 0 for unrelated features.
    Fewer than two rows give 0.
    """
    n = x.shape[0]
    if n < 2:
        return x.new_zeros(())
    u = F.normalize(x.float(), dim=1)
    total = u.sum(dim=0)
    return (total.dot(total) - n) / (n * (n - 1))
