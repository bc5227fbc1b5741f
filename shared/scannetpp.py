"""``scannetpp:PATH`` scenes in the ScanNet++ (v1/v2) release layout; DSLR depth is ray-cast from the mesh.

Per scene directory ``<scene_id>/``:
  ``scans/mesh_aligned_0.05.ply``  mesh (points = its vertices, colours = vertex colours)
  ``scans/segments.json``          ``segIndices`` per vertex
  ``scans/segments_anno.json``     ``segGroups`` [{objectId, label, segments}] -> instance ids (Instruct3D's object_id)
  ``dslr/colmap/cameras.txt`` + ``images.txt`` (COLMAP text; preferred) or ``dslr/nerfstudio/transforms*.json``
  images in ``dslr/resized_undistorted_images``, ``dslr/undistorted_images`` or ``dslr/resized_images``.
COLMAP stores world-to-camera (qw qx qy qz, t): camera-to-world is [R^T, -R^T t]. Nerfstudio stores an
OpenGL camera-to-world (y up, z back): its y and z axes are flipped to the ScanNet convention (y down, z
forward). Only PINHOLE/SIMPLE_PINHOLE/OPENCV-family parameters fx fy cx cy are used: distortion is ignored,
so use the undistorted images. Depth is rendered at most ``depth_width`` wide (intrinsics scaled).
Frame ids are the images' indices in name order; ``frame_stride`` / ``max_frames`` as for ScanNet.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
from PIL import Image

from mllm3d.shared.errors import BadInputError
from mllm3d.shared.geometry import check_intrinsic, pose_problem
from mllm3d.shared.mesh_ply import read_mesh_ply
from mllm3d.shared.mesh_source import DirectorySource, RenderedViews
from mllm3d.shared.raycast import MeshRaycaster
from mllm3d.shared.scannet import (
    check_frame_options,
    load_instances,
    read_color,
    refuse_options,
    scene_id_from_dir,
)
from mllm3d.shared.scene import Scene

IMAGE_DIRS = ("resized_undistorted_images", "undistorted_images", "resized_images", "images")
MESH = "scans/mesh_aligned_0.05.ply"
DEPTH_WIDTH = 640


def quat_to_matrix(qw: float, qx: float, qy: float, qz: float) -> np.ndarray:
    """3x3 rotation of a unit quaternion (Hamilton, w first, as COLMAP writes it)."""
    q = np.array([qw, qx, qy, qz], dtype=np.float64)
    w, x, y, z = q / np.linalg.norm(q)
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])


def _camera_k(model: str, params: list[float], where: str) -> np.ndarray:
    if model in ("SIMPLE_PINHOLE", "SIMPLE_RADIAL", "RADIAL", "SIMPLE_RADIAL_FISHEYE", "RADIAL_FISHEYE"):
        f, cx, cy = params[:3]
        fx = fy = f
    elif model in ("PINHOLE", "OPENCV", "OPENCV_FISHEYE", "FULL_OPENCV", "FOV", "THIN_PRISM_FISHEYE"):
        fx, fy, cx, cy = params[:4]
    else:
        raise BadInputError(f"{where}: unsupported COLMAP camera model {model!r}")
    # COLMAP's principal point is in pixel-corner coordinates; ours (as ScanNet's) in pixel centres
    return np.array([[fx, 0.0, cx - 0.5], [0.0, fy, cy - 0.5], [0.0, 0.0, 1.0]])


def read_colmap(colmap_dir: Path) -> list[tuple[str, np.ndarray, np.ndarray, tuple[int, int]]]:
    """(image name, camera-to-world 4x4, K, (H, W)) per image of COLMAP ``cameras.txt`` + ``images.txt``."""
    cams: dict[int, tuple[np.ndarray, tuple[int, int]]] = {}
    cfile, ifile = colmap_dir / "cameras.txt", colmap_dir / "images.txt"
    try:
        for line in cfile.read_text().splitlines():
            if line.strip() and not line.startswith("#"):
                w = line.split()
                cams[int(w[0])] = (_camera_k(w[1], [float(x) for x in w[4:]], str(cfile)), (int(w[3]), int(w[2])))
        lines = [ln for ln in ifile.read_text().splitlines() if not ln.startswith("#")]
    except (OSError, ValueError, IndexError) as exc:
        raise BadInputError(f"{cfile} / {ifile}: cannot read COLMAP cameras: {exc}") from None
    out = []
    for n in range(0, len(lines), 2):  # image line, then its 2D-points line
        w = lines[n].split()
        if not w:
            continue
        try:
            qw, qx, qy, qz, tx, ty, tz = (float(x) for x in w[1:8])
            cam, name = int(w[8]), w[9]
        except (ValueError, IndexError):
            raise BadInputError(f"{ifile}: malformed image line {lines[n][:80]!r}") from None
        if cam not in cams:
            raise BadInputError(f"{ifile}: image {name} uses camera {cam}, not in {cfile.name}")
        r = quat_to_matrix(qw, qx, qy, qz)
        pose = np.eye(4)
        pose[:3, :3], pose[:3, 3] = r.T, -r.T @ np.array([tx, ty, tz])
        out.append((name, pose, cams[cam][0], cams[cam][1]))
    return out


def read_nerfstudio(path: Path) -> list[tuple[str, np.ndarray, np.ndarray, tuple[int, int]]]:
    """The same tuples from a nerfstudio ``transforms*.json`` (OpenGL camera-to-world, flipped to y down z forward)."""
    try:
        data = json.loads(path.read_text())
        k = np.array([[data["fl_x"], 0, data["cx"] - 0.5], [0, data["fl_y"], data["cy"] - 0.5], [0, 0, 1]], float)
        size = (int(data["h"]), int(data["w"]))
        out = []
        for fr in data["frames"]:
            pose = np.asarray(fr["transform_matrix"], dtype=np.float64) @ np.diag([1.0, -1.0, -1.0, 1.0])
            out.append((Path(fr["file_path"]).name, pose, k, size))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise BadInputError(f"{path}: cannot read nerfstudio transforms: {exc}") from None
    return out


def _cameras(d: Path) -> list[tuple[str, np.ndarray, np.ndarray, tuple[int, int]]]:
    colmap = d / "dslr" / "colmap"
    if (colmap / "images.txt").is_file():
        return read_colmap(colmap)
    for name in ("transforms_undistorted.json", "transforms.json"):
        if (d / "dslr" / "nerfstudio" / name).is_file():
            return read_nerfstudio(d / "dslr" / "nerfstudio" / name)
    raise BadInputError(f"{d}: no dslr/colmap/images.txt or dslr/nerfstudio/transforms*.json (camera poses)")


def _image_dir(d: Path) -> Path:
    for name in IMAGE_DIRS:
        if (d / "dslr" / name).is_dir():
            return d / "dslr" / name
    raise BadInputError(f"{d}: no DSLR image folder (dslr/{' | '.join(IMAGE_DIRS)})")


def scaled_intrinsic(k: np.ndarray, scale: float) -> np.ndarray:
    """K of an image resized by ``scale`` (pixel-centre convention: c' = (c + 0.5) * s - 0.5)."""
    out = np.array(k, dtype=np.float64)
    out[0, 0], out[1, 1] = k[0, 0] * scale, k[1, 1] * scale
    out[0, 2], out[1, 2] = (k[0, 2] + 0.5) * scale - 0.5, (k[1, 2] + 0.5) * scale - 0.5
    return out


def load_scannetpp_scene(scene_dir: str | os.PathLike[str], frame_stride: int = 1, max_frames: int | None = None,
                         depth_width: int = DEPTH_WIDTH) -> Scene:
    """One ScanNet++ scene directory as a Scene (see the module docstring)."""
    d = Path(scene_dir)
    check_frame_options(d, frame_stride, max_frames)
    mesh = read_mesh_ply(d / MESH)
    verts, colors = mesh.vertices, mesh.colors
    if colors is None:
        colors = np.full((len(verts), 3), 128, np.uint8)
    segs, anno = d / "scans" / "segments.json", d / "scans" / "segments_anno.json"
    inst, labels = (load_instances(anno, segs, len(verts)) if segs.is_file() and anno.is_file() else (None, {}))
    images = _image_dir(d)
    cams = sorted(_cameras(d), key=lambda c: c[0])
    if not cams:
        raise BadInputError(f"{d}: the camera file lists no images")
    keep = list(range(len(cams)))[::frame_stride][: max_frames]
    paths, poses, color_ks = [], [], []
    for i in keep:
        name, pose, k, size = cams[i]
        p = images / name
        if not p.is_file():
            raise BadInputError(f"{p}: image listed in the camera file is missing")
        problem = pose_problem(pose)
        if problem is not None:
            raise BadInputError(f"{d}: image {name}: invalid pose: {problem}")
        with Image.open(p) as im:
            if (im.height, im.width) != size:
                raise BadInputError(f"{p}: image is {im.height}x{im.width}, the camera says {size[0]}x{size[1]}")
        paths.append(p)
        poses.append(pose)
        color_ks.append(check_intrinsic(k, f"{d} camera of {name}"))
    h, w = cams[keep[0]][3]
    if any(c[3] != (h, w) or not np.allclose(c[2], cams[keep[0]][2]) for c in (cams[i] for i in keep)):
        raise BadInputError(f"{d}: DSLR images of one scene must share one camera (size and intrinsics)")
    scale = min(1.0, depth_width / w)
    depth_size = (max(1, int(round(h * scale))), max(1, int(round(w * scale))))
    depth_k = scaled_intrinsic(color_ks[0], depth_size[1] / w)
    rc = MeshRaycaster(verts, mesh.faces, colors, inst, name=str(d / MESH))
    attrs = {oid: (label, "") for oid, label in labels.items()} if inst is not None else None
    views = RenderedViews(rc, depth_k, depth_size, poses, keep, attrs,
                          color_loader=lambda j: (read_color(paths[j]), color_ks[j]))
    return Scene(scene_id=scene_id_from_dir(d), points=verts, colors=colors, views=views, instance_ids=inst,
                 instance_labels=labels, source="scannetpp")


def is_scannetpp_dir(path: Path) -> bool:
    return (path / MESH).is_file()


class ScanNetPPSource(DirectorySource):
    """``scannetpp:PATH``: a ScanNet++ ``data/`` folder of scene dirs, or one scene dir (a SceneSource)."""

    name = "scannetpp"

    def __init__(self, root: str | os.PathLike[str], frame_stride: int = 1, max_frames: int | None = None,
                 depth_width: int = DEPTH_WIDTH, **unsupported: object) -> None:
        refuse_options("scannetpp", root, unsupported, "frame_stride, max_frames")
        super().__init__(root, is_scannetpp_dir, "ScanNet++")
        check_frame_options(self.root, frame_stride, max_frames)
        self.options = {"frame_stride": frame_stride, "max_frames": max_frames}
        self.depth_width = int(depth_width)

    def load(self, scene_id: str) -> Scene:
        return load_scannetpp_scene(self.scene_dir(scene_id), depth_width=self.depth_width, **self.options)
