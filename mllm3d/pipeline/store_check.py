"""Integrity check of a pseudo-label store (``mllm3d inspect --check``): every group, array and chunk file.

Read-only: groups are opened with ``mode="r"`` and files are only read; each finding is a :class:`Problem`.
"""

from __future__ import annotations

import itertools
import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from mllm3d.pipeline.store_layout import unexpected_entries
from mllm3d.shared.errors import StoreError
from mllm3d.shared.store import ALL_CHUNKS_ATTR, STORE_FORMAT, TMP_PREFIX, key_matches, open_store, safe_key
from mllm3d.shared.store_io import unpack_masks
from mllm3d.shared.store_query_layout import (
    COLUMNS_ATTR,
    VIEW_COLUMNS,
    VIEWS,
    consolidated_members,
    split_views,
)
from mllm3d.shared.zarr_direct import read_array

Progress = Callable[[int, int], None]  # (done, total)


@dataclass
class Problem:
    """One finding of :func:`check_store`: ``error`` fails the check, ``warning`` does not."""

    where: str  # the group or array path
    message: str
    severity: str = "error"


@dataclass
class ArraySpec:
    """What one array of a group must look like; ``shape`` entries None = any, str = a named size."""

    name: str
    dtype: str
    shape: tuple[int | str | None, ...]
    required: bool = True
    finite: bool = False


SCENE_ARRAYS = [
    ArraySpec("points", "float32", ("N", 3), finite=True),
    ArraySpec("colors", "uint8", ("N", 3)),
    ArraySpec("instance_ids", "int32", ("N",), required=False),
    ArraySpec("frame_ids", "int32", ("V",)),
    ArraySpec("intrinsics", "float32", ("V", 3, 3), finite=True),
    ArraySpec("poses", "float64", ("V", 4, 4), finite=True),
    ArraySpec("thumbnails", "uint8", ("V", None, None, 3), required=False),
    ArraySpec("correspondences/point_idx", "int32", ("M",)),
    ArraySpec("correspondences/rows", "int16", ("M",)),
    ArraySpec("correspondences/cols", "int16", ("M",)),
    ArraySpec("correspondences/offsets", "int64", ("V+1",)),
]

QUERY_ARRAYS = [  # schema 3: the per-view fields in one table (view_index, confidence, attention, has_seg)
    ArraySpec(VIEWS, "float32", ("k", len(VIEW_COLUMNS)), finite=True),
    ArraySpec("masks", "uint8|bool", ("k", "H", None)),  # bit-packed (schema 2 and later) or bool (schema 1)
    ArraySpec("seg_embeddings", "float16", ("k", None), finite=True),
    ArraySpec("attention_maps", "float16", ("k", None, None), required=False, finite=True),
    ArraySpec("image_features", "float16", ("k", None, None, None), required=False, finite=True),
]

SEPARATE_QUERY_ARRAYS = [  # schemas 1 and 2: one array per per-view field
    ArraySpec("view_index", "int32", ("k",)),
    *QUERY_ARRAYS[1:3],
    ArraySpec("confidence", "float32", ("k",), finite=True),
    ArraySpec("attention", "float32", ("k",), finite=True),
    ArraySpec("has_seg", "bool", ("k",)),
    *QUERY_ARRAYS[3:],
]


def _query_array_names(query_dir: Path) -> list[str]:
    return [a.name for a in query_specs(query_dir)]


def query_specs(query_dir: Path) -> list[ArraySpec]:
    """The arrays a query group must hold: schema 3's views table, or (a group without it that has a
    ``view_index`` array) the separate arrays of schemas 1 and 2."""
    if not (query_dir / VIEWS / "zarr.json").is_file() and (query_dir / "view_index" / "zarr.json").is_file():
        return SEPARATE_QUERY_ARRAYS
    return QUERY_ARRAYS


INCOMPLETE_MESSAGE = (
    "group has no complete=True marker (invisible to Stage 2; the next Stage 1 run rewrites it)"
)


def _read_attrs(group_dir: Path) -> dict[str, Any]:
    with open(group_dir / "zarr.json", encoding="utf-8") as f:
        meta = json.load(f)
    if meta.get("node_type") != "group":
        raise ValueError(f"node_type is {meta.get('node_type')!r}, expected 'group'")
    return dict(meta.get("attributes") or {})


