"""Minimal PLY point-cloud I/O: binary little-endian writer, binary/ascii vertex reader.

``write_ply`` writes float32 x y z, optional uchar red green blue and any extra per-vertex scalars
(floats as float32, integers as int32, uint8/bool as uchar). ``read_ply`` reads the ``vertex``
element of binary (little or big endian) and ascii files, e.g. ScanNet's ``*_vh_clean_2.ply``
(x y z red green blue alpha, then a ``face`` element that is skipped).
"""

from __future__ import annotations

import os
import re
import uuid
from pathlib import Path

import numpy as np
from mllm3d.shared.errors import BadInputError

PLY_TYPES: dict[str, str] = {
    "char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1",
    "short": "i2", "int16": "i2", "ushort": "u2", "uint16": "u2",
    "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
    "float": "f4", "float32": "f4", "double": "f8", "float64": "f8",
}
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _ply_type(arr: np.ndarray) -> tuple[str, str]:
    """(PLY type name, numpy dtype) used to store a scalar field of ``arr``'s dtype."""
    if arr.dtype == np.uint8 or arr.dtype == np.bool_:
        return "uchar", "u1"
    if np.issubdtype(arr.dtype, np.integer):
        if arr.size and (arr.min() < np.iinfo(np.int32).min or arr.max() > np.iinfo(np.int32).max):
            raise BadInputError(f"PLY scalar field has values outside the int32 range ({arr.min()}..{arr.max()})")
        return "int", "<i4"
    if np.issubdtype(arr.dtype, np.floating):
        return "float", "<f4"
    raise BadInputError(f"PLY scalar field of dtype {arr.dtype} is not supported (use int, float or bool)")


def write_ply(
    path: str | os.PathLike[str],
    points: np.ndarray,
    colors: np.ndarray | None = None,
    **scalar_fields: np.ndarray,
) -> Path:
    """Write a binary little-endian PLY point cloud; returns the path written.

    ``points`` (N,3), ``colors`` (N,3) uint8 (floats in [0,1] are scaled by 255, other floats clipped
    to 0..255; integers outside 0..255 are an error naming the column, never wrapped), and per-vertex
    scalars given by keyword, e.g. ``score=float32 (N,)``, ``label=int32 (N,)``.

    The write is atomic: a temporary file in the same directory, fsync'ed, then ``os.replace``d onto
    ``path``, so a crash never leaves a truncated PLY under the final name.
    """
    p = Path(path)
    pts = np.asarray(points)
    if pts.ndim != 2 or pts.shape[1] != 3:
        raise BadInputError(f"{p}: points must be (N,3), got shape {pts.shape}")
    n = pts.shape[0]
    fields: list[tuple[str, str, str, np.ndarray]] = [
        (c, "float", "<f4", pts[:, i]) for i, c in enumerate("xyz")
    ]
    if colors is not None:
        col = np.asarray(colors)
        if col.shape != (n, 3):
            raise BadInputError(f"{p}: colors must be ({n},3) like the points, got shape {col.shape}")
        if np.issubdtype(col.dtype, np.floating):
            col = np.clip(np.rint(col * 255.0 if col.max(initial=0.0) <= 1.0 else col), 0, 255)
        elif np.issubdtype(col.dtype, np.integer) and col.dtype != np.uint8 and n:
            for i, c in enumerate(("red", "green", "blue")):
                lo, hi = int(col[:, i].min()), int(col[:, i].max())
                if lo < 0 or hi > 255:
                    raise BadInputError(
                        f"{p}: colour column {c!r} has integer values {lo}..{hi} outside 0..255 "
                        f"(dtype {col.dtype}; they would wrap in uchar)"
                    )
        col = col.astype(np.uint8)
        fields += [(c, "uchar", "u1", col[:, i]) for i, c in enumerate(("red", "green", "blue"))]
    for name, values in scalar_fields.items():
        arr = np.asarray(values)
        if not _NAME.match(name) or name in {f[0] for f in fields}:
            raise BadInputError(f"{p}: bad or duplicate PLY field name {name!r}")
        if arr.shape != (n,):
            raise BadInputError(f"{p}: field {name!r} must have shape ({n},), got {arr.shape}")
        try:
            ptype, dtype = _ply_type(arr)
        except BadInputError as exc:
            raise BadInputError(f"{p}: field {name!r}: {exc}") from None
        fields.append((name, ptype, dtype, arr))
    data = np.empty(n, dtype=[(f[0], f[2]) for f in fields])
    for name, _, _, values in fields:
        data[name] = values
    header = ["ply", "format binary_little_endian 1.0", "comment written by mllm-for3d", f"element vertex {n}"]
    header += [f"property {ptype} {name}" for name, ptype, _, _ in fields]
    header.append("end_header")
    p.parent.mkdir(parents=True, exist_ok=True)
    _atomic_write(p, ("\n".join(header) + "\n").encode("ascii"), data.tobytes())
    return p


