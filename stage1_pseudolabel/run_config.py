"""Configuration of a Stage 1 run (``mllm3d pseudolabel``): a typed dataclass loaded through the shared
config loader (mllm3d.shared.config_io: packaged names such as ``synthetic`` / ``lisa-7b`` or YAML paths,
``base:``, ``key=value`` overrides).

A run config YAML holds any of the fields below; ``backend_config`` is the backend's own dict
(see configs/stage1/*.yaml). Command-line options override the file.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mllm3d.shared.config_io import blame, build, deep_merge, load_mapping, override_origins
from mllm3d.shared.errors import BadInputError
from mllm3d.stage1_pseudolabel.sharding import STRATEGIES, parse_shard
from mllm3d.stage1_pseudolabel.view_sampling import parse_pool, parse_views


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
    views: int | str | None = 4  # views per query; "all" / None = every usable frame
    seed: int = 0  # view-sampling seed
    view_pool: int | None = None  # k views per query from a per-scene pool of this many frames; None = off
    min_valid_depth: float = 0.1  # share of valid depth pixels a frame needs to be sampled
    shard: str | None = None  # "i/n"; None = from SLURM / torchrun environment, else 0/1
    shard_strategy: str = "round_robin"
    max_scenes: int | None = None  # first N scenes (sorted ids) before sharding
    allow_mixed_segmenters: bool = False
    depth_abs_tol: float = 0.05  # visibility test of the scene correspondences (metres)
    depth_rel_tol: float = 0.0
    depth_border: int = 0
    # temporary groups of writers on other hosts older than this are removed (local ones: by pid)
    lease_timeout_s: float = 600.0
    progress: bool = True

    def __post_init__(self) -> None:
        self.views = parse_views(self.views)
        self.view_pool = parse_pool(self.view_pool)
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
        if not self.lease_timeout_s > 0:
            raise BadInputError(f"lease_timeout_s must be > 0, got {self.lease_timeout_s}")
        if not isinstance(self.backend_config, dict):
            raise BadInputError(f"backend_config must be a mapping, got {type(self.backend_config).__name__}")

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "run config") -> RunConfig:
        """A typed, validated RunConfig (unknown keys and wrong types name ``where`` and the key)."""
        return build(cls, data, where)

    @classmethod
    def load(
        cls, config: str | Path | None = None, sets: Iterable[str] = (), **overrides: Any
    ) -> RunConfig:
        """The defaults, then ``config`` (a packaged name such as ``synthetic`` or a YAML path, with its
        ``base:`` chain), then ``key=value`` ``sets``, then ``overrides`` (non-None values win;
        ``backend_config`` is merged key by key)."""
        sets = list(sets)
        data, where = load_mapping(config, "stage1", sets)
        extra_backend = overrides.pop("backend_config", None) or {}
        given = {k: v for k, v in overrides.items() if v is not None}
        data.update(given)
        if extra_backend or "backend_config" in data:
            inner = data.get("backend_config") or {}
            data["backend_config"] = deep_merge(inner, extra_backend) if isinstance(inner, dict) else inner
        origins = override_origins(sets)
        origins.update({k: f"--{k.replace('_', '-')} {v}" for k, v in given.items()})  # options win over --set
        try:
            cfg = cls.from_dict(data, where=where)
        except BadInputError as exc:  # name the option or --set that gave the bad key, not only the file
            raise blame(exc, where, origins) from None
        cfg.check_backend_config(where, origins, given_here=set(extra_backend))
        return cfg

    def check_backend_config(self, where: str, origins: dict[str, str], given_here: Iterable[str] = ()) -> None:
        """Validate ``backend_config`` now (the synthetic backend's; others check theirs when loaded), naming
        the file, the ``--set`` or the command-line backend option that gave the bad key."""
        if self.backend != "synthetic":
            return
        from mllm3d.stage1_pseudolabel.synthetic_config import SyntheticBackendConfig

        try:
            SyntheticBackendConfig.from_dict(dict(self.backend_config))
        except BadInputError as exc:
            detail = str(exc).removeprefix("synthetic backend: ")
            inner = {k: "the command line's backend options" for k in given_here}
            inner.update({k.removeprefix("backend_config."): v for k, v in origins.items()
                          if k.startswith("backend_config.")})
            raise blame(BadInputError(f"{where}: backend_config: {detail}"), where, inner) from None

    @classmethod
    def from_yaml(cls, path: str | Path, **overrides: Any) -> RunConfig:
        """Load a run config (name or path); ``overrides`` (non-None values) win, ``backend_config`` is merged."""
        return cls.load(path, **overrides)

    def source_options(self) -> dict[str, Any]:
        """Reader options for ``mllm3d.shared.sources.open_source`` (only those set)."""
        return {k: v for k, v in (("frame_stride", self.frame_stride), ("max_frames", self.max_frames)) if v is not None}

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["views"] = "all" if self.views is None else self.views
        return d


def load_backend_config(path: str | Path) -> dict[str, Any]:
    """A backend config YAML (name or path): a flat mapping, or a run config whose ``backend_config`` is taken."""
    data, _ = load_mapping(path, "stage1")
    if "backend_config" in data:
        inner = data["backend_config"] or {}
        if not isinstance(inner, dict):
            raise BadInputError(f"{path}: backend_config must be a mapping")
        return dict(inner)
    return data
