"""The arrays of a query group on disk: the schema 3 layout it writes and the older layouts it still reads.

Schema 3 (docs/store.md): ``views`` = one (k, 4) float32 table (``view_index``, ``confidence``, ``attention``,
``has_seg`` as its columns, named in the array's ``columns`` attribute), ``masks`` bit-packed in one chunk,
``seg_embeddings``, the optional ``attention_maps`` / ``image_features``; the group's zarr.json carries the
arrays' metadata as Zarr's inline consolidated metadata, so a read opens that one file and one chunk file
per array. Schemas 1 and 2 hold one 1-D array per per-view field and no consolidated metadata; they are read
through each array's own zarr.json.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from mllm3d.shared.errors import StoreError
from mllm3d.shared.store_io import (
    _has_array,
    _load,
    _load_masks,
    _read_json,
    _write_array,
    pack_masks,
    unpack_masks,
)
from mllm3d.shared.store_records import QueryRecord
from mllm3d.shared.zarr_direct import read_array

VIEWS = "views"
VIEW_COLUMNS = ("view_index", "confidence", "attention", "has_seg")
COLUMNS_ATTR = "columns"
# float32 holds every integer below 2**24 exactly: view indices up to that are stored losslessly
MAX_VIEW_INDEX = 2**24
OPTIONAL_ARRAYS = ("attention_maps", "image_features")


def views_table(record: QueryRecord) -> np.ndarray:
    """The (k, 4) float32 table of a record's per-view fields, in :data:`VIEW_COLUMNS` order."""
    vi = np.asarray(record.view_index)
    if vi.size and (vi.min() < 0 or vi.max() >= MAX_VIEW_INDEX):
        where = f"query {record.query.scene_id}/{record.query.query_id}"
        raise StoreError(f"{where}: view_index outside 0..{MAX_VIEW_INDEX - 1} (not exact in the float32 views table)")
    cols = [vi, record.confidence, record.attention, np.asarray(record.has_seg, dtype=bool)]
    return np.stack([np.asarray(c, dtype=np.float32).reshape(-1) for c in cols], axis=1).reshape(-1, len(cols))


def split_views(table: np.ndarray, columns: Any, where: Path | str) -> dict[str, np.ndarray]:
    """The per-view fields of a ``views`` table; StoreError naming ``where`` if it is not one this store wrote."""
    if not isinstance(columns, list) or any(c not in columns for c in VIEW_COLUMNS):
        raise StoreError(f"{where}: {COLUMNS_ATTR!r} attribute {columns!r} does not name the columns {list(VIEW_COLUMNS)}")
    if table.ndim != 2 or table.shape[1] != len(columns) or table.dtype != np.float32:
        raise StoreError(f"{where}: views table is {table.dtype}{list(table.shape)}, expected float32 (k, {len(columns)})")
    vi, conf, att, seg = (table[:, columns.index(name)] for name in VIEW_COLUMNS)
    # a handful of values: checked in Python, cheaper than a dozen numpy calls on (k,) arrays
    if not all(math.isfinite(v) for v in table.ravel().tolist()):
        raise StoreError(f"{where}: views table has non-finite values")
    if not all(v == int(v) and v >= 0 for v in vi.tolist()):
        raise StoreError(f"{where}: view_index column holds values that are no view indices: {vi.tolist()}")
    if not all(v in (0.0, 1.0) for v in seg.tolist()):
        raise StoreError(f"{where}: has_seg column holds values other than 0 and 1: {seg.tolist()}")
    return {"view_index": vi.astype(np.int32), "confidence": conf.copy(), "attention": att.copy(), "has_seg": seg == 1}


def write_query_arrays(tmp: Path, record: QueryRecord, mid_write: Callable[[], None]) -> zarr.Group:
    """Create the group at ``tmp`` and write its schema 3 arrays (its attributes come after, see below);
    ``mid_write`` is called between the masks and the other arrays (the write-stage audit event)."""
    g = zarr.open_group(str(tmp), mode="w")
    packed, packing = pack_masks(record.masks)
    _write_array(g, "masks", packed, shuffle="noshuffle", attributes=packing)  # one chunk: all k views
    mid_write()
    _write_array(g, VIEWS, views_table(record), attributes={COLUMNS_ATTR: list(VIEW_COLUMNS)})
    _write_array(g, "seg_embeddings", record.seg_embeddings.astype(np.float16))
    if record.attention_maps is not None:
        am = record.attention_maps.astype(np.float16)
        _write_array(g, "attention_maps", am, chunks=(1, *am.shape[1:]))
    if record.image_features is not None:
        f = record.image_features.astype(np.float16)
        _write_array(g, "image_features", f, chunks=(1, *f.shape[1:]))
    return g


