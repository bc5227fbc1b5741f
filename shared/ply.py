"""PLY point-cloud I/O on ``plyfile``, with this project's validation and an atomic write.

``write_ply`` writes a binary little-endian point cloud: float32 x y z, optional uchar red green blue
and any extra per-vertex scalars (floats as float32, integers as int32, uint8/bool as uchar).
``read_ply`` returns the ``vertex`` element of binary (either endian) and ascii files by property
name, e.g. ScanNet's ``*_vh_clean_2.ply`` (x y z red green blue alpha, then a ``face`` element).

plyfile parses the header and the data; what this wrapper adds: one-line errors that name the file
(``BadInputError``), a size check before any allocation (a header announcing more items than the file
can hold is refused, so a corrupt count never allocates terabytes), and the atomic write (a temporary
sibling, fsync, ``os.replace``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import BinaryIO

import numpy as np
from plyfile import PlyData, PlyElement, PlyElementParseError, PlyHeaderParseError, PlyListProperty

from mllm3d.shared.atomic_file import atomic_write
from mllm3d.shared.errors import BadInputError

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
HEADER_LIMIT = 1 << 20  # bytes: a file whose first MiB holds no end_header is not a PLY we read
COMMENT = "written by mllm-for3d"


def _ply_type(arr: np.ndarray) -> str:
    """The numpy dtype a scalar field of ``arr``'s dtype is stored as."""
    if arr.dtype == np.uint8 or arr.dtype == np.bool_:
        return "u1"
    if np.issubdtype(arr.dtype, np.integer):
        if arr.size and (arr.min() < np.iinfo(np.int32).min or arr.max() > np.iinfo(np.int32).max):
            raise BadInputError(f"PLY scalar field has values outside the int32 range ({arr.min()}..{arr.max()})")
        return "<i4"
    if np.issubdtype(arr.dtype, np.floating):
        return "<f4"
    raise BadInputError(f"PLY scalar field of dtype {arr.dtype} is not supported (use int, float or bool)")


def _colors_u1(p: Path, colors: np.ndarray, n: int) -> np.ndarray:
    """(n,3) uint8 colours: floats in [0,1] scaled by 255, other floats clipped; integers outside 0..255 raise."""
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
    return col.astype(np.uint8)


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
    fields: list[tuple[str, str, np.ndarray]] = [(c, "<f4", pts[:, i]) for i, c in enumerate("xyz")]
    if colors is not None:
        col = _colors_u1(p, colors, n)
        fields += [(c, "u1", col[:, i]) for i, c in enumerate(("red", "green", "blue"))]
    for name, values in scalar_fields.items():
        arr = np.asarray(values)
        if not _NAME.match(name) or name in {f[0] for f in fields}:
            raise BadInputError(f"{p}: bad or duplicate PLY field name {name!r}")
        if arr.shape != (n,):
            raise BadInputError(f"{p}: field {name!r} must have shape ({n},), got {arr.shape}")
        try:
            fields.append((name, _ply_type(arr), arr))
        except BadInputError as exc:
            raise BadInputError(f"{p}: field {name!r}: {exc}") from None
    data = np.empty(n, dtype=[(f[0], f[1]) for f in fields])
    for name, _, values in fields:
        data[name] = values
    ply = PlyData([PlyElement.describe(data, "vertex")], byte_order="<", comments=[COMMENT])
    p.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(p, ply.write)
    return p


def _min_bytes(element: PlyElement, text: bool) -> int:
    """The fewest bytes ``element``'s data can take: fixed sizes (lists: their length field) in binary,
    one digit and one separator per value in ascii."""
    if text:
        return element.count * 2 * max(1, len(element.properties))
    per_item = 0
    for prop in element.properties:
        per_item += np.dtype(prop.len_dtype if isinstance(prop, PlyListProperty) else prop.val_dtype).itemsize
    return element.count * per_item


def _header(f: BinaryIO, p: Path) -> PlyData:
    """The header of an open PLY file, checked against the file's size before any data is read."""
    head = f.read(HEADER_LIMIT)
    f.seek(0)
    if not head.startswith(b"ply"):
        raise BadInputError(f"{p}: not a PLY file (first line is not 'ply')")
    if b"end_header" not in head:
        raise BadInputError(f"{p}: PLY header has no end_header (within its first {HEADER_LIMIT} bytes)")
    try:
        header = PlyData._parse_header(f)  # plyfile's header parser (no data read); pinned plyfile>=1.0,<2
    except PlyHeaderParseError as exc:
        if exc.line == 1:
            raise BadInputError(f"{p}: not a PLY file (first line is not 'ply')") from None
        raise BadInputError(f"{p}: malformed PLY header: {exc}") from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise BadInputError(f"{p}: malformed PLY header: {exc}") from None
    left = p.stat().st_size - f.tell()
    need = 0
    for element in header.elements:
        if element.count < 0:
            raise BadInputError(f"{p}: PLY header announces a negative count for element {element.name!r}")
        need += _min_bytes(element, header.text)
        if need > left:
            raise BadInputError(
                f"{p}: truncated or corrupt PLY: the header announces {element.count:,} {element.name} items "
                f"(at least {need:,} bytes of data) but only {left:,} bytes follow the header"
            )
    return header


def read_ply_data(path: str | os.PathLike[str], known_list_len: Mapping[str, Mapping[str, int]] | None = None,
                  what: str = "PLY file") -> PlyData:
    """Every element of a PLY file through plyfile, after the header's counts were checked against the
    file size. ``known_list_len`` (element -> list property -> fixed length) lets plyfile memory-map
    elements with lists (e.g. triangles); a file that does not match is read row by row instead."""
    p = Path(path)
    if not p.is_file():
        raise BadInputError(f"{p}: {what} not found")
    with open(p, "rb") as f:
        _header(f, p)
        f.seek(0)
        try:
            try:
                return PlyData.read(f, mmap="c", known_list_len=dict(known_list_len or {}))
            except PlyElementParseError as exc:
                if not known_list_len or exc.message != "unexpected list length":
                    raise
                f.seek(0)
                return PlyData.read(f, mmap=False)  # lists of other lengths: plyfile's row-by-row reader
        except PlyElementParseError as exc:
            if exc.message == "early end-of-file":
                name = exc.element.name if exc.element is not None else "?"
                count = exc.element.count if exc.element is not None else "?"
                raise BadInputError(f"{p}: truncated PLY: {count} {name} items announced, file ends early") from None
            raise BadInputError(f"{p}: malformed PLY data: {exc}") from None


def native(values: np.ndarray) -> np.ndarray:
    """A plain in-memory copy of a (possibly memory-mapped, possibly byte-swapped) plyfile column."""
    arr = np.asarray(values)
    return np.array(arr, dtype=arr.dtype.newbyteorder("="))


def read_ply(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """Per-vertex properties of a PLY file by name (e.g. x, y, z, red, green, blue, alpha, label)."""
    p = Path(path)
    data = read_ply_data(p, {"face": {"vertex_indices": 3, "vertex_index": 3}})
    if "vertex" not in data:
        raise BadInputError(f"{p}: PLY file has no vertex element")
    vertex = data["vertex"]
    if any(isinstance(prop, PlyListProperty) for prop in vertex.properties):
        raise BadInputError(f"{p}: list properties in the vertex element are not supported")
    return {prop.name: native(vertex[prop.name]) for prop in vertex.properties}


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
