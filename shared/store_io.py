"""Arrays and group metadata on disk: the store's array layout, complete markers, fsync, direct reads."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from zarr.codecs import BloscCodec, Crc32cCodec

from mllm3d.shared.atomic_file import atomic_write
from mllm3d.shared.errors import StoreError
from mllm3d.shared.store_keys import TMP_PREFIX
from mllm3d.shared.zarr_direct import read_array


def compressor(shuffle: str = "bitshuffle") -> BloscCodec:
    """blosc-zstd, bit shuffling by default; bit-packed masks use ``shuffle="noshuffle"`` (docs/store.md)."""
    return BloscCodec(cname="zstd", clevel=5, shuffle=shuffle)


# Masks of schema version 2 are bit-packed along their last axis (np.packbits, bitorder "big"); the masks
# array's attributes say so, so any Zarr reader can unpack them (docs/store.md, "Reading with plain zarr").
PACKBITS_ATTR = "packbits"


def compact_metadata() -> Any:
    """Context in which zarr writes its zarr.json files without indentation (about half the bytes)."""
    return zarr.config.set({"json_indent": None})


def pack_masks(masks: np.ndarray) -> tuple[np.ndarray, dict[str, Any]]:
    """(k,H,W) bool -> (k,H,ceil(W/8)) uint8 and the attribute that describes the packing."""
    packed = np.packbits(np.asarray(masks, dtype=bool), axis=-1, bitorder="big")
    return packed, {PACKBITS_ATTR: {"axis": 2, "bitorder": "big", "width": int(masks.shape[-1])}}


def unpack_masks(data: np.ndarray, attrs: dict[str, Any], where: Path | str) -> np.ndarray:
    """The (k,H,W) bool masks of a masks array: unpacked if its attributes say it is bit-packed."""
    spec = attrs.get(PACKBITS_ATTR)
    if spec is None:
        if data.dtype != np.bool_:
            raise StoreError(f"{where}: masks are {data.dtype} without a {PACKBITS_ATTR!r} attribute")
        return data
    try:
        width, axis, order = int(spec["width"]), int(spec["axis"]), str(spec["bitorder"])
    except (KeyError, TypeError, ValueError) as exc:
        raise StoreError(f"{where}: unreadable {PACKBITS_ATTR!r} attribute {spec!r}") from exc
    if data.dtype != np.uint8 or data.ndim != 3 or axis != 2 or data.shape[2] != -(-width // 8):
        raise StoreError(f"{where}: packed masks {data.dtype}{list(data.shape)} do not match {PACKBITS_ATTR} {spec}")
    if width % 8 == 0 and data.flags.c_contiguous:  # no padding bits: one flat unpack (~20 % faster than axis=2)
        flat = np.unpackbits(data.reshape(-1), bitorder=order)
        return flat.reshape(data.shape[0], data.shape[1], width).view(np.bool_)
    return np.unpackbits(data, axis=2, count=width, bitorder=order).view(np.bool_)



def _write_array(
    group: zarr.Group,
    name: str,
    data: np.ndarray,
    chunks: tuple[int, ...] | None = None,
    shuffle: str = "bitshuffle",
    attributes: dict[str, Any] | None = None,
) -> None:
    data = np.ascontiguousarray(data)
    arr = group.create_array(
        name,
        shape=data.shape,
        dtype=data.dtype,
        chunks=chunks if chunks is not None else tuple(max(1, s) for s in data.shape),
        # crc32c of the compressed chunk, checked on every read (zarr and mllm3d.shared.zarr_direct): a flipped
        # byte anywhere in a chunk file is an error naming the chunk, not silently different data
        compressors=[compressor(shuffle), Crc32cCodec()],
        # store all-fill-value chunks too (an all-False mask chunk is ~40 bytes), so that a chunk file that is
        # missing is known to be lost: zarr would otherwise read it back silently as the fill value
        config={"write_empty_chunks": True},
        attributes=attributes,
    )
    if data.size:
        arr[...] = data


def _read_json(path: Path) -> dict[str, Any]:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def replace_json(path: Path, doc: dict[str, Any]) -> None:
    """Write ``doc`` onto ``path`` atomically through a store temporary beside it (``TMP_PREFIX``, so an
    interrupted write is cleaned like any other store temporary)."""
    atomic_write(path, lambda f: f.write(json.dumps(doc, indent=2).encode("utf-8")), tmp_prefix=TMP_PREFIX)


def group_attrs(group_dir: Path) -> dict[str, Any] | None:
    """The attributes of the group at ``group_dir``, or None if its zarr.json is missing or unparseable."""
    try:
        meta = _read_json(group_dir / "zarr.json")
    except (OSError, ValueError):
        return None
    attrs = meta.get("attributes") if isinstance(meta, dict) else None
    return attrs if isinstance(attrs, dict) else None


def group_is_complete(group_dir: Path) -> bool:
    """True when the group's zarr.json parses and has ``complete: true`` (set last by the writer)."""
    attrs = group_attrs(group_dir)
    return attrs is not None and attrs.get("complete") is True


