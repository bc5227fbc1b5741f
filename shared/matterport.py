"""``matterport:PATH`` scenes: Matterport3D region scenes (Reason3D-MP3D), one scene per house region.

Per house directory ``<house>/`` (PATH is the data root of house dirs, or one house dir):
  ``region_segmentations/regionN.ply``         region mesh (points = vertices, colours = vertex colours)
  ``region_segmentations/regionN.fsegs.json``  ``segIndices``: segment id per *face*
  ``region_segmentations/regionN.semseg.json`` ``segGroups`` [{objectId|id, label, segments}] -> instances
  ``undistorted_color_images/*.jpg``, ``undistorted_depth_images/*.png`` (uint16, 0.25 mm units)
  ``undistorted_camera_parameters/<house>.conf``: ``intrinsics_matrix fx 0 cx 0 fy cy 0 0 1`` then
  ``scan <depth> <color> m00 .. m33`` lines (row-major camera-to-world) using the last intrinsics.
The .conf camera axes are OpenGL's (x right, y up, z back); they are flipped to ScanNet's (y down,
z forward) as ``pose @ diag(1, -1, -1, 1)``. A vertex's instance is that of a face using it. Scene id
``<house>_regionN``. A frame belongs to a region when at least ``MIN_VISIBLE`` of the region's vertices
(a 4000-vertex sample) project into it in front of its depth (within 10 cm); frames are numbered in .conf
order; finding them decodes every depth image of the house once per region load. With the ``mesh`` extra, views also carry an ``instance_map`` ray-cast from the region mesh.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from mllm3d.shared.errors import BadInputError, UnknownSceneError
from mllm3d.shared.geometry import check_intrinsic, pose_problem
from mllm3d.shared.mesh_ply import read_mesh_ply
from mllm3d.shared.scannet import check_frame_options, read_color, refuse_options
from mllm3d.shared.scene import Query, Scene, View

DEPTH_SHIFT = 4000.0  # 0.25 mm units
GL_TO_CV = np.diag([1.0, -1.0, -1.0, 1.0])
MIN_VISIBLE = 0.02  # share of the sampled region vertices a frame must see
_SAMPLE = 4000


def read_conf(path: Path) -> list[tuple[str, str, np.ndarray, np.ndarray]]:
    """(depth name, color name, K, camera-to-world in ScanNet axes) per ``scan`` line of a .conf file."""
    k = None
    out = []
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise BadInputError(f"{path}: cannot read camera parameters: {exc}") from None
    for n, line in enumerate(lines, 1):
        w = line.split()
        try:
            if w and w[0] == "intrinsics_matrix":
                k = check_intrinsic(np.array([float(x) for x in w[1:10]]).reshape(3, 3), f"{path}:{n}")
            elif w and w[0] == "scan":
                if k is None:
                    raise BadInputError(f"{path}:{n}: scan line before any intrinsics_matrix")
                m = np.array([float(x) for x in w[3:19]]).reshape(4, 4) @ GL_TO_CV
                problem = pose_problem(m)
                if problem is not None:
                    raise BadInputError(f"{path}:{n}: invalid camera-to-world pose: {problem}")
                out.append((w[1], w[2], k, m))
        except (ValueError, IndexError):
            raise BadInputError(f"{path}:{n}: malformed line {line[:80]!r}") from None
    if not out:
        raise BadInputError(f"{path}: no scan lines")
    return out


def read_mp_depth(path: Path) -> np.ndarray:
    """Matterport depth PNG (uint16, 0.25 mm) -> float32 metres, 0 = invalid."""
    try:
        with Image.open(path) as im:
            d = np.asarray(im)
    except OSError as exc:
        raise BadInputError(f"{path}: unreadable depth image: {exc}") from None
    if d.ndim != 2 or d.dtype not in (np.uint16, np.int32, np.uint32, np.int64):
        raise BadInputError(f"{path}: depth must be a 16-bit single-channel PNG, got {d.dtype} {d.shape}")
    return (d.astype(np.float32) / DEPTH_SHIFT).astype(np.float32)


def region_instances(region_ply: Path, num_vertices: int, faces: np.ndarray) -> tuple[np.ndarray | None, dict]:
    """Per-vertex instance ids (via face segments) and labels; (None, {}) without .fsegs/.semseg files."""
    stem = region_ply.with_suffix("")
    fsegs, semseg = Path(f"{stem}.fsegs.json"), Path(f"{stem}.semseg.json")
    if not (fsegs.is_file() and semseg.is_file()):
        return None, {}
    try:
        seg = np.asarray(json.loads(fsegs.read_text())["segIndices"], dtype=np.int64)
        groups = json.loads(semseg.read_text())["segGroups"]
        seg_to_obj, labels = {}, {}
        for g in groups:
            oid = int(g.get("objectId", g.get("id")))
            labels[oid] = str(g.get("label", ""))
            for s in g.get("segments", []):
                seg_to_obj[int(s)] = oid
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise BadInputError(f"{fsegs} / {semseg}: cannot read instances: {exc}") from None
    if seg.shape != (len(faces),):
        raise BadInputError(f"{fsegs}: {seg.shape[0]} segIndices for a mesh of {len(faces)} faces")
    uniq, inv = np.unique(seg, return_inverse=True)
    face_obj = np.array([seg_to_obj.get(int(s), -1) for s in uniq], dtype=np.int32)[inv]
    vert = np.full(num_vertices, -1, dtype=np.int32)
    for c in range(3):
        has = face_obj >= 0
        vert[faces[has, c]] = face_obj[has]
    return vert, labels


def visible_share(points: np.ndarray, depth: np.ndarray, k: np.ndarray, pose: np.ndarray, tol: float = 0.1) -> float:
    """Share of ``points`` that project into the image in front of (within ``tol`` of) its depth."""
    inv = np.linalg.inv(pose)
    cam = points @ inv[:3, :3].T + inv[:3, 3]
    z = cam[:, 2]
    front = z > 0.05
    u = np.rint(k[0, 0] * cam[:, 0] / np.where(front, z, 1) + k[0, 2]).astype(np.int64)
    v = np.rint(k[1, 1] * cam[:, 1] / np.where(front, z, 1) + k[1, 2]).astype(np.int64)
    h, w = depth.shape
    ok = front & (u >= 0) & (u < w) & (v >= 0) & (v < h)
    d = depth[v[ok], u[ok]]
    return float(np.sum((d > 0) & (np.abs(d - z[ok]) < tol)) / max(len(points), 1))


class MatterportViews(Sequence[View]):
    """Views of one region: colour + depth read on access, instance map ray-cast when a raycaster is given."""

    def __init__(self, frames: list[tuple[int, Path, Path, np.ndarray, np.ndarray]], raycaster=None,
                 attributes: dict | None = None) -> None:
        self.frames, self.raycaster, self.attributes = frames, raycaster, attributes

    def __len__(self) -> int:
        return len(self.frames)

    def __getitem__(self, index):  # type: ignore[override]
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        fid, cpath, dpath, k, pose = self.frames[index]
        depth = read_mp_depth(dpath)
        inst = None
        if self.raycaster is not None:
            inst = self.raycaster.render(k, pose, depth.shape).instance_map
        return View(frame_id=fid, color=read_color(cpath), depth=depth, intrinsic=k.copy(), pose=pose.copy(),
                    color_intrinsic=k.copy(), instance_map=inst, instance_attributes=self.attributes)

    def frame_ids(self) -> list[int]:
        return [f[0] for f in self.frames]

    def pose_at(self, index: int) -> np.ndarray:
        return self.frames[index][4].copy()

    def depth_at(self, index: int) -> np.ndarray:
        return read_mp_depth(self.frames[index][2])


def _is_house(p: Path) -> bool:
    return (p / "region_segmentations").is_dir() and (p / "undistorted_camera_parameters").is_dir()


class MatterportSource:
    """``matterport:PATH``: region scenes ``<house>_regionN`` of the houses under PATH (a SceneSource)."""

    name = "matterport"

    def __init__(self, root: str | os.PathLike[str], frame_stride: int = 1, max_frames: int | None = None,
                 **unsupported: object) -> None:
        refuse_options("matterport", root, unsupported, "frame_stride, max_frames")
        self.root = Path(root)
        if not self.root.is_dir():
            raise BadInputError(f"{self.root}: Matterport root is not a directory")
        check_frame_options(self.root, frame_stride, max_frames)
        self.options = {"frame_stride": frame_stride, "max_frames": max_frames}
        houses = [self.root] if _is_house(self.root) else sorted(p for p in self.root.iterdir() if _is_house(p))
        if not houses:
            raise BadInputError(f"{self.root}: no Matterport house dirs (region_segmentations/ + "
                                "undistorted_camera_parameters/) found")
        self._regions: dict[str, tuple[Path, Path]] = {}
        for h in houses:
            for ply in sorted((h / "region_segmentations").glob("region*.ply")):
                if re.fullmatch(r"region\d+", ply.stem):
                    self._regions[f"{h.name}_{ply.stem}"] = (h, ply)
        if not self._regions:
            raise BadInputError(f"{self.root}: no region_segmentations/regionN.ply files")

    def scene_ids(self) -> list[str]:
        return sorted(self._regions)

    def load(self, scene_id: str) -> Scene:
        if scene_id not in self._regions:
            raise UnknownSceneError(f"{self.root}: no Matterport region {scene_id!r} (have {len(self._regions)})")
        house, ply = self._regions[scene_id]
        mesh = read_mesh_ply(ply)
        verts, colors = mesh.vertices, mesh.colors
        if colors is None:
            colors = np.full((len(verts), 3), 128, np.uint8)
        inst, labels = region_instances(ply, len(verts), mesh.faces)
        conf = house / "undistorted_camera_parameters" / f"{house.name}.conf"
        if not conf.is_file():
            raise BadInputError(f"{conf}: camera parameter file missing")
        sample = verts[np.linspace(0, len(verts) - 1, min(_SAMPLE, len(verts))).astype(np.int64)]
        frames = []
        for fid, (dname, cname, k, pose) in enumerate(read_conf(conf)):
            dpath = house / "undistorted_depth_images" / dname
            cpath = house / "undistorted_color_images" / cname
            for p in (dpath, cpath):
                if not p.is_file():
                    raise BadInputError(f"{p}: image listed in {conf.name} is missing")
            if visible_share(sample, read_mp_depth(dpath), k, pose) >= MIN_VISIBLE:
                frames.append((fid, cpath, dpath, k, pose))
        frames = frames[:: self.options["frame_stride"]][: self.options["max_frames"]]
        if not frames:
            raise BadInputError(f"{ply}: no frame of {conf.name} sees this region")
        raycaster = attrs = None
        if inst is not None:
            try:
                from mllm3d.shared.raycast import MeshRaycaster

                raycaster = MeshRaycaster(verts, mesh.faces, None, inst, name=str(ply))
                attrs = {oid: (label, "") for oid, label in labels.items()}
            except ImportError:  # no 'mesh' extra: real depth still works, only instance maps are missing
                raycaster = None
        return Scene(scene_id=scene_id, points=verts, colors=colors, views=MatterportViews(frames, raycaster, attrs),
                     instance_ids=inst, instance_labels=labels, source="matterport")

    def queries(self) -> list[Query]:
        from mllm3d.shared.annotations import load_queries

        houses = sorted({h for h, _ in self._regions.values()})
        return [q for h in houses for f in sorted(h.glob("queries_*.json")) for q in load_queries(f)]
