"""Procedural synthetic indoor scenes: a room of axis-aligned boxes, exact ray-cast RGB-D views, queries.

Deterministic from a seed and fast (one scene with 16 views at 120x160 in ~0.1-0.3 s): it is the
default data of the demo and of every test. Everything is made of axis-aligned boxes, so surface
sampling and ray casting are exact: a surface point projected into a view lands on a pixel whose
``instance_map`` is the point's own instance unless it is occluded (then the depth test rejects it).

Steps (each draws from its own random stream, so queries can be made without rendering):
  ``generate_layout`` (synthetic_layout) -> room, windows, objects as boxes;
  ``sample_points``   (synthetic_points) -> area-proportional surface points with instance ids and colours;
  ``render_views``    (synthetic_render) -> depth / colour / instance map per camera by vectorised ray casting;
  ``make_queries``    (synthetic_queries) -> explicit / spatial / implicit queries with unique targets.
This module holds the entry points and the SceneSource, and re-exports the pieces above.
"""

from __future__ import annotations

import numpy as np

from mllm3d.shared.errors import BadInputError, UnknownSceneError
from mllm3d.shared.scene import Query, Scene
from mllm3d.shared.synthetic_layout import (
    CATEGORIES,
    PALETTE,
    Category,
    Layout,
    SyntheticConfig,
    SynthObject,
    generate_layout,
)
from mllm3d.shared.synthetic_points import sample_points
from mllm3d.shared.synthetic_queries import AFFORDANCES, make_queries, query_candidates
from mllm3d.shared.synthetic_render import (
    camera_poses,
    intrinsic_matrix,
    look_pose,
    raycast,
    render_view,
    render_views,
)

__all__ = [
    "AFFORDANCES", "CATEGORIES", "PALETTE", "Category", "Layout", "SynthObject", "SyntheticConfig",
    "SyntheticSource", "camera_poses", "generate_layout", "generate_queries", "generate_scene", "intrinsic_matrix",
    "look_pose", "make_queries", "query_candidates", "raycast", "render_view", "render_views", "sample_points",
    "scene_seed",
]

# ----------------------------------------------------------------------------------------------
# Public entry points
# ----------------------------------------------------------------------------------------------


def generate_queries(scene_id: str, seed: int, cfg: SyntheticConfig = SyntheticConfig()) -> list[Query]:
    """The queries of ``generate_scene(scene_id, seed, cfg)`` without sampling points or rendering."""
    return make_queries(scene_id, generate_layout(seed, cfg), seed, cfg)


def generate_scene(scene_id: str, seed: int, cfg: SyntheticConfig = SyntheticConfig()) -> tuple[Scene, list[Query]]:
    """One synthetic scene (points, instances, rendered views) and its queries, deterministic from ``seed``."""
    layout = generate_layout(seed, cfg)
    points, colors, inst = sample_points(layout, seed, cfg)
    views = render_views(layout, seed, cfg)
    scene = Scene(
        scene_id=scene_id,
        points=points,
        colors=colors,
        views=views,
        instance_ids=inst,
        instance_labels=dict(layout.instance_labels),
        source="synthetic",
    )
    return scene, make_queries(scene_id, layout, seed, cfg)


# ----------------------------------------------------------------------------------------------
# Scene source
# ----------------------------------------------------------------------------------------------


def scene_seed(seed: int, index: int) -> int:
    """The generator seed of scene ``index`` of a source seeded with ``seed``."""
    return int(np.random.SeedSequence([int(seed), int(index)]).generate_state(1)[0])


class SyntheticSource:
    """``num_scenes`` synthetic scenes ``synth_0000``, ``synth_0001``, ... (a mllm3d.shared.scene.SceneSource).

    Scenes are regenerated on every ``load`` (deterministic, ~0.3 s); queries are made lazily
    from the layouts alone (no rendering) and cached.
    """

    name = "synthetic"

    def __init__(self, num_scenes: int, seed: int = 0, cfg: SyntheticConfig | None = None) -> None:
        if num_scenes < 0:
            raise BadInputError(f"synthetic source: num_scenes must be >= 0, got {num_scenes}")
        self.num_scenes = int(num_scenes)
        self.seed = int(seed)
        self.cfg = cfg if cfg is not None else SyntheticConfig()
        self._queries: dict[str, list[Query]] = {}

    def scene_ids(self) -> list[str]:
        """``synth_0000`` ... in order."""
        return [f"synth_{i:04d}" for i in range(self.num_scenes)]

    def _index(self, scene_id: str) -> int:
        ids = self.scene_ids()
        if scene_id not in ids:
            raise UnknownSceneError(
                f"synthetic source (seed {self.seed}, {self.num_scenes} scenes) has no scene {scene_id!r}; "
                f"ids are synth_0000..synth_{max(self.num_scenes - 1, 0):04d}"
            )
        return ids.index(scene_id)

    def load(self, scene_id: str) -> Scene:
        """Generate scene ``scene_id`` (same result on every call)."""
        i = self._index(scene_id)
        scene, queries = generate_scene(scene_id, scene_seed(self.seed, i), self.cfg)
        self._queries.setdefault(scene_id, queries)
        return scene

    def scene_queries(self, scene_id: str) -> list[Query]:
        """The queries of one scene."""
        i = self._index(scene_id)
        if scene_id not in self._queries:
            self._queries[scene_id] = generate_queries(scene_id, scene_seed(self.seed, i), self.cfg)
        return list(self._queries[scene_id])

    def queries(self) -> list[Query]:
        """All scenes' queries, scene by scene."""
        return [q for sid in self.scene_ids() for q in self.scene_queries(sid)]