def missing_chunks(arr: Any, array_dir: Path) -> list[str]:
    """Keys (``c/0/1``…) of the chunks in ``arr``'s chunk grid that have no file under ``array_dir``.

    zarr reads a missing chunk back as the fill value without any error, so this is the only way to
    notice a lost chunk file (the writer stores every chunk, see ``mllm3d.shared.store.ALL_CHUNKS_ATTR``).
    """
    encoding = arr.metadata.chunk_key_encoding
    grid = tuple(int(n) for n in arr.cdata_shape)
    return [
        key
        for idx in itertools.product(*(range(n) for n in grid))
        if not (array_dir / (key := encoding.encode_chunk_key(idx))).is_file()
    ]


def _report_missing_chunks(
    where: str, arr: Any, array_dir: Path, all_chunks: bool, problems: list[Problem]
) -> None:
    missing = missing_chunks(arr, array_dir)
    if not missing:
        return
    total = math.prod(int(n) for n in arr.cdata_shape)
    shown = ", ".join(missing[:5]) + (", ..." if len(missing) > 5 else "")
    if all_chunks:
        problems.append(
            Problem(where, f"{len(missing)} of {total} chunk files missing ({shown}): lost, they read back as fill value")
        )
    else:
        problems.append(
            Problem(
                where,
                f"{len(missing)} of {total} chunk files missing ({shown}); the group predates "
                f"{ALL_CHUNKS_ATTR!r}, so they may be empty chunks zarr skipped or lost ones",
                "warning",
            )
        )


def _check_arrays(
    group_dir: Path,
    specs: list[ArraySpec],
    sizes: dict[str, int],
    problems: list[Problem],
    all_chunks: bool = True,
) -> dict[str, np.ndarray]:
    """Open and fully decode each array; check that every chunk file of the chunk grid exists (an
    error if ``all_chunks``: the writer stored every chunk; else a warning), dtype, shape against
    ``sizes`` (learning unknown sizes from the first array that has them) and finiteness. Returns the
    arrays that decoded."""
    out: dict[str, np.ndarray] = {}
    for spec in specs:
        where = str(group_dir / spec.name)
        if not (group_dir / spec.name / "zarr.json").is_file():
            if spec.required:
                problems.append(Problem(where, "array missing"))
            continue
        try:
            arr = zarr.open_array(str(group_dir / spec.name), mode="r")
            # the store's own layout first: it names the chunk whose checksum or compression is broken
            direct = read_array(group_dir / spec.name)
            data = direct if direct is not None else np.asarray(arr[...])  # decodes every chunk
        except StoreError as exc:
            problems.append(Problem(where, str(exc)))
            continue
        except Exception as exc:  # noqa: BLE001 - any decode failure is a finding, not a crash
            problems.append(Problem(where, f"cannot read/decode: {type(exc).__name__}: {exc}"))
            continue
        _report_missing_chunks(where, arr, group_dir / spec.name, all_chunks, problems)
        if str(data.dtype) not in spec.dtype.split("|"):
            problems.append(Problem(where, f"dtype {data.dtype}, expected {spec.dtype}"))
        if data.ndim != len(spec.shape):
            problems.append(Problem(where, f"shape {data.shape}, expected {len(spec.shape)} dimensions"))
        else:
            for dim, want in zip(data.shape, spec.shape, strict=True):
                if want is None:
                    continue
                if isinstance(want, int):
                    expected: int | None = want
                elif want == "V+1":
                    expected = sizes["V"] + 1 if "V" in sizes else None
                else:
                    expected = sizes.setdefault(want, int(dim))
                if expected is not None and dim != expected:
                    problems.append(Problem(where, f"shape {data.shape} does not match {spec.shape} with {sizes}"))
                    break
        if spec.finite and data.dtype.kind == "f" and not np.all(np.isfinite(data)):
            problems.append(Problem(where, f"{int(np.count_nonzero(~np.isfinite(data)))} non-finite values"))
        out[spec.name] = data
    return out


