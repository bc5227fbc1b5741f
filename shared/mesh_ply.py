"""Triangle-mesh PLY I/O: vertices (+ colours, scalars) and the ``face`` element's ``vertex_indices``.

``read_mesh_ply`` reads binary (either endian) and ascii files whose faces are all triangles (ScanNet
``*_vh_clean_2.ply``, ScanNet++ ``mesh_aligned_0.05.ply``, Matterport ``regionN.ply``); extra face
scalars (e.g. Matterport's ``segment_id``, ``category_id``) come back in ``face_fields``.
``write_mesh_ply`` writes a binary little-endian mesh.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from mllm3d.shared.errors import BadInputError
from mllm3d.shared.ply import _atomic_write, _parse_header


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


def _read_ascii(f, count: int, props: list[tuple], path: Path) -> list[list[float]]:
    rows = []
    for _ in range(count):
        line = f.readline()
        if not line:
            raise BadInputError(f"{path}: truncated ascii PLY")
        rows.append([float(x) for x in line.split()])
    return rows


def read_mesh_ply(path: str | os.PathLike[str]) -> TriMesh:
    """Vertices and triangles of a PLY mesh; non-triangle faces or a missing face element raise."""
    p = Path(path)
    if not p.is_file():
        raise BadInputError(f"{p}: mesh PLY file not found")
    vfields: dict[str, np.ndarray] = {}
    faces: np.ndarray | None = None
    ffields: dict[str, np.ndarray] = {}
    with open(p, "rb") as f:
        fmt, elements = _parse_header(f, p)
        endian = ">" if fmt == "binary_big_endian" else "<"
        for name, count, props in elements:
            lists = [pr for pr in props if len(pr) == 3]
            if name == "vertex" and lists:
                raise BadInputError(f"{p}: list properties in the vertex element are not supported")
            if name == "face" and [pr[0] for pr in lists] not in (["vertex_indices"], ["vertex_index"]):
                raise BadInputError(f"{p}: face element needs exactly one list property vertex_indices")
            if name not in ("vertex", "face"):
                if fmt != "ascii" and lists:
                    raise BadInputError(f"{p}: element {name!r} with list properties is not supported")
            if fmt == "ascii":
                rows = _read_ascii(f, count, props, p)
                if name == "vertex":
                    table = np.asarray(rows, dtype=np.float64).reshape(count, len(props))
                    vfields = {pr[0]: table[:, i].astype(pr[1]) for i, pr in enumerate(props)}
                elif name == "face":
                    if any(len(r) < 1 or int(r[0]) != 3 for r in rows):
                        raise BadInputError(f"{p}: only triangle faces are supported")
                    table = np.asarray(rows, dtype=np.float64).reshape(count, len(props) + 3)
                    faces = table[:, 1:4].astype(np.int64)
                    rest = [pr for pr in props if len(pr) == 2]
                    ffields = {pr[0]: table[:, 4 + i].astype(pr[1]) for i, pr in enumerate(rest)}
                continue
            dt = []
            for pr in props:
                if len(pr) == 3:
                    dt += [("_n", endian + pr[1]), ("_idx", endian + pr[2], (3,))]
                else:
                    dt.append((pr[0], endian + pr[1]))
            dtype = np.dtype(dt)
            buf = f.read(dtype.itemsize * count)
            if len(buf) != dtype.itemsize * count:
                raise BadInputError(f"{p}: truncated PLY: {count} {name} items announced, file ends early "
                                    "(or faces are not all triangles)")
            data = np.frombuffer(buf, dtype=dtype, count=count)
            if name == "vertex":
                vfields = {pr[0]: data[pr[0]].astype(np.dtype(pr[1])) for pr in props}
            elif name == "face":
                if count and not np.all(data["_n"] == 3):
                    raise BadInputError(f"{p}: only triangle faces are supported")
                faces = data["_idx"].astype(np.int64)
                ffields = {pr[0]: data[pr[0]].astype(np.dtype(pr[1])) for pr in props if len(pr) == 2}
    if not vfields or any(c not in vfields for c in "xyz"):
        raise BadInputError(f"{p}: mesh PLY has no vertex x/y/z")
    if faces is None:
        raise BadInputError(f"{p}: PLY file has no face element (a mesh is needed, not a point cloud)")
    nv = len(vfields["x"])
    if faces.size and (faces.min() < 0 or faces.max() >= nv):
        raise BadInputError(f"{p}: face vertex index out of range 0..{nv - 1}")
    return TriMesh(vfields, faces, ffields)


def write_mesh_ply(
    path: str | os.PathLike[str], vertices: np.ndarray, faces: np.ndarray, colors: np.ndarray | None = None,
    **face_scalars: np.ndarray,
) -> Path:
    """Write a binary little-endian triangle mesh (float32 xyz, optional uchar rgb, int32 face scalars)."""
    p = Path(path)
    v = np.asarray(vertices, dtype=np.float32)
    fc = np.asarray(faces, dtype=np.int32)
    if v.ndim != 2 or v.shape[1] != 3 or fc.ndim != 2 or fc.shape[1] != 3:
        raise BadInputError(f"{p}: vertices must be (N,3) and faces (F,3)")
    vdt = [("x", "<f4"), ("y", "<f4"), ("z", "<f4")]
    header = ["ply", "format binary_little_endian 1.0", "comment written by mllm-for3d", f"element vertex {len(v)}",
              "property float x", "property float y", "property float z"]
    if colors is not None:
        vdt += [("red", "u1"), ("green", "u1"), ("blue", "u1")]
        header += ["property uchar red", "property uchar green", "property uchar blue"]
    vdata = np.empty(len(v), dtype=vdt)
    vdata["x"], vdata["y"], vdata["z"] = v[:, 0], v[:, 1], v[:, 2]
    if colors is not None:
        col = np.asarray(colors).astype(np.uint8)
        vdata["red"], vdata["green"], vdata["blue"] = col[:, 0], col[:, 1], col[:, 2]
    header += [f"element face {len(fc)}", "property list uchar int vertex_indices"]
    fdt = [("n", "u1"), ("idx", "<i4", (3,))] + [(k, "<i4") for k in face_scalars]
    header += [f"property int {k}" for k in face_scalars]
    fdata = np.empty(len(fc), dtype=fdt)
    fdata["n"], fdata["idx"] = 3, fc
    for k, arr in face_scalars.items():
        fdata[k] = np.asarray(arr, dtype=np.int32)
    header.append("end_header")
    p.parent.mkdir(parents=True, exist_ok=True)
    _atomic_write(p, ("\n".join(header) + "\n").encode("ascii"), vdata.tobytes(), fdata.tobytes())
    return p
