"""The scene interface both stages read: a point cloud plus posed RGB-D views.

Conventions (see docs/store.md):
- ``points`` are world coordinates in metres, ``colors`` uint8 RGB.
- ``instance_ids`` (optional) give the object id of each point, -1 for none.
- A ``View``'s depth is in metres (0 = invalid) at the *projection* resolution; its
  ``intrinsic`` is the 3x3 pinhole matrix for that depth image. ``color`` may have another
  resolution; ``color_intrinsic`` is its own 3x3 matrix.
- ``pose`` is the 4x4 camera-to-world matrix (ScanNet convention: x right, y down, z forward).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np


@dataclass
class View:
    """One posed RGB-D frame."""

    frame_id: int
    color: np.ndarray  # (Hc, Wc, 3) uint8
    depth: np.ndarray  # (H, W) float32 metres, 0 = invalid
    intrinsic: np.ndarray  # (3, 3) for the depth image
    pose: np.ndarray  # (4, 4) camera-to-world
    color_intrinsic: np.ndarray | None = None  # (3, 3) for the color image; None = same as depth
    instance_map: np.ndarray | None = None  # (H, W) int32 object id per depth pixel (synthetic only), -1 = none
    # object id -> (category, colour name) of the objects in ``instance_map`` (synthetic only)
    instance_attributes: dict[int, tuple[str, str]] | None = None

    @property
    def depth_size(self) -> tuple[int, int]:
        """(height, width) of the depth / projection image."""
        return int(self.depth.shape[0]), int(self.depth.shape[1])

    @property
    def color_size(self) -> tuple[int, int]:
        return int(self.color.shape[0]), int(self.color.shape[1])


@dataclass
class Scene:
    """A scene: point cloud, optional instance labels and a sequence of views.

    ``views`` may be a lazy sequence (the ScanNet reader loads frames on access).
    """

    scene_id: str
    points: np.ndarray  # (N, 3) float32
    colors: np.ndarray  # (N, 3) uint8
    views: Sequence[View]
    instance_ids: np.ndarray | None = None  # (N,) int32, -1 = no object
    instance_labels: dict[int, str] = field(default_factory=dict)  # object id -> category name
    source: str = ""

    @property
    def num_points(self) -> int:
        return int(self.points.shape[0])

    def frame_ids(self) -> list[int]:
        return [v.frame_id for v in self.views]


@dataclass
class Query:
    """One language query on one scene, whatever benchmark it came from."""

    scene_id: str
    query_id: str
    text: str
    target_ids: list[int] | None = None  # None = unknown; [] = zero-target query
    source: str = "own"
    kind: str | None = None  # e.g. explicit / spatial / implicit, unique / multiple
    extra: dict = field(default_factory=dict)


@runtime_checkable
class SceneSource(Protocol):
    """Where scenes (and, for synthetic data, their queries) come from."""

    name: str

    def scene_ids(self) -> list[str]:
        """All scene ids, in a stable order."""
        ...

    def load(self, scene_id: str) -> Scene:
        """Load one scene; raises UnknownSceneError for an id it does not have."""
        ...

    def queries(self) -> list[Query]:
        """Queries that come with the source (synthetic data); [] when none."""
        ...


def iter_views(scene: Scene) -> Iterator[View]:
    for i in range(len(scene.views)):
        yield scene.views[i]
