"""``mesh:PATH`` scenes: a triangle-mesh PLY (+ optional ScanNet-style instances) with ray-cast views.

A scene directory holds one mesh (``<scene>_vh_clean_2.ply`` or the only ``*.ply``), optionally
``*.aggregation.json`` + ``*.segs.json`` (ScanNet format: segGroups of segment ids, per-vertex segIndices)
and optionally given cameras: ``pose/N.txt`` (4x4 camera-to-world) with ``intrinsic/intrinsic_depth.txt``.
PATH is one such directory or a directory of them. Points are the mesh vertices.

Without ``pose/`` a trajectory is generated (:func:`generate_trajectory`): z is up; one camera per
target object (instances whose label is not wall / floor / ceiling, by id, cycled up to ``num_views``),
placed at eye height on an ellipse inside the room's bounding box on the side opposite the object and
aimed at its centroid; positions inside an object's bounding box are rotated further round the ellipse.
Views are rendered (mllm3d.shared.raycast) on access: depth, vertex colours and - with instances - the
``instance_map`` the synthetic backend reads. ``frame_stride`` / ``max_frames`` subsample the cameras.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from mllm3d.shared.errors import BadInputError, UnknownSceneError
from mllm3d.shared.geometry import check_intrinsic, pose_problem
from mllm3d.shared.mesh_ply import read_mesh_ply
from mllm3d.shared.raycast import MeshRaycaster
from mllm3d.shared.scannet import (
    check_frame_options,
    find_scene_dirs,
    read_matrix,
    refuse_options,
    scene_id_from_dir,
    valid_depth_fraction,
)
from mllm3d.shared.scene import Query, Scene, View
from mllm3d.shared.synthetic import look_pose

STRUCTURE_LABELS = ("wall", "floor", "ceiling", "window", "door", "unknown", "")
DEFAULT_SIZE = (240, 320)  # (H, W) of generated views
EYE_HEIGHT = 1.4  # metres above the floor


def default_intrinsic(image_size: tuple[int, int] = DEFAULT_SIZE, focal_scale: float = 0.8) -> np.ndarray:
    """Pinhole K of generated views: focal = focal_scale * width, principal point at the centre."""
    h, w = image_size
    f = focal_scale * w
    return np.array([[f, 0.0, (w - 1) / 2], [0.0, f, (h - 1) / 2], [0.0, 0.0, 1.0]])


def generate_trajectory(
    vertices: np.ndarray, instance_ids: np.ndarray | None, labels: dict[int, str], num_views: int = 16
) -> list[np.ndarray]:
    """Camera-to-world poses looking at the scene's objects from inside the room (module docstring)."""
    v = np.asarray(vertices, dtype=np.float64)
    lo, hi = np.percentile(v, 1, axis=0), np.percentile(v, 99, axis=0)
    centre = (lo + hi) / 2
    boxes: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    if instance_ids is not None:
        for oid in sorted(int(i) for i in np.unique(instance_ids) if i >= 0):
            if labels.get(oid, "").strip().lower() in STRUCTURE_LABELS:
                continue
            pts = v[instance_ids == oid]
            boxes.append((pts.mean(axis=0), pts.min(axis=0), pts.max(axis=0)))
    targets = [b[0] for b in boxes] or [centre]
    z = min(lo[2] + EYE_HEIGHT, hi[2] - 0.2)
    radii = np.maximum((hi[:2] - lo[:2]) / 2 * 0.8, 0.05)
    poses = []
    for i in range(num_views):
        target = targets[i % len(targets)]
        rel = target[:2] - centre[:2]
        base = float(np.arctan2(rel[1], rel[0])) + np.pi + 0.35 * (i // len(targets))
        pos = None
        for k in range(24):
            ang = base + (k + 1) // 2 * (-1) ** k * np.pi / 12
            p = np.array([centre[0] + radii[0] * np.cos(ang), centre[1] + radii[1] * np.sin(ang), z])
            if not any(np.all(p >= blo - 0.2) and np.all(p <= bhi + 0.2) for _, blo, bhi in boxes):
                pos = p
                break
        pos = pos if pos is not None else np.array([centre[0], centre[1], z])
        d = target - pos
        yaw = float(np.arctan2(d[1], d[0]))
        pitch = float(np.arctan2(d[2], max(float(np.hypot(d[0], d[1])), 1e-6)))
        poses.append(look_pose(pos, yaw, pitch))
    return poses


class RenderedViews(Sequence[View]):
    """Views whose depth (and, without ``color_loader``, colour) is ray-cast from a mesh on access.

    ``color_loader(i)`` gives (colour image, its 3x3 K) for real photos (ScanNet++ DSLR); the last
    few renders are cached, so pose / depth look-ups of view sampling do not render twice.
    """

    def __init__(
        self, raycaster: MeshRaycaster, intrinsic: np.ndarray, image_size: tuple[int, int], poses: list[np.ndarray],
        frame_ids: list[int], attributes: dict[int, tuple[str, str]] | None = None,
        color_loader: Callable[[int], tuple[np.ndarray, np.ndarray]] | None = None,
    ) -> None:
        self.raycaster, self.intrinsic, self.image_size = raycaster, np.asarray(intrinsic, float), image_size
        self.poses, self.ids, self.attributes, self.color_loader = poses, frame_ids, attributes, color_loader
        self._cache: OrderedDict[int, object] = OrderedDict()

    def __len__(self) -> int:
        return len(self.poses)

    def _render(self, i: int):
        if i not in self._cache:
            self._cache[i] = self.raycaster.render(self.intrinsic, self.poses[i], self.image_size)
            while len(self._cache) > 4:
                self._cache.popitem(last=False)
        return self._cache[i]

    def __getitem__(self, index):  # type: ignore[override]
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        i = range(len(self))[index]
        r = self._render(i)
        if self.color_loader is not None:
            color, color_k = self.color_loader(i)
        else:
            color = r.color if r.color is not None else np.full((*self.image_size, 3), 128, np.uint8)
            color_k = self.intrinsic
        return View(
            frame_id=self.ids[i], color=color, depth=r.depth, intrinsic=self.intrinsic.copy(),
            pose=self.poses[i].copy(), color_intrinsic=np.asarray(color_k, float).copy(),
            instance_map=None if r.instance_map is None else r.instance_map.copy(),
            instance_attributes=self.attributes,
        )

    def frame_ids(self) -> list[int]:
        return list(self.ids)

    def pose_at(self, index: int) -> np.ndarray:
        return self.poses[index].copy()

    def depth_at(self, index: int) -> np.ndarray:
        return self._render(range(len(self))[index]).depth

    def valid_depth_fraction(self, index: int) -> float:
        return valid_depth_fraction(self.depth_at(index))


def find_one(d: Path, suffix: str, prefer: str | None = None) -> Path | None:
    """``prefer`` if it exists, else the only ``*suffix`` file of ``d``; several without a preference raise."""
    if prefer is not None and (d / prefer).is_file():
        return d / prefer
    found = sorted(p for p in d.glob(f"*{suffix}") if not p.name.startswith("."))
    if len(found) > 1:
        raise BadInputError(f"{d}: several *{suffix} files ({', '.join(p.name for p in found[:4])}); keep one")
    return found[0] if found else None


def _given_cameras(d: Path) -> tuple[list[int], list[np.ndarray], np.ndarray, tuple[int, int]] | None:
    pose_dir = d / "pose"
    if not pose_dir.is_dir():
        return None
    files = sorted((p for p in pose_dir.glob("*.txt")), key=lambda p: (len(p.stem), p.stem))
    ids, poses = [], []
    for p in files:
        if not p.stem.isdigit():
            raise BadInputError(f"{p}: pose file name is not a frame number")
        m = read_matrix(p, "pose")
        problem = "not 4x4" if m.shape != (4, 4) else pose_problem(m)
        if problem is not None:
            raise BadInputError(f"{p}: invalid camera-to-world pose: {problem}")
        ids.append(int(p.stem))
        poses.append(m)
    if not ids:
        raise BadInputError(f"{pose_dir}: no pose/N.txt files")
    kfile = d / "intrinsic" / "intrinsic_depth.txt"
    if not kfile.is_file():
        return ids, poses, default_intrinsic(), DEFAULT_SIZE
    k = check_intrinsic(read_matrix(kfile, "depth intrinsic")[:3, :3], str(kfile))
    size = (int(round(2 * k[1, 2] + 1)), int(round(2 * k[0, 2] + 1)))  # principal point at the centre
    return ids, poses, k, size


def load_mesh_scene(scene_dir: str | os.PathLike[str], frame_stride: int = 1, max_frames: int | None = None,
                    num_views: int = 16) -> Scene:
    """One mesh scene directory as a Scene with rendered views (see the module docstring)."""
    from mllm3d.shared.scannet import load_instances

    d = Path(scene_dir)
    check_frame_options(d, frame_stride, max_frames)
    sid = scene_id_from_dir(d)
    mesh_path = find_one(d, ".ply", prefer=f"{d.name}_vh_clean_2.ply")
    if mesh_path is None:
        raise BadInputError(f"{d}: no mesh *.ply file")
    mesh = read_mesh_ply(mesh_path)
    verts, colors = mesh.vertices, mesh.colors
    if colors is None:
        colors = np.full((len(verts), 3), 128, dtype=np.uint8)
    agg, segs = find_one(d, ".aggregation.json"), find_one(d, ".segs.json")
    inst, labels = None, {}
    if agg is not None and segs is not None:
        inst, labels = load_instances(agg, segs, len(verts))
    given = _given_cameras(d)
    if given is None:
        ids = list(range(num_views))
        poses, k, size = generate_trajectory(verts, inst, labels, num_views), default_intrinsic(), DEFAULT_SIZE
    else:
        ids, poses, k, size = given
    keep = list(range(len(ids)))[::frame_stride][: max_frames if max_frames is not None else None]
    rc = MeshRaycaster(verts, mesh.faces, colors, inst, name=str(mesh_path))
    attrs = {oid: (label, "") for oid, label in labels.items()} if inst is not None else None
    views = RenderedViews(rc, k, size, [poses[i] for i in keep], [ids[i] for i in keep], attrs)
    return Scene(scene_id=sid, points=verts, colors=colors, views=views, instance_ids=inst,
                 instance_labels=labels, source="mesh")


def is_mesh_dir(path: Path) -> bool:
    return path.is_dir() and any(p.suffix == ".ply" and not p.name.startswith(".") for p in path.iterdir())


class DirectorySource:
    """Scenes = scene directories under ``root`` (or ``root`` itself), loaded by ``loader``; queries from
    ``queries_*.json`` files beside them (mllm3d.shared.annotations.load_queries)."""

    name = "dir"

    def __init__(self, root: str | os.PathLike[str], is_scene: Callable[[Path], bool], what: str) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise BadInputError(f"{self.root}: {what} root is not a directory")
        self._dirs = find_scene_dirs(self.root, is_scene, f"no {what} scene directories found")
        self.what = what

    def scene_ids(self) -> list[str]:
        return sorted(self._dirs)

    def scene_dir(self, scene_id: str) -> Path:
        if scene_id not in self._dirs:
            raise UnknownSceneError(f"{self.root}: no {self.what} scene {scene_id!r} (have {len(self._dirs)})")
        return self._dirs[scene_id]

    def queries(self) -> list[Query]:
        from mllm3d.shared.annotations import load_queries

        return [q for sid in self.scene_ids() for f in sorted(self._dirs[sid].glob("queries_*.json"))
                for q in load_queries(f)]


class MeshSource(DirectorySource):
    """``mesh:PATH``: mesh scene directories (a mllm3d.shared.scene.SceneSource)."""

    name = "mesh"

    def __init__(self, root: str | os.PathLike[str], frame_stride: int = 1, max_frames: int | None = None,
                 **unsupported: object) -> None:
        refuse_options("mesh", root, unsupported, "frame_stride, max_frames")
        super().__init__(root, is_mesh_dir, "mesh")
        check_frame_options(self.root, frame_stride, max_frames)
        self.options = {"frame_stride": frame_stride, "max_frames": max_frames}

    def load(self, scene_id: str) -> Scene:
        return load_mesh_scene(self.scene_dir(scene_id), **self.options)