def _fsync_tree(path: Path) -> None:
    """Flush every file under ``path`` to disk so a rename never publishes unwritten data."""
    for dirpath, _, files in os.walk(path):
        for name in files:
            fd = os.open(os.path.join(dirpath, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)


def _has_array(group_dir: Path, name: str) -> bool:
    return (group_dir / name / "zarr.json").is_file()


def _load(group_dir: Path, name: str, all_chunks: bool = False, meta_out: dict[str, Any] | None = None) -> np.ndarray:
    """One whole array of a group: decoded directly when it has the store's own layout (mllm3d.shared.zarr_direct,
    ~10x less overhead than zarr for small arrays), else through zarr. A missing array is a KeyError; with
    ``all_chunks`` (the group's ALL_CHUNKS_ATTR) a missing chunk file is a StoreError naming it. ``meta_out``
    receives the array's metadata (its ``attributes`` at least)."""
    path = group_dir / name
    if path.parent != group_dir:  # a sub-group's array (correspondences/...): its group metadata must parse
        try:
            if _read_json(path.parent / "zarr.json").get("node_type") != "group":
                raise ValueError("not a group")
        except (OSError, ValueError) as exc:
            raise StoreError(f"{path.parent}: unreadable group metadata: {exc}") from exc
    if not _has_array(group_dir, name):
        raise KeyError(f"array {name!r} missing")
    data = read_array(path, all_chunks, meta_out)
    if data is None:
        try:
            arr = zarr.open_array(str(path), mode="r")
            if meta_out is not None:
                meta_out["attributes"] = dict(arr.attrs)
            data = np.asarray(arr[...])
        except Exception as exc:  # noqa: BLE001 - zarr reports a bad checksum/codec as ValueError/RuntimeError
            raise StoreError(f"{path}: corrupt array (zarr could not decode it): {type(exc).__name__}: {exc}") from exc
    return data


def _load_masks(group_dir: Path, all_chunks: bool = False) -> np.ndarray:
    """The (k,H,W) bool masks of a query group without consolidated metadata: bit-packed (schema 2) or bool
    (schema 1)."""
    meta: dict[str, Any] = {}
    data = _load(group_dir, "masks", all_chunks, meta)
    return unpack_masks(data, dict(meta.get("attributes") or {}), group_dir / "masks")


def _require_complete(group_dir: Path, kind: str) -> dict[str, Any]:
    """The attributes of a complete group; StoreError naming the folder if it is unreadable or incomplete."""
    return dict(complete_group_doc(group_dir, kind)["attributes"])


def complete_group_doc(group_dir: Path, kind: str, missing: str | None = None) -> dict[str, Any]:
    """The whole parsed zarr.json of a complete group (attributes and, if written, consolidated metadata);
    StoreError naming the folder if it is unreadable or incomplete (``missing``: the message when the group
    has no zarr.json at all)."""
    try:
        try:
            meta = _read_json(group_dir / "zarr.json")
        except FileNotFoundError:
            if missing is not None:
                raise StoreError(missing) from None
            raise
        attrs = meta["attributes"]
        if not isinstance(attrs, dict):
            raise ValueError("attributes is not a JSON object")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise StoreError(f"{group_dir}: {kind} group is corrupt: unreadable group metadata: {exc}") from exc
    if attrs.get("complete") is not True:
        raise StoreError(
            f"{group_dir}: incomplete group ({kind} group without complete=true: written by an older version, "
            "copied by hand or interrupted on a filesystem without atomic rename); rerun Stage 1 to rewrite it"
        )
    return meta

