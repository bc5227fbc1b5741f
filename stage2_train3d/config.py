"""Stage 2 configuration: typed dataclasses whose defaults ARE the default recipe.

A run starts from these defaults, then a config (a packaged name such as ``paper``, or a YAML path; see
mllm3d.shared.config_io), then ``key=value`` overrides (``model.stem=16``, ``fusion.view_filter=false``).
A wrong key, type or value fails at load time naming the file, the key and what was expected.

The default recipe is the MinkUNet14A *shape* at half width with a recipe that converges in minutes on a
2-core CPU (docs/stage2.md, "Training recipes"): AdamW, a scaled-cosine point logit, 10 cm voxels, height
as an extra input channel, all queries of a scene in one item, positives weighted 3x in L_MMS.
``configs/train/paper.yaml`` is the paper's setting (SGD 0.1, dot logit, 5 cm voxels, 512-d heads, 40 epochs).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mllm3d.shared.config_io import blame, build, load_mapping, override_origins, save_yaml, set_dotted
from mllm3d.shared.errors import BadInputError
from mllm3d.stage2_train3d.fusion import FusionConfig


@dataclass
class ModelConfig:
    """Sparse U-Net shape and heads (default: the MinkUNet14A shape at half width; paper.yaml: full)."""

    use_normals: bool = False  # input = RGB (+ per-voxel normals)
    use_height: bool = True  # (+ height above the scene's lowest point)
    stem: int = 16  # MinkUNet14A: 32
    stem_kernel: int = 3  # MinkUNet uses 5; 3x3x3 submanifold keeps every conv 3^3 (cheaper on CPU)
    down: list[int] = field(default_factory=lambda: [16, 32, 64, 128])  # MinkUNet14A: 32/64/128/256
    up: list[int] = field(default_factory=lambda: [64, 64, 48, 48])  # MinkUNet14A: 128/128/96/96
    blocks: int = 1  # BasicBlocks per stage (MinkUNet14: 1)
    feature_dim: int = 128  # f3D and local-feature head width (paper: 512)
    query_dim: int = 256  # [SEG] embedding size (LISA: 256)
    image_feature_dim: int = 256  # channels of the stored 2D features (SAM: 256); resolved from the store
    bn_momentum: float = 0.05  # PyTorch convention (MinkowskiBatchNorm wraps torch BatchNorm1d: same value)
    # point logit s_p from f3D_p and t = W q: "dot" = f3D_p · t (the paper's training loss);
    # "cosine" = tau * cos(f3D_p, t) + b with a learned scale tau (init logit_scale) and bias b (init logit_bias)
    logit: str = "cosine"
    logit_scale: float = 10.0
    logit_bias: float = -3.0


@dataclass
class DataConfig:
    """Reading, splitting, voxelising and augmenting the store's (scene, query) pairs."""

    voxel_size: float = 0.10  # paper: 0.05
    batch_size: int = 2  # items (scenes) per batch
    val_batch_size: int = 2
    queries_per_item: int = 16  # queries of one scene sharing a backbone forward (1 = one item per pair)
    num_workers: int = 1
    val_fraction: float = 0.34  # share of scenes held out (at least one when there are >= 2 scenes)
    val_scenes: list[str] = field(default_factory=list)  # explicit val scenes (overrides val_fraction)
    split_seed: int = 0
    scene_cache: int = 4  # decoded scenes kept per worker (LRU)
    rotate: bool = True  # random rotation about the up axis
    flip: bool = True  # random flips of the horizontal axes
    up_axis: int = 2
    max_train_queries: int = 0  # 0 = all; else a deterministic subset (quick runs)
    max_val_queries: int = 0