def write_group_json(tmp: Path, attrs: dict[str, Any]) -> None:
    """Write the group's zarr.json once, with ``attrs`` and the consolidated metadata of its arrays (read back
    from their own zarr.json files, so the two are identical); the caller puts ``complete`` in ``attrs``, and
    this is the group's last file."""
    members = {}
    for child in sorted(tmp.iterdir()):
        meta = child / "zarr.json"
        if child.is_dir() and meta.is_file():
            doc = _read_json(meta)
            if doc.get("node_type") == "array":
                members[child.name] = doc
    doc = {
        "attributes": attrs,
        "zarr_format": 3,
        "consolidated_metadata": {"kind": "inline", "must_understand": False, "metadata": members},
        "node_type": "group",
    }
    with open(tmp / "zarr.json", "w", encoding="utf-8") as f:
        f.write(json.dumps(doc))  # as zarr writes it (compact: json_indent None)


def consolidated_members(doc: dict[str, Any]) -> dict[str, dict[str, Any]] | None:
    """The arrays' metadata from a group document's inline consolidated metadata, or None if it has none."""
    cm = doc.get("consolidated_metadata")
    if not isinstance(cm, dict) or cm.get("kind") != "inline" or not isinstance(cm.get("metadata"), dict):
        return None
    members = cm["metadata"]
    if not all(isinstance(v, dict) for v in members.values()):
        return None
    return members


def _member(base: str, name: str, full: bool, meta: dict[str, Any]) -> np.ndarray:
    """One array of a group with consolidated metadata: only its chunk files are opened (zarr_direct), unless
    its layout is not the store's own, then through zarr."""
    data = read_array(f"{base}/{name}", full, None, meta)
    return data if data is not None else _load(Path(base), name, full)


def read_query_arrays(d: Path, doc: dict[str, Any], full: bool, with_features: bool) -> dict[str, Any]:
    """The per-view arrays of the complete query group at ``d`` (``doc``: its parsed zarr.json), any schema."""
    members = consolidated_members(doc)
    if members is None or VIEWS not in members:
        return _read_separate(d, full, with_features)
    base = os.fspath(d)
    out: dict[str, Any] = {}
    for name in ("masks", VIEWS, "seg_embeddings", *OPTIONAL_ARRAYS):
        meta = members.get(name)
        if meta is None:
            if name in OPTIONAL_ARRAYS:
                out[name] = None
                continue
            raise KeyError(f"array {name!r} missing from the group's consolidated metadata")
        if name == "image_features" and not with_features:
            out[name] = None
            continue
        data = _member(base, name, full, meta)
        attrs = meta.get("attributes") or {}
        if name == "masks":
            out[name] = unpack_masks(data, attrs, f"{base}/masks")
        elif name == VIEWS:
            out.update(split_views(data, attrs.get(COLUMNS_ATTR), f"{base}/{VIEWS}"))
        else:
            out[name] = data
    out["seg_embeddings"] = out["seg_embeddings"].astype(np.float32)
    return out


def _read_separate(d: Path, full: bool, with_features: bool) -> dict[str, Any]:
    """A group without consolidated metadata (schemas 1 and 2): every array through its own zarr.json."""
    if _has_array(d, VIEWS):
        got: dict[str, Any] = {}
        table = _load(d, VIEWS, full, got)
        out: dict[str, Any] = split_views(table, (got.get("attributes") or {}).get(COLUMNS_ATTR), d / VIEWS)
    else:  # one array per field
        out = {name: _load(d, name, full) for name in VIEW_COLUMNS}
    out["masks"] = _load_masks(d, full)
    out["seg_embeddings"] = _load(d, "seg_embeddings", full).astype(np.float32)
    out["attention_maps"] = _load(d, "attention_maps", full) if _has_array(d, "attention_maps") else None
    has_features = with_features and _has_array(d, "image_features")
    out["image_features"] = _load(d, "image_features", full) if has_features else None
    return out