def _check_scene(scene_dir: Path, problems: list[Problem]) -> dict[str, Any] | None:
    """Check one scene group; returns its attrs (with the sizes queries must match) or None."""
    where = str(scene_dir)
    try:
        attrs = _read_attrs(scene_dir)
    except (OSError, ValueError) as exc:
        problems.append(Problem(where, f"unreadable group metadata: {exc}"))
        return None
    if attrs.get("complete") is not True:
        problems.append(Problem(where, INCOMPLETE_MESSAGE))
    for key in ("scene_id", "num_points", "num_views", "image_size"):
        if key not in attrs:
            problems.append(Problem(where, f"attribute {key!r} missing"))
    sizes: dict[str, int] = {}
    if isinstance(attrs.get("num_points"), int):
        sizes["N"] = attrs["num_points"]
    if isinstance(attrs.get("num_views"), int):
        sizes["V"] = attrs["num_views"]
    arrays = _check_arrays(scene_dir, SCENE_ARRAYS, sizes, problems, attrs.get(ALL_CHUNKS_ATTR) is True)
    corr_dir = scene_dir / "correspondences"
    if corr_dir.is_dir():  # readers open the arrays through this sub-group
        try:
            _read_attrs(corr_dir)
        except (OSError, ValueError) as exc:
            problems.append(Problem(str(corr_dir), f"unreadable group metadata: {exc}"))
    offsets = arrays.get("correspondences/offsets")
    pidx = arrays.get("correspondences/point_idx")
    if offsets is not None and pidx is not None:
        if offsets.size and (offsets[0] != 0 or np.any(np.diff(offsets) < 0) or offsets[-1] != pidx.shape[0]):
            problems.append(Problem(f"{where}/correspondences", "offsets are not 0..M non-decreasing"))
        if pidx.size and "N" in sizes and (pidx.min() < 0 or pidx.max() >= sizes["N"]):
            problems.append(Problem(f"{where}/correspondences", f"point_idx outside 0..{sizes['N'] - 1}"))
    size = attrs.get("image_size")
    if isinstance(size, list) and len(size) == 2:
        for name, lim in (("rows", size[0]), ("cols", size[1])):
            a = arrays.get(f"correspondences/{name}")
            if a is not None and a.size and (a.min() < 0 or a.max() >= lim):
                problems.append(Problem(f"{where}/correspondences/{name}", f"values outside 0..{lim - 1}"))
        attrs["_sizes"] = {"V": sizes.get("V"), "H": int(size[0]), "W": int(size[1])}
    return attrs


def _check_query(query_dir: Path, scene_attrs: dict[str, Any], problems: list[Problem]) -> None:
    where = str(query_dir)
    try:
        attrs = _read_attrs(query_dir)
    except (OSError, ValueError) as exc:
        problems.append(Problem(where, f"unreadable group metadata: {exc}"))
        return
    if attrs.get("complete") is not True:
        problems.append(Problem(where, INCOMPLETE_MESSAGE))
    for key in ("scene_id", "query_id", "text"):
        if key not in attrs:
            problems.append(Problem(where, f"attribute {key!r} missing"))
    if "scene_id" in attrs and "scene_id" in scene_attrs and attrs["scene_id"] != scene_attrs["scene_id"]:
        problems.append(Problem(where, f"scene_id {attrs['scene_id']!r} but it sits in scene {scene_attrs['scene_id']!r}"))
    ssz = scene_attrs.get("_sizes") or {}
    sizes = {k: v for k, v in (("H", ssz.get("H")), ("W", ssz.get("W"))) if v is not None}
    arrays = _check_arrays(query_dir, query_specs(query_dir), sizes, problems, attrs.get(ALL_CHUNKS_ATTR) is True)
    _check_consolidated(query_dir, problems)
    if "masks" in arrays:
        _check_masks(query_dir / "masks", arrays["masks"], ssz.get("W"), problems)
    vi = arrays.get("view_index")
    if VIEWS in arrays:
        vi = _view_index_of_table(query_dir / VIEWS, arrays[VIEWS], problems)
    nv = ssz.get("V")
    if vi is not None and vi.size and nv is not None and (vi.min() < 0 or vi.max() >= nv):
        problems.append(Problem(f"{where}/view_index", f"values outside 0..{nv - 1}"))


def _view_index_of_table(array_dir: Path, table: np.ndarray, problems: list[Problem]) -> np.ndarray | None:
    """The view_index column of a views table, after the checks the reader makes (columns, integral indices,
    has_seg 0/1); None with a problem if they fail."""
    try:
        attrs = dict(json.loads((array_dir / "zarr.json").read_text(encoding="utf-8")).get("attributes") or {})
        return split_views(table, attrs.get(COLUMNS_ATTR), array_dir)["view_index"]
    except (OSError, ValueError, StoreError) as exc:
        problems.append(Problem(str(array_dir), str(exc)))
        return None


def _check_consolidated(group_dir: Path, problems: list[Problem]) -> None:
    """The group's consolidated metadata (what ``read_query`` trusts instead of each array's zarr.json) must list
    exactly the group's arrays, each with the same metadata as its own zarr.json."""
    try:
        members = consolidated_members(json.loads((group_dir / "zarr.json").read_text(encoding="utf-8")))
    except (OSError, ValueError):  # an unreadable group zarr.json is reported by the caller
        return
    if members is None:
        return
    on_disk = {p.name for p in group_dir.iterdir() if (p / "zarr.json").is_file()}
    for name in sorted(set(members) | on_disk):
        where = str(group_dir / name)
        if name not in on_disk:
            problems.append(Problem(where, "listed in the group's consolidated metadata, but the array is missing"))
        elif name not in members:
            problems.append(Problem(where, "array missing from the group's consolidated metadata"))
        else:
            try:
                own = json.loads((group_dir / name / "zarr.json").read_text(encoding="utf-8"))
            except (OSError, ValueError):  # reported by _check_arrays
                continue
            if own != members[name]:
                diff = sorted(k for k in set(own) | set(members[name]) if own.get(k) != members[name].get(k))
                problems.append(Problem(where, f"the group's consolidated metadata differs from the array's own "
                                               f"zarr.json in {diff} (edited after it was written)"))