def _atomic_write(path: Path, *chunks: bytes) -> None:
    """Write ``chunks`` to a temporary sibling of ``path``, fsync it, then rename it onto ``path``."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # mode as open() would give
    try:
        with os.fdopen(fd, "wb") as f:
            for chunk in chunks:
                f.write(chunk)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    try:  # make the rename itself durable (best effort: not every platform can open a directory)
        dfd = os.open(path.parent, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dfd)
    except OSError:
        pass
    finally:
        os.close(dfd)


def _parse_header(f, path: Path) -> tuple[str, list[tuple[str, int, list[tuple]]]]:
    """(format, elements) where each element is (name, count, [(prop name, dtype) | (name, count dtype, item dtype)])."""
    if f.readline().strip() != b"ply":
        raise BadInputError(f"{path}: not a PLY file (first line is not 'ply')")
    fmt = ""
    elements: list[tuple[str, int, list[tuple]]] = []
    for _ in range(10_000):
        raw = f.readline()
        if not raw:
            raise BadInputError(f"{path}: PLY header has no end_header")
        words = raw.decode("ascii", errors="replace").split()
        if not words or words[0] in ("comment", "obj_info"):
            continue
        try:
            if words[0] == "format":
                fmt = words[1]
            elif words[0] == "element":
                elements.append((words[1], int(words[2]), []))
            elif words[0] == "property":
                if not elements:
                    raise BadInputError(f"{path}: PLY property before any element")
                if words[1] == "list":
                    elements[-1][2].append((words[4], PLY_TYPES[words[2]], PLY_TYPES[words[3]]))
                else:
                    elements[-1][2].append((words[2], PLY_TYPES[words[1]]))
            elif words[0] == "end_header":
                break
        except (IndexError, KeyError, ValueError):
            raise BadInputError(f"{path}: malformed PLY header line {raw.decode(errors='replace').strip()!r}") from None
    else:
        raise BadInputError(f"{path}: PLY header too long")
    if fmt not in ("binary_little_endian", "binary_big_endian", "ascii"):
        raise BadInputError(f"{path}: unsupported PLY format {fmt!r}")
    return fmt, elements


def read_ply(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """Per-vertex properties of a PLY file by name (e.g. x, y, z, red, green, blue, alpha, label)."""
    p = Path(path)
    if not p.is_file():
        raise BadInputError(f"{p}: PLY file not found")
    with open(p, "rb") as f:
        fmt, elements = _parse_header(f, p)
        if not any(e[0] == "vertex" for e in elements):
            raise BadInputError(f"{p}: PLY file has no vertex element")
        endian = ">" if fmt == "binary_big_endian" else "<"
        for name, count, props in elements:
            has_list = any(len(pr) == 3 for pr in props)
            if name != "vertex":
                _skip_element(f, fmt, endian, count, props, p)
                continue
            if has_list:
                raise BadInputError(f"{p}: list properties in the vertex element are not supported")
            if fmt == "ascii":
                rows = [f.readline() for _ in range(count)]
                try:
                    table = np.loadtxt(rows, dtype=np.float64, ndmin=2) if count else np.zeros((0, len(props)))
                except ValueError as exc:
                    raise BadInputError(f"{p}: malformed ascii vertex data: {exc}") from None
                if table.shape != (count, len(props)):
                    raise BadInputError(f"{p}: expected {count} vertices x {len(props)} values, got {table.shape}")
                return {pn: table[:, i].astype(dt) for i, (pn, dt) in enumerate(props)}
            dtype = np.dtype([(pn, endian + dt) for pn, dt in props])
            buf = f.read(dtype.itemsize * count)
            if len(buf) != dtype.itemsize * count:
                raise BadInputError(f"{p}: truncated PLY: {count} vertices announced, file ends early")
            data = np.frombuffer(buf, dtype=dtype, count=count)
            return {pn: data[pn].astype(np.dtype(dt).newbyteorder("=")) for pn, dt in props}
    raise BadInputError(f"{p}: PLY file has no vertex element")  # pragma: no cover


def _skip_element(f, fmt: str, endian: str, count: int, props: list[tuple], path: Path) -> None:
    """Read past an element that precedes the vertex element."""
    if fmt == "ascii":
        for _ in range(count):
            f.readline()
        return
    if all(len(pr) == 2 for pr in props):
        f.seek(count * sum(np.dtype(pr[1]).itemsize for pr in props), os.SEEK_CUR)
        return
    for _ in range(count):  # list properties: sizes vary per item
        for pr in props:
            if len(pr) == 2:
                f.seek(np.dtype(pr[1]).itemsize, os.SEEK_CUR)
            else:
                cdt = np.dtype(endian + pr[1])
                n = int(np.frombuffer(f.read(cdt.itemsize), dtype=cdt)[0])
                f.seek(n * np.dtype(pr[2]).itemsize, os.SEEK_CUR)


def ply_points_colors(
    data: dict[str, np.ndarray], path: str | os.PathLike[str] | None = None
) -> tuple[np.ndarray, np.ndarray | None]:
    """(points (N,3) float32, colors (N,3) uint8 or None) from ``read_ply``'s result.

    Raises BadInputError (naming ``path`` when given) if a vertex coordinate is NaN or infinite.
    """
    where = f"{path}: " if path is not None else ""
    missing = [c for c in "xyz" if c not in data]
    if missing:
        raise BadInputError(f"{where}PLY vertex element lacks {missing}")
    pts = np.stack([data["x"], data["y"], data["z"]], axis=1).astype(np.float32)
    bad = np.flatnonzero(~np.all(np.isfinite(pts), axis=1))
    if bad.size:
        raise BadInputError(
            f"{where}{bad.size} of {len(pts)} vertices have non-finite coordinates (NaN or inf; first: vertex "
            f"{int(bad[0])}); fix or re-export the mesh"
        )
    if all(c in data for c in ("red", "green", "blue")):
        col = np.stack([data["red"], data["green"], data["blue"]], axis=1)
        return pts, np.clip(col, 0, 255).astype(np.uint8)
    return pts, None
