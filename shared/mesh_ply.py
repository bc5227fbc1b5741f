"""Triangle-mesh PLY I/O: vertices (+ colours, scalars) and the ``face`` element's ``vertex_indices``.

``read_mesh_ply`` reads binary (either endian) and ascii files whose faces are all triangles (ScanNet
``*_vh_clean_2.ply``, ScanNet++ ``mesh_aligned_0.05.ply``, Matterport ``regionN.ply``); extra face
scalars (e.g. Matterport's ``segment_id``, ``category_id``) come back in ``face_fields``.
``write_mesh_ply`` writes a binary little-endian mesh, atomically. Parsing and the header are plyfile's
(through :mod:`mllm3d.shared.ply`, which checks the announced counts against the file size first);
binary triangles are memory-mapped as fixed-length lists.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np
from plyfile import PlyData, PlyElement, PlyListProperty

from mllm3d.shared.atomic_file import atomic_write
from mllm3d.shared.errors import BadInputError
from mllm3d.shared.ply import COMMENT, native, read_ply_data

FACE_LISTS = ("vertex_indices", "vertex_index")  # the name of the face element's index list, either spelling


@dataclass
class TriMesh:
    """A triangle mesh read from a PLY file."""

    vertex_fields: dict[str, np.ndarray]  # per-vertex properties by name (x, y, z, red, ...)
    faces: np.ndarray  # (F, 3) int64 vertex indices
    face_fields: dict[str, np.ndarray] = field(default_factory=dict)  # per-face scalars by name

    @property
    def vertices(self) -> np.ndarray:
        return np.stack([self.vertex_fields[c] for c in "xyz"], axis=1).astype(np.float32)

    @property
    def colors(self) -> np.ndarray | None:
        if all(c in self.vertex_fields for c in ("red", "green", "blue")):
            col = np.stack([self.vertex_fields[c] for c in ("red", "green", "blue")], axis=1)
            return np.clip(col, 0, 255).astype(np.uint8)
        return None


def _triangles(p: Path, face: PlyElement, name: str) -> np.ndarray:
    """(F,3) int64 from the face element's index list (fixed-length when memory-mapped, objects otherwise)."""
    col = face[name]
    if face.count == 0:
        return np.zeros((0, 3), np.int64)
    if col.dtype != object and col.ndim == 2 and col.shape[1] == 3:
        return np.array(col, dtype=np.int64)
    if any(len(f) != 3 for f in col):
        raise BadInputError(f"{p}: only triangle faces are supported")
    return np.stack([np.asarray(f, dtype=np.int64) for f in col])


def read_mesh_ply(path: str | os.PathLike[str]) -> TriMesh:
    """Vertices and triangles of a PLY mesh; non-triangle faces or a missing face element raise."""
    p = Path(path)
    data = read_ply_data(p, {"face": dict.fromkeys(FACE_LISTS, 3)}, what="mesh PLY file")
    names = [e.name for e in data.elements]
    if "vertex" not in names or any(c not in [pr.name for pr in data["vertex"].properties] for c in "xyz"):
        raise BadInputError(f"{p}: mesh PLY has no vertex x/y/z")
    vertex = data["vertex"]
    if any(isinstance(pr, PlyListProperty) for pr in vertex.properties):
        raise BadInputError(f"{p}: list properties in the vertex element are not supported")
    if "face" not in names:
        raise BadInputError(f"{p}: PLY file has no face element (a mesh is needed, not a point cloud)")
    face = data["face"]
    lists = [pr.name for pr in face.properties if isinstance(pr, PlyListProperty)]
    if len(lists) != 1 or lists[0] not in FACE_LISTS:
        raise BadInputError(f"{p}: face element needs exactly one list property vertex_indices")
    faces = _triangles(p, face, lists[0])
    vfields = {pr.name: native(vertex[pr.name]) for pr in vertex.properties}
    ffields = {pr.name: native(face[pr.name]) for pr in face.properties if not isinstance(pr, PlyListProperty)}
    nv = vertex.count
    if faces.size and (faces.min() < 0 or faces.max() >= nv):
        raise BadInputError(f"{p}: face vertex index out of range 0..{nv - 1}")
    return TriMesh(vfields, faces, ffields)


def write_mesh_ply(
    path: str | os.PathLike[str], vertices: np.ndarray, faces: np.ndarray, colors: np.ndarray | None = None,
    **face_scalars: np.ndarray,
) -> Path:
    """Write a binary little-endian triangle mesh (float32 xyz, optional uchar rgb, int32 face scalars).

    plyfile writes the header; the triangles are packed by numpy (uchar count 3, three int32 indices),
    since plyfile writes list properties row by row in Python (about 1.4 s per 300k faces)."""
    p = Path(path)
    v = np.asarray(vertices, dtype=np.float32)
    fc = np.asarray(faces, dtype=np.int32)
    if v.ndim != 2 or v.shape[1] != 3 or fc.ndim != 2 or fc.shape[1] != 3:
        raise BadInputError(f"{p}: vertices must be (N,3) and faces (F,3)")
    vdt = [("x", "<f4"), ("y", "<f4"), ("z", "<f4")]
    if colors is not None:
        vdt += [("red", "u1"), ("green", "u1"), ("blue", "u1")]
    vdata = np.empty(len(v), dtype=vdt)
    vdata["x"], vdata["y"], vdata["z"] = v[:, 0], v[:, 1], v[:, 2]
    if colors is not None:
        col = np.asarray(colors).astype(np.uint8)
        vdata["red"], vdata["green"], vdata["blue"] = col[:, 0], col[:, 1], col[:, 2]
    fdt = [("vertex_indices", "<i4", (3,))] + [(k, "<i4") for k in face_scalars]
    fdata = np.empty(len(fc), dtype=fdt)
    fdata["vertex_indices"] = fc
    for k, arr in face_scalars.items():
        fdata[k] = np.asarray(arr, dtype=np.int32)
    ply = PlyData([PlyElement.describe(vdata, "vertex"), PlyElement.describe(fdata, "face")], byte_order="<",
                  comments=[COMMENT])
    packed = np.empty(len(fc), dtype=[("n", "u1"), ("idx", "<i4", (3,))] + [(k, "<i4") for k in face_scalars])
    packed["n"], packed["idx"] = 3, fc
    for k in face_scalars:
        packed[k] = fdata[k]

    def write(f: BinaryIO) -> None:
        f.write(ply.header.encode("ascii") + b"\n")
        f.write(vdata.tobytes())
        f.write(packed.tobytes())

    p.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(p, write)
    return p
