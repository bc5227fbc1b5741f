"""Stage 2 configuration: dataclasses with defaults, loaded from YAML, overridden by ``key=value``.

Dotted keys address nested sections (``model.stem=16``, ``fusion.view_filter=false``); values
are parsed as YAML scalars/lists. Unknown keys are errors that name the key and the file.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from mllm3d.shared.errors import BadInputError
from mllm3d.stage2_train3d.fusion import FusionConfig


@dataclass
class ModelConfig:
    """Sparse U-Net shape (defaults = MinkUNet14A of the official code) and heads."""

    use_normals: bool = False  # input = RGB (+ per-voxel normals)
    use_height: bool = False  # (+ height above the scene's lowest point)
    stem: int = 32
    stem_kernel: int = 3  # MinkUNet uses 5; 3x3x3 submanifold keeps every conv 3^3 (cheaper on CPU)
    down: list[int] = field(default_factory=lambda: [32, 64, 128, 256])
    up: list[int] = field(default_factory=lambda: [128, 128, 96, 96])
    blocks: int = 1  # BasicBlocks per stage (MinkUNet14: 1)
    feature_dim: int = 512  # f3D and local-feature head width
    query_dim: int = 256  # [SEG] embedding size (LISA: 256)
    image_feature_dim: int = 256  # channels of the stored 2D features (SAM: 256); resolved from the store
    bn_momentum: float = 0.05  # PyTorch convention (MinkowskiBatchNorm wraps torch BatchNorm1d: same value)
    # point logit s_p from f3D_p and t = W q: "dot" = f3D_p · t (the paper's training loss);
    # "cosine" = tau * cos(f3D_p, t) + b with a learned scale tau (init logit_scale) and bias b (init logit_bias)
    logit: str = "dot"
    logit_scale: float = 10.0
    logit_bias: float = -3.0


@dataclass
class DataConfig:
    """Reading, splitting, voxelising and augmenting the store's (scene, query) pairs."""

    voxel_size: float = 0.05
    batch_size: int = 4  # items (scenes) per batch
    val_batch_size: int = 4
    queries_per_item: int = 1  # queries of one scene sharing a backbone forward (1 = one item per pair)
    num_workers: int = 0
    val_fraction: float = 0.2  # share of scenes held out (at least one when there are >= 2 scenes)
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
    positive_weight: float = 1.0  # extra weight of positive (inside-mask) pairs in L_MMS; 1 = plain BCE
    spatial: bool = True
    spatial_mode: str = "auto"  # auto: features if the store has them, else prototype; features; prototype
    spatial_weight: float = 20.0  # lambda (official code 10 / 0.5)
    with_labels: bool = False  # add BCE on ground-truth 3D masks (paper's "w/ label")
    label_weight: float = 1.0


@dataclass
class OptimConfig:
    """SGD + cosine schedule (paper Table 5)."""

    optimizer: str = "sgd"  # sgd (paper Table 5) | adamw (converges in far fewer steps: short CPU runs)
    lr: float = 0.1
    momentum: float = 0.9  # sgd only
    dampening: float = 0.1  # official code
    weight_decay: float = 1e-4
    epochs: int = 40
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
    check_val_every_n_epoch: int = 1
    gradient_clip_val: float = 0.0
    limit_train_batches: Any = 1.0
    limit_val_batches: Any = 1.0
    cpu_threads: int = 0  # >0: torch.set_num_threads (1 is ~6x faster than 2 on a busy 2-core box); 0 = torch default


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


