"""Decode the store's own Zarr v3 arrays without zarr's machinery.

``zarr`` runs every array open and read as a round trip to its background event-loop thread; for a
query group of 6-8 small arrays that fixed cost is ~15 ms, ~10x the time to decode the data (BENCHMARKS.md,
store read speed). The store writes every array in one layout (``mllm3d.shared.store_io._write_array``): a regular
chunk grid, default chunk keys (``c/i/j/k``), a ``bytes`` codec (little-endian), ``blosc``, then ``crc32c`` (a 4-byte
little-endian CRC-32C of the compressed chunk appended to it; stores written before the checksum have no
``crc32c`` and are read unchecked). An array with exactly that metadata is decoded here with numcodecs directly; anything else (another
writer, another codec) returns ``None`` and the caller reads it through zarr, which stays the reference.
A missing chunk is the fill value, as in zarr. Chunks that do not decode raise :class:`StoreError`
naming the chunk file; so does a chunk whose checksum does not match its bytes (any flipped byte).
"""

from __future__ import annotations

import itertools
import json
import os
from pathlib import Path

import google_crc32c
import numpy as np
from numcodecs import blosc as _blosc

from mllm3d.shared.errors import StoreError

_DTYPES = {"bool", "int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64",
           "float16", "float32", "float64"}
# blosc.decompress reads cname / shuffle / typesize from each chunk's own header (what Blosc().decode calls,
# without its buffer-protocol wrapping: a few microseconds per chunk on a read of a handful of small arrays)


def _layout(meta: dict) -> tuple[list[int], list[int], np.dtype, bool] | None:
    """(shape, chunk_shape, dtype, checksummed) if ``meta`` is the store's own array layout, else None."""
    try:
        if meta.get("zarr_format") != 3 or meta.get("node_type") != "array" or meta.get("storage_transformers"):
            return None
        grid, keys = meta["chunk_grid"], meta["chunk_key_encoding"]
        if grid.get("name") != "regular" or keys.get("name") != "default":
            return None
        if keys.get("configuration", {}).get("separator", "/") != "/":
            return None
        codecs = meta["codecs"]
        names = [c.get("name") for c in codecs]
        if names not in (["bytes", "blosc"], ["bytes", "blosc", "crc32c"]):
            return None
        if codecs[0].get("configuration", {}).get("endian", "little") != "little":
            return None
        if meta["data_type"] not in _DTYPES:
            return None
        shape = [int(s) for s in meta["shape"]]
        chunks = [int(c) for c in grid["configuration"]["chunk_shape"]]
        if len(shape) != len(chunks) or any(c <= 0 for c in chunks):
            return None
        return shape, chunks, np.dtype(meta["data_type"]).newbyteorder("<"), len(names) == 3
    except (KeyError, TypeError, ValueError, AttributeError):
        return None


def _verified(chunk_file: str, data: bytes) -> bytes:
    """The chunk's compressed bytes without its trailing CRC-32C; StoreError naming the file on a mismatch."""
    if len(data) < 4:
        raise StoreError(f"{chunk_file}: corrupt chunk: {len(data)} bytes, shorter than its 4-byte crc32c checksum")
    body, stored = data[:-4], int.from_bytes(data[-4:], "little")
    computed = google_crc32c.value(body)
    if computed != stored:
        raise StoreError(
            f"{chunk_file}: corrupt chunk, does not decode: crc32c checksum mismatch (stored {stored:08x}, computed {computed:08x}); "
            "the file was changed after it was written"
        )
    return body


def read_array(
    path: Path | str, all_chunks: bool = False, meta_out: dict | None = None, meta: dict | None = None
) -> np.ndarray | None:
    """The whole array stored at ``path`` (a folder with zarr.json), or None if it is not the store's layout.

    ``all_chunks``: the writer stored every chunk (the group's ``all_chunks_written``), so a missing chunk
    file is a lost one and raises StoreError naming it instead of reading back as the fill value. ``meta_out``
    (a dict) receives the parsed zarr.json, so a caller needs no second read for the array's attributes.
    ``meta``: the array's metadata as already known (its group's consolidated metadata); its zarr.json is
    then not opened, only the chunk files."""
    base = os.fspath(path)
    if meta is None:
        try:
            with open(os.path.join(base, "zarr.json"), "rb") as f:
                meta = json.loads(f.read())
        except (OSError, ValueError) as exc:
            raise StoreError(f"{path}: unreadable array metadata: {exc}") from exc
    if meta_out is not None and isinstance(meta, dict):
        meta_out.update(meta)
    layout = _layout(meta)
    if layout is None:
        return None
    shape, chunks, dtype, checksummed = layout
    fill = meta.get("fill_value", 0)
    if not isinstance(fill, (bool, int, float)):  # "NaN", "Infinity", ... : left to zarr
        return None
    if 0 in shape:
        return np.full(shape, fill, dtype=dtype)
    grid = [range(-(-s // c)) for s, c in zip(shape, chunks, strict=True)]
    single = shape == chunks  # one chunk holding the whole array: decoded in place, no copy
    out = None if single else np.full(shape, fill, dtype=dtype)
    for idx in itertools.product(*grid):
        chunk_file = os.path.join(base, "c", *map(str, idx))
        try:
            with open(chunk_file, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            if all_chunks:
                raise StoreError(f"{chunk_file}: chunk file missing (lost: its group was written with every chunk); "
                                 "delete the group and rerun Stage 1 to rewrite it") from None
            if single:
                return np.full(shape, fill, dtype=dtype)
            continue  # never written: the fill value
        except OSError as exc:
            raise StoreError(f"{chunk_file}: unreadable chunk: {exc}") from exc
        if checksummed:
            data = _verified(chunk_file, data)
        try:
            if out is None:  # the single chunk: decoded straight into the (writable) result
                block = np.empty(chunks, dtype=dtype)
                _blosc.decompress(data, block)
            else:
                block = np.frombuffer(_blosc.decompress(data), dtype=dtype).reshape(chunks)
        except Exception as exc:  # noqa: BLE001 - blosc reports corruption as RuntimeError/ValueError
            raise StoreError(f"{chunk_file}: corrupt chunk (blosc could not decode it to {chunks}): {exc}") from exc
        if out is None:
            return block
        sl = tuple(slice(i * c, min((i + 1) * c, s)) for i, c, s in zip(idx, chunks, shape, strict=True))
        out[sl] = block[tuple(slice(0, x.stop - x.start) for x in sl)]
    return out
