"""Configuration of a Stage 1 run (``mllm3d pseudolabel``): a dataclass loadable from YAML.

A run config YAML holds any of the fields below; ``backend_config`` is the backend's own dict
(see configs/stage1/*.yaml). Command-line options override the file.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml
from mllm3d.shared.errors import BadInputError
from mllm3d.stage1_pseudolabel.sharding import STRATEGIES, parse_shard
from mllm3d.stage1_pseudolabel.view_sampling import parse_views


@dataclass
class RunConfig:
    """Everything that determines what a Stage 1 run writes, and how it behaves."""

    source: str = "synthetic"  # mllm3d.shared.sources.open_source spec
    # ScanNet frame subsampling: every frame_stride-th frame file of the export, at most max_frames per
    # scene; None = the source spec's own (``scannet:PATH?frame_stride=N``), else 1 / all
    frame_stride: int | None = None
    max_frames: int | None = None
    # ScanNet depth beyond this many metres is invalid (Kinect / 7-Scenes write 65535 mm for "no depth")
    max_depth: float = 10.0
    queries: str | None = None  # annotation file; None = the source's own queries (synthetic)
    store: str = "cache/store.zarr"
    backend: str = "synthetic"
    backend_config: dict[str, Any] = field(default_factory=dict)
    views: int | None = 4  # views per query; None = every usable frame ("all")
    seed: int = 0  # view-sampling seed
    min_valid_depth: float = 0.1  # share of valid depth pixels a frame needs to be sampled
    shard: str | None = None  # "i/n"; None = from SLURM / torchrun environment, else 0/1
    shard_strategy: str = "round_robin"
    max_scenes: int | None = None  # first N scenes (sorted ids) before sharding
    allow_mixed_segmenters: bool = False
    depth_abs_tol: float = 0.05  # visibility test of the scene correspondences (metres)
    depth_rel_tol: float = 0.0
    depth_border: int = 0
    lease_timeout_s: float = 600.0  # a scene lease without heartbeat for this long is taken over
    heartbeat_s: float = 30.0
    progress: bool = True

    def __post_init__(self) -> None:
        self.views = parse_views(self.views)
        if self.shard is not None:
            parse_shard(self.shard)
        if self.shard_strategy not in STRATEGIES:
            raise BadInputError(f"shard_strategy must be one of {STRATEGIES}, got {self.shard_strategy!r}")
        if self.max_scenes is not None and self.max_scenes < 1:
            raise BadInputError(f"max_scenes must be >= 1, got {self.max_scenes}")
        for name in ("frame_stride", "max_frames"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                raise BadInputError(f"{name} must be an integer >= 1, got {value!r}")
        if isinstance(self.max_depth, bool) or not isinstance(self.max_depth, (int, float)) or not self.max_depth > 0:
            raise BadInputError(f"max_depth must be a number of metres > 0, got {self.max_depth!r}")
        if not 0.0 <= self.min_valid_depth <= 1.0:
            raise BadInputError(f"min_valid_depth must be in [0, 1], got {self.min_valid_depth}")
        if self.heartbeat_s <= 0 or self.lease_timeout_s <= self.heartbeat_s:
            raise BadInputError(
                f"need 0 < heartbeat_s < lease_timeout_s, got {self.heartbeat_s} and {self.lease_timeout_s}"
            )
        if not isinstance(self.backend_config, dict):
            raise BadInputError(f"backend_config must be a mapping, got {type(self.backend_config).__name__}")

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "run config") -> RunConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise BadInputError(f"{where}: unknown keys {unknown}; known: {sorted(known)}")
        return cls(**data)

    @classmethod
    def from_yaml(cls, path: str | Path, **overrides: Any) -> RunConfig:
        """Load a YAML run config; ``overrides`` (non-None values) win, ``backend_config`` is merged."""
        data = load_yaml_mapping(path)
        extra_backend = overrides.pop("backend_config", None) or {}
        data.update({k: v for k, v in overrides.items() if v is not None})
        data["backend_config"] = {**(data.get("backend_config") or {}), **extra_backend}
        return cls.from_dict(data, where=str(path))

    def source_options(self) -> dict[str, Any]:
        """Reader options for ``mllm3d.shared.sources.open_source`` (only those set)."""
        return {k: v for k, v in (("frame_stride", self.frame_stride), ("max_frames", self.max_frames)) if v is not None}

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["views"] = "all" if self.views is None else self.views
        return d


def load_yaml_mapping(path: str | Path) -> dict[str, Any]:
    """A YAML file that must contain a mapping (an empty file is an empty mapping)."""
    p = Path(path)
    if not p.is_file():
        raise BadInputError(f"{p}: config file not found")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise BadInputError(f"{p}: invalid YAML: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise BadInputError(f"{p}: expected a mapping at the top level, got {type(data).__name__}")
    return data


def load_backend_config(path: str | Path) -> dict[str, Any]:
    """A backend config YAML: a flat mapping, or a run config whose ``backend_config`` is taken."""
    data = load_yaml_mapping(path)
    if "backend_config" in data:
        inner = data["backend_config"] or {}
        if not isinstance(inner, dict):
            raise BadInputError(f"{path}: backend_config must be a mapping")
        return dict(inner)
    return data
