"""Reader for ScanNet exports: ``color/N.jpg|png``, ``depth/N.png`` (uint16 mm), ``pose/N.txt``, ``intrinsic/``.

The point cloud comes from ``<scene>_vh_clean_2.ply`` (instances from ``<scene>.aggregation.json``
and ``<scene>_vh_clean_2.0.010000.segs.json`` when present), otherwise from back-projecting every
view's depth, merged and voxel-downsampled. Views are lazy: ``Scene.views`` loads one frame per
``__getitem__``; what can be checked cheaply (files present, poses, image sizes, empty depth) is
checked when the scene is loaded.

Frames are subsampled at discovery: ``frame_stride`` keeps every N-th frame *file* of the export
(sorted numerically; an export already written every 20th frame has ids 0, 20, 40, ... and stride 1
keeps them all) and ``max_frames`` caps the count. Discovery decodes each kept depth map once (empty
check) and remembers its share of valid pixels, so view sampling needs no further decode
(:meth:`LazyViews.valid_depth_fraction`, :meth:`LazyViews.pose_at`, :meth:`LazyViews.depth_at`).

The pieces live in :mod:`mllm3d.shared.scannet_images` (depth / colour / matrix files),
:mod:`mllm3d.shared.scannet_frames` (frame discovery, intrinsics, lazy views),
:mod:`mllm3d.shared.scannet_instances` (instance annotations) and :mod:`mllm3d.shared.scene_folders`
(scene ids and folder listing); their public names are re-exported here.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from mllm3d.shared.errors import BadInputError, UnknownSceneError
from mllm3d.shared.geometry import backproject_depth, voxel_downsample
from mllm3d.shared.ply import ply_points_colors, read_ply
from mllm3d.shared.scannet_frames import (
    COLOR_EXTS,
    Frame,
    LazyViews,
    check_frame_options,
    discover_frames,
    intrinsics,
)
from mllm3d.shared.scannet_images import (
    DEFAULT_MAX_DEPTH,
    DEPTH_MODES,
    DEPTH_SHIFT,
    read_color,
    read_depth,
    read_matrix,
    valid_depth_fraction,
)
from mllm3d.shared.scannet_instances import load_instances
from mllm3d.shared.scene import Query, Scene
from mllm3d.shared.scene_folders import SCENE_PREFIX, find_scene_dirs, refuse_options, scene_id_from_dir

__all__ = [
    "COLOR_EXTS", "DEFAULT_MAX_DEPTH", "DEPTH_MODES", "DEPTH_SHIFT", "SCENE_PREFIX", "Frame", "LazyViews",
    "ScanNetSource", "check_frame_options", "discover_frames", "find_scene_dirs", "is_scene_dir", "load_instances",
    "load_scannet_scene", "read_color", "read_depth", "read_matrix", "refuse_options", "scene_id_from_dir",
    "valid_depth_fraction",
]

_MERGE_EVERY = 2_000_000  # voxel-downsample the back-projected cloud whenever it grows past this


def _find(scene_dir: Path, scene_id: str, suffix: str) -> Path | None:
    """``<scene_id><suffix>`` in the directory, else the single ``*<suffix>`` file there."""
    exact = scene_dir / f"{scene_id}{suffix}"
    try:
        if exact.is_file():
            return exact
    except OSError:  # the name is too long for the filesystem (a very long scene id): no such file
        pass
    found = sorted(scene_dir.glob(f"*{suffix}"))
    if len(found) > 1:  # which one belongs to the scene is a guess: instances would be dropped or wrong
        raise BadInputError(
            f"{scene_dir}: no {exact.name}, and {len(found)} files match *{suffix} "
            f"({', '.join(p.name for p in found[:4])}); rename the scene's own one to {exact.name}"
        )
    return found[0] if found else None


def _backprojected_cloud(
    views: LazyViews, depth_hw: tuple[int, int], color_hw: tuple[int, int], point_stride: int, voxel: float,
    scene_dir: Path,
) -> tuple[np.ndarray, np.ndarray]:
    """Merge the back-projected depth of every view, voxel-downsampled; colors from the color images."""
    from rich.progress import track

    pts_all: list[np.ndarray] = []
    col_all: list[np.ndarray] = []
    held = 0
    sy, sx = color_hw[0] / depth_hw[0], color_hw[1] / depth_hw[1]
    for i in track(range(len(views)), description=f"back-projecting {views.frame_ids()[0]}..",
                   disable=len(views) < 50, transient=True):
        v = views[i]
        pts, rows, cols = backproject_depth(v.depth, v.intrinsic, v.pose, stride=point_stride)
        cr = np.clip(np.rint((rows + 0.5) * sy - 0.5), 0, color_hw[0] - 1).astype(np.intp)
        cc = np.clip(np.rint((cols + 0.5) * sx - 0.5), 0, color_hw[1] - 1).astype(np.intp)
        pts_all.append(pts)
        col_all.append(v.color[cr, cc])
        held += len(pts)
        if held > _MERGE_EVERY:
            pts_all, col_all = _merge(pts_all, col_all, voxel)
            held = len(pts_all[0])
    pts_m, col_m = _merge(pts_all, col_all, voxel)
    if len(pts_m[0]) == 0:
        raise BadInputError(f"{scene_dir}: empty point cloud: no valid depth pixel in any view")
    return pts_m[0].astype(np.float32), col_m[0].astype(np.uint8)


def _merge(pts: list[np.ndarray], cols: list[np.ndarray], voxel: float) -> tuple[list[np.ndarray], list[np.ndarray]]:
    p = np.concatenate(pts) if pts else np.zeros((0, 3))
    c = np.concatenate(cols) if cols else np.zeros((0, 3), dtype=np.uint8)
    if voxel > 0 and len(p):
        keep = voxel_downsample(p, voxel)
        p, c = p[keep], c[keep]
    return [p], [c]


def load_scannet_scene(
    scene_dir: str | os.PathLike[str],
    frame_stride: int = 1,
    max_frames: int | None = None,
    point_stride: int = 4,
    voxel: float = 0.02,
    max_depth: float = DEFAULT_MAX_DEPTH,
) -> Scene:
    """Load one ScanNet export directory as a Scene with lazy views (see the module docstring)."""
    d = Path(scene_dir)
    if not d.is_dir():
        raise BadInputError(f"{d}: not a ScanNet scene directory")
    scene_id = scene_id_from_dir(d)
    frames, depth_hw, color_hw = discover_frames(d, frame_stride, max_frames, max_depth=max_depth)
    k_depth, k_color = intrinsics(d, depth_hw, color_hw)
    views = LazyViews(frames, k_depth, k_color, max_depth)
    mesh = _find(d, scene_id, "_vh_clean_2.ply")
    instance_ids = None
    labels: dict[int, str] = {}
    if mesh is not None:
        points, colors = ply_points_colors(read_ply(mesh), mesh)
        if colors is None:
            colors = np.full((len(points), 3), 128, dtype=np.uint8)
        if len(points) == 0:
            raise BadInputError(f"{mesh}: empty point cloud")
        agg = _find(d, scene_id, ".aggregation.json")
        segs = _find(d, scene_id, "_vh_clean_2.0.010000.segs.json")
        if agg is not None and segs is not None:
            instance_ids, labels = load_instances(agg, segs, len(points))
    else:
        points, colors = _backprojected_cloud(views, depth_hw, color_hw, point_stride, voxel, d)
    return Scene(
        scene_id=scene_id,
        points=points,
        colors=colors,
        views=views,
        instance_ids=instance_ids,
        instance_labels=labels,
        source="scannet",
    )


def is_scene_dir(path: Path) -> bool:
    """True for a directory in the ScanNet export layout (has depth/ and pose/)."""
    return (path / "depth").is_dir() and (path / "pose").is_dir()


class ScanNetSource:
    """ScanNet scenes under ``root`` (a directory of scene dirs, or one scene dir); a mllm3d.shared.scene.SceneSource.

    ``queries()`` returns the queries of any ``queries_*.json`` file found in the scene directories
    (as in the fixtures), read with mllm3d.shared.annotations.load_queries. ``frame_stride`` / ``max_frames``
    subsample every scene's frames (see :func:`discover_frames`); ``options`` records what was used.
    """

    name = "scannet"

    def __init__(
        self,
        root: str | os.PathLike[str],
        frame_stride: int = 1,
        max_frames: int | None = None,
        point_stride: int = 4,
        voxel: float = 0.02,
        max_depth: float = DEFAULT_MAX_DEPTH,
    ) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise BadInputError(f"{self.root}: ScanNet root is not a directory")
        check_frame_options(self.root, frame_stride, max_frames)
        self.options = {"frame_stride": frame_stride, "max_frames": max_frames, "point_stride": point_stride,
                        "voxel": voxel, "max_depth": max_depth}
        self._dirs = find_scene_dirs(self.root, is_scene_dir, "no ScanNet scene directories (with depth/ and pose/) found")

    def scene_ids(self) -> list[str]:
        """Scene ids (directory names without the ``scannet_`` prefix), sorted."""
        return sorted(self._dirs)

    def scene_dir(self, scene_id: str) -> Path:
        """The directory of ``scene_id``."""
        if scene_id not in self._dirs:
            raise UnknownSceneError(f"{self.root}: no ScanNet scene {scene_id!r} (have {len(self._dirs)} scenes)")
        return self._dirs[scene_id]

    def load(self, scene_id: str) -> Scene:
        """Load one scene (lazy views)."""
        return load_scannet_scene(self.scene_dir(scene_id), **self.options)

    def queries(self) -> list[Query]:
        """Queries shipped beside the scenes (``queries_*.json``), [] when none."""
        from mllm3d.shared.annotations import load_queries

        out: list[Query] = []
        for sid in self.scene_ids():
            for f in sorted(self._dirs[sid].glob("queries_*.json")):
                out.extend(load_queries(f))
        return out