@dataclass
class LossConfig:
    """L = L_MMS + lambda * L_spatial (+ label_weight * L_label with --with-labels)."""

    target: str = "pairs"  # pairs: every visible (point, view) pair vs its view's mask; fused: fused label
    pair_weighting: str = "omega"  # omega: pair weight = k_used * ω_i; uniform: plain mean over pairs
    positive_weight: float = 3.0  # extra weight of positive (inside-mask) pairs in L_MMS; 1 = plain BCE
    spatial: bool = True
    spatial_mode: str = "auto"  # auto: features if the store has them, else prototype; features; prototype
    spatial_weight: float = 20.0  # lambda (official code 10 / 0.5)
    # W_img / form of the feature L_spatial (docs/stage2.md, "Spatial loss forms"): normalized (bias-free,
    # orthonormalised W_img; chosen by measurement) | fixed (random, frozen) | contrastive | paper (collapses)
    spatial_form: str = "normalized"
    with_labels: bool = False  # add BCE on ground-truth 3D masks (paper's "w/ label")
    label_weight: float = 1.0


@dataclass
class OptimConfig:
    """AdamW + cosine schedule (paper Table 5: SGD lr 0.1, momentum 0.9, 40 epochs; paper.yaml)."""

    optimizer: str = "adamw"  # adamw (converges in far fewer steps: short CPU runs) | sgd (paper Table 5)
    lr: float = 0.005
    momentum: float = 0.9  # sgd only
    dampening: float = 0.1  # official code
    weight_decay: float = 1e-4
    epochs: int = 20
    scheduler: str = "cosine"  # cosine | none
    scheduler_interval: str = "step"  # step | epoch
    min_lr: float = 0.0


@dataclass
class TrainerConfig:
    """Passed to the Lightning Trainer."""

    accelerator: str = "auto"
    devices: Any = "auto"
    strategy: str = "auto"
    num_nodes: int = 1
    precision: str = "32-true"
    seed: int = 0
    deterministic: bool = True
    log_every_n_steps: int = 5
    check_val_every_n_epoch: int = 5
    gradient_clip_val: float = 0.0
    limit_train_batches: Any = 1.0
    limit_val_batches: Any = 1.0
    cpu_threads: int = 1  # >0: torch.set_num_threads (1 is ~6x faster than 2 on a busy 2-core box); 0 = torch default