def _check_masks(array_dir: Path, data: np.ndarray, width: int | None, problems: list[Problem]) -> None:
    """The masks' last axis: W bools (schema 1) or ceil(W/8) bytes with a matching ``packbits`` attribute."""
    try:
        attrs = dict(json.loads((array_dir / "zarr.json").read_text(encoding="utf-8")).get("attributes") or {})
        unpacked = unpack_masks(data, attrs, array_dir)
    except (OSError, ValueError, StoreError) as exc:
        problems.append(Problem(str(array_dir), str(exc)))
        return
    if width is not None and unpacked.shape[-1] != width:
        problems.append(Problem(str(array_dir), f"masks are {unpacked.shape[-1]} pixels wide, the scene's image is {width}"))


def check_store(path: str | os.PathLike[str], progress: Progress | None = None) -> list[Problem]:
    """Validate every scene and query group of a store; never modifies anything.

    Checks the root metadata, each group's ``complete`` marker and attributes, every array's
    dtype/shape/finiteness, that every chunk of its chunk grid has a file and decodes, and the
    correspondence/view index ranges.
    Leftover temporary groups of interrupted writes are reported as warnings.
    """
    root = Path(path)
    problems: list[Problem] = []
    try:
        store = open_store(root, "r")
    except StoreError as exc:
        return [Problem(str(root), str(exc))]
    if store.attrs.get("format") != STORE_FORMAT:  # open_store checks this too; keep explicit
        problems.append(Problem(str(root), "root format attribute missing"))
    scenes_dir = root / "scenes"
    if not scenes_dir.is_dir():
        return problems + [Problem(str(scenes_dir), "scenes group missing")]
    if not (scenes_dir / "zarr.json").is_file():
        problems.append(Problem(str(scenes_dir / "zarr.json"), "group metadata file missing (scenes is no Zarr group)"))
    scene_dirs = sorted(p for p in scenes_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
    query_dirs = {
        s: sorted(q for q in (s / "queries").iterdir() if q.is_dir() and not q.name.startswith("."))
        if (s / "queries").is_dir()
        else []
        for s in scene_dirs
    }
    total = len(scene_dirs) + sum(len(v) for v in query_dirs.values())
    done = 0
    for sdir in scene_dirs:
        sattrs = _check_scene(sdir, problems)
        done += 1
        if progress is not None:
            progress(done, total)
        sid = (sattrs or {}).get("scene_id")
        if sid is not None and not key_matches(sdir.name, str(sid)):
            problems.append(Problem(str(sdir), f"stored scene_id {str(sid)[:80]!r} does not match the folder name "
                                               f"(expected {safe_key(str(sid))!r}): a copied or renamed group"))
        if not (sdir / "queries").is_dir():
            problems.append(Problem(str(sdir / "queries"), "queries group missing"))
        elif sattrs is not None and not (sdir / "queries" / "zarr.json").is_file():
            problems.append(Problem(str(sdir / "queries" / "zarr.json"), "group metadata file missing"))
        for qdir in query_dirs[sdir]:
            _check_query(qdir, sattrs or {}, problems)
            try:
                qid = _read_attrs(qdir).get("query_id")
            except (OSError, ValueError, AttributeError):  # reported by _check_query
                qid = None
            if qid is not None and not key_matches(qdir.name, str(qid)):
                problems.append(Problem(str(qdir), f"stored query_id {str(qid)[:80]!r} does not match the folder "
                                                   f"name (expected {safe_key(str(qid))!r}): a copied or renamed group"))
            done += 1
            if progress is not None:
                progress(done, total)
    for extra in unexpected_entries(root, [a.name for a in SCENE_ARRAYS], _query_array_names):
        problems.append(Problem(str(extra), f"unexpected {'folder' if extra.is_dir() else 'file'} (Stage 1 never "
                                            "writes it: a hand copy or stray file); move it out of the store"))
    for tmp in store.temporary_groups():
        kind = "temporary" if tmp.name.startswith(TMP_PREFIX) else "trash"
        problems.append(Problem(str(tmp), f"leftover {kind} group of an interrupted write", "warning"))
    return problems