def _build(cls: type, data: Mapping[str, Any], where: str, prefix: str = "") -> Any:
    """Instantiate dataclass ``cls`` from a (nested) mapping: unknown keys and values of the wrong type
    raise one BadInputError naming the file (``where``), the dotted key, the value and what was expected."""
    if not isinstance(data, Mapping):
        raise BadInputError(f"{where}: {prefix.rstrip('.') or 'config'} must be a mapping, got {data!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        if key not in fields:
            raise BadInputError(f"{where}: unknown key {prefix + key!r} (known in this section: {sorted(fields)})")
        default = getattr(cls(), key)
        if dataclasses.is_dataclass(default):
            kwargs[key] = _build(type(default), value or {}, where, f"{prefix}{key}.")
        else:
            kwargs[key] = _typed(hints[key], value, where, f"{prefix}{key}")
    return cls(**kwargs)


def _typed(kind: Any, value: Any, where: str, key: str) -> Any:
    """``value`` checked (and, for numbers written as strings such as ``1e-3``, converted) against ``kind``."""
    def fail(expected: str) -> BadInputError:
        return BadInputError(f"{where}: {key} = {value!r}: expected {expected}")

    if kind is Any:
        return value
    if kind is bool:
        if isinstance(value, bool):
            return value
        raise fail("true or false")
    if kind is int:
        if isinstance(value, bool):
            raise fail("an integer")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise fail("an integer")
    if kind is float:
        if isinstance(value, bool):
            raise fail("a number")
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads 1e-3 (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        raise fail("a number")
    if kind is str:
        if isinstance(value, str):
            return value
        raise fail("a string")
    if typing.get_origin(kind) is list:
        (item,) = typing.get_args(kind) or (Any,)
        if not isinstance(value, list):
            raise fail(f"a list of {getattr(item, '__name__', item)}")
        return [_typed(item, v, where, f"{key}[{i}]") for i, v in enumerate(value)]
    return value


def config_from_dict(data: Mapping[str, Any] | None, where: str = "config") -> TrainConfig:
    cfg = _build(TrainConfig, dict(data or {}), where)
    try:
        cfg.validate()
    except BadInputError as exc:
        raise BadInputError(f"{where}: {exc}") from None
    return cfg


def read_yaml(path: str | Path, _seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """A config YAML as a dict; ``base: other.yaml`` (relative to the file) is loaded first and
    deep-merged under it, so a variant only lists what it changes."""
    p = Path(path)
    if not p.is_file():
        raise BadInputError(f"{p}: config file not found")
    if p.resolve() in _seen:
        raise BadInputError(f"{p}: circular 'base:' chain {[str(s) for s in _seen]}")
    try:
        loaded = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise BadInputError(f"{p}: not valid YAML: {exc}") from exc
    if loaded is not None and not isinstance(loaded, dict):
        raise BadInputError(f"{p}: expected a mapping at the top level, got {type(loaded).__name__}")
    data = dict(loaded or {})
    base = data.pop("base", None)
    if base is None:
        return data
    return deep_merge(read_yaml(p.parent / str(base), (*_seen, p.resolve())), data)


def deep_merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """``over`` on top of ``base``, recursing into nested mappings."""
    out = dict(base)
    for k, v in over.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, Mapping) and isinstance(out.get(k), Mapping) else v
    return out


def load_config(path: str | Path | None = None, overrides: Iterable[str] = ()) -> TrainConfig:
    """Defaults, then the YAML file (if any, with its ``base:`` chain), then ``key=value`` overrides."""
    data: dict[str, Any] = {}
    where = "config"
    if path is not None:
        data = read_yaml(path)
        where = str(path)
    for item in overrides:
        set_dotted(data, item)
    return config_from_dict(data, where)


def set_dotted(data: dict[str, Any], item: str) -> None:
    """Apply one ``a.b.c=value`` override to a nested dict (value parsed as YAML)."""
    if "=" not in item:
        raise BadInputError(f"override {item!r}: expected key=value (e.g. model.stem=16)")
    key, raw = item.split("=", 1)
    parts = [p for p in key.strip().split(".") if p]
    if not parts:
        raise BadInputError(f"override {item!r}: empty key")
    node = data
    for p in parts[:-1]:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise BadInputError(f"override {item!r}: {p!r} is not a section")
    node[parts[-1]] = yaml.safe_load(raw) if raw.strip() else ""


def with_overrides(cfg: TrainConfig, overrides: Iterable[str]) -> TrainConfig:
    """A copy of ``cfg`` with ``key=value`` overrides applied."""
    data = cfg.to_dict()
    for item in overrides:
        set_dotted(data, item)
    return config_from_dict(data)


def save_config(cfg: TrainConfig, path: str | Path) -> Path:
    """Write the resolved config as YAML."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False), encoding="utf-8")
    return p