@dataclass
class TrainConfig:
    """Everything one Stage 2 run needs (saved as config.yaml next to its checkpoints)."""

    name: str = "default"
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    fusion: FusionConfig = field(default_factory=FusionConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    threshold: float = 0.5  # sigmoid(f3D . t) >= threshold -> target

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def validate(self) -> None:
        """Raise BadInputError on values that cannot work."""
        if self.loss.target not in ("pairs", "fused"):
            raise BadInputError(f"loss.target must be 'pairs' or 'fused', got {self.loss.target!r}")
        if self.optim.optimizer not in ("sgd", "adamw"):
            raise BadInputError(f"optim.optimizer must be 'sgd' or 'adamw', got {self.optim.optimizer!r}")
        if self.model.logit not in ("dot", "cosine"):
            raise BadInputError(f"model.logit must be 'dot' or 'cosine', got {self.model.logit!r}")
        if self.loss.pair_weighting not in ("omega", "uniform"):
            raise BadInputError(f"loss.pair_weighting must be 'omega' or 'uniform', got {self.loss.pair_weighting!r}")
        if self.loss.spatial_mode not in ("auto", "features", "prototype"):
            raise BadInputError(
                f"loss.spatial_mode must be auto|features|prototype, got {self.loss.spatial_mode!r}"
            )
        if self.loss.spatial_form not in ("paper", "fixed", "normalized", "contrastive"):
            raise BadInputError(
                f"loss.spatial_form must be paper|fixed|normalized|contrastive, got {self.loss.spatial_form!r}"
            )
        if self.optim.scheduler not in ("cosine", "none") or self.optim.scheduler_interval not in ("step", "epoch"):
            raise BadInputError(
                f"optim.scheduler must be cosine|none and scheduler_interval step|epoch, got "
                f"{self.optim.scheduler!r}/{self.optim.scheduler_interval!r}"
            )
        if len(self.model.down) != len(self.model.up) or not self.model.down:
            raise BadInputError(
                f"model.down {self.model.down} and model.up {self.model.up} must be non-empty and of equal length"
            )
        if self.data.voxel_size <= 0:
            raise BadInputError(f"data.voxel_size must be > 0, got {self.data.voxel_size}")
        at_least = {
            "data.batch_size": (self.data.batch_size, 1), "data.val_batch_size": (self.data.val_batch_size, 1),
            "data.queries_per_item": (self.data.queries_per_item, 1), "data.num_workers": (self.data.num_workers, 0),
            "data.scene_cache": (self.data.scene_cache, 1), "optim.epochs": (self.optim.epochs, 1),
            "model.stem": (self.model.stem, 1), "model.blocks": (self.model.blocks, 1),
            "model.feature_dim": (self.model.feature_dim, 1), "model.query_dim": (self.model.query_dim, 1),
            "fusion.iterations": (self.fusion.iterations, 0), "trainer.num_nodes": (self.trainer.num_nodes, 1),
            "trainer.log_every_n_steps": (self.trainer.log_every_n_steps, 1),
            "trainer.check_val_every_n_epoch": (self.trainer.check_val_every_n_epoch, 1),
        }
        for key, (value, low) in at_least.items():
            if value < low:
                raise BadInputError(f"{key} = {value}: expected an integer >= {low}")
        if any(c < 1 for c in (*self.model.down, *self.model.up)):
            raise BadInputError(f"model.down {self.model.down} / model.up {self.model.up}: every width must be >= 1")
        if not self.optim.lr > 0:
            raise BadInputError(f"optim.lr = {self.optim.lr}: expected a number > 0")
        if not 0.0 <= self.data.val_fraction < 1.0:
            raise BadInputError(f"data.val_fraction = {self.data.val_fraction}: expected a number in [0, 1)")
        for key, value in (("loss.spatial_weight", self.loss.spatial_weight), ("loss.label_weight", self.loss.label_weight),
                           ("loss.positive_weight", self.loss.positive_weight), ("optim.weight_decay", self.optim.weight_decay)):
            if not value >= 0:
                raise BadInputError(f"{key} = {value}: expected a number >= 0")
        if not 0.0 < self.threshold < 1.0:
            raise BadInputError(f"threshold must be in (0, 1), got {self.threshold}")


def config_from_dict(data: Mapping[str, Any] | None, where: str = "config") -> TrainConfig:
    """A validated TrainConfig from a nested mapping (the dataclass defaults fill what it omits)."""
    cfg = build(TrainConfig, dict(data or {}), where)
    try:
        cfg.validate()
    except BadInputError as exc:
        raise BadInputError(f"{where}: {exc}") from None
    return cfg


def load_config(config: str | Path | None = None, overrides: Iterable[str] = ()) -> TrainConfig:
    """The defaults (the default recipe), then the config (a packaged name such as ``paper`` or a YAML
    path, with its ``base:`` chain), then ``key=value`` overrides; typed and validated."""
    overrides = list(overrides)
    data, where = load_mapping(config, "train", overrides)
    try:
        return config_from_dict(data, where)
    except BadInputError as exc:  # name the --set that gave the bad key, not only the file
        raise blame(exc, where, override_origins(overrides)) from None


def with_overrides(cfg: TrainConfig, overrides: Iterable[str]) -> TrainConfig:
    """A copy of ``cfg`` with ``key=value`` overrides applied."""
    data = cfg.to_dict()
    for item in overrides:
        set_dotted(data, item)
    return config_from_dict(data)


def save_config(cfg: TrainConfig, path: str | Path) -> Path:
    """Write the resolved config as YAML."""
    return save_yaml(cfg.to_dict(), path)
