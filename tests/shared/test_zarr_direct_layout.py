"""Guard for ``mllm3d.shared.zarr_direct``: it reads the store's arrays from disk without zarr, so it
depends on the exact layout zarr writes. If a zarr upgrade changes that layout, these tests fail loudly,
naming the zarr version and the field that changed, instead of the store silently falling back to
zarr's ~10x slower read path (or, worse, misreading chunks).

What zarr_direct depends on (pinned here): zarr.json with ``zarr_format`` 3, ``node_type`` "array",
no ``storage_transformers``; a ``regular`` chunk grid; ``default`` chunk-key encoding with separator
"/", so chunk (i, j, k) lives in ``c/i/j/k``; codecs exactly ``bytes`` (little endian) then ``blosc``;
``data_type`` a plain numpy dtype name; a numeric ``fill_value``; each chunk file = one blosc frame of
the full chunk (C order, the partial edge chunk padded to the chunk shape).
"""

from __future__ import annotations

import json
from pathlib import Path

import google_crc32c
import numpy as np
import zarr
from numcodecs import Blosc

from mllm3d.shared.store import _write_array
from mllm3d.shared.zarr_direct import read_array
from tests.toy_store import build_toy_store

WHO = f"zarr {zarr.__version__} changed the on-disk layout mllm3d.shared.zarr_direct reads"


def _arrays(root: Path) -> list[Path]:
    out = []
    for meta in sorted(root.rglob("zarr.json")):
        if json.loads(meta.read_text())["node_type"] == "array":
            out.append(meta.parent)
    return out


def test_every_array_the_store_writes_is_read_directly_and_equals_zarr(tmp_path: Path) -> None:
    store = build_toy_store(tmp_path / "toy.zarr")
    arrays = _arrays(store.path)
    names = {p.name for p in arrays}
    # scene arrays, correspondence arrays and query arrays are all there
    assert {"points", "colors", "poses", "point_idx", "masks", "views", "seg_embeddings"} <= names, names
    for path in arrays:
        direct = read_array(path)
        assert direct is not None, f"{WHO}: {path.relative_to(store.path)} is no longer the layout it decodes"
        ref = np.asarray(zarr.open_array(str(path), mode="r")[...])
        assert direct.dtype == ref.dtype and direct.shape == ref.shape and np.array_equal(direct, ref), path


def test_the_metadata_fields_and_chunk_keys_it_depends_on(tmp_path: Path) -> None:
    g = zarr.open_group(str(tmp_path / "g"), mode="w")
    data = np.arange(5 * 7 * 3, dtype=np.int32).reshape(5, 7, 3)
    _write_array(g, "a", data, chunks=(2, 7, 3))
    meta = json.loads((tmp_path / "g" / "a" / "zarr.json").read_text())
    assert meta["zarr_format"] == 3 and meta["node_type"] == "array", WHO
    assert meta.get("storage_transformers", []) == [], f"{WHO}: storage_transformers {meta['storage_transformers']}"
    assert meta["shape"] == [5, 7, 3] and meta["data_type"] == "int32", WHO
    assert meta["chunk_grid"] == {"name": "regular", "configuration": {"chunk_shape": [2, 7, 3]}}, \
        f"{WHO}: chunk_grid {meta['chunk_grid']}"
    assert meta["chunk_key_encoding"] == {"name": "default", "configuration": {"separator": "/"}}, \
        f"{WHO}: chunk_key_encoding {meta['chunk_key_encoding']}"
    assert [c["name"] for c in meta["codecs"]] == ["bytes", "blosc", "crc32c"], f"{WHO}: codecs {meta['codecs']}"
    assert meta["codecs"][0]["configuration"] == {"endian": "little"}, f"{WHO}: {meta['codecs'][0]}"
    assert meta["fill_value"] == 0, WHO
    # chunk (i, 0, 0) is the file c/i/0/0, for the 3 chunks along axis 0 (5 rows / 2), nothing else
    chunk_dir = tmp_path / "g" / "a" / "c"
    files = sorted(p.relative_to(chunk_dir).as_posix() for p in chunk_dir.rglob("*") if p.is_file())
    assert files == ["0/0/0", "1/0/0", "2/0/0"], f"{WHO}: chunk files {files}"
    # each file is one blosc frame of the whole chunk in C order (the edge chunk padded to (2, 7, 3)), then the
    # CRC-32C of that frame as 4 little-endian bytes (google_crc32c: the Castagnoli check value of "123456789")
    assert google_crc32c.value(b"123456789") == 0xE3069283
    raw = [(chunk_dir / f).read_bytes() for f in files]
    assert all(int.from_bytes(r[-4:], "little") == google_crc32c.value(r[:-4]) for r in raw), f"{WHO}: crc32c"
    blocks = [np.frombuffer(Blosc().decode(r[:-4]), dtype="<i4") for r in raw]
    assert all(b.size == 2 * 7 * 3 for b in blocks), f"{WHO}: chunk sizes {[b.size for b in blocks]}"
    assert np.array_equal(blocks[1].reshape(2, 7, 3), data[2:4]), f"{WHO}: chunk bytes are not C-order blocks"
    assert np.array_equal(blocks[2].reshape(2, 7, 3)[:1], data[4:]), WHO
    assert np.array_equal(read_array(tmp_path / "g" / "a"), data)


def test_empty_and_all_fill_chunks_keep_the_layout(tmp_path: Path) -> None:
    # the store writes all-fill chunks too (a missing chunk file then means a lost one): zarr must keep doing so
    g = zarr.open_group(str(tmp_path / "g"), mode="w")
    _write_array(g, "m", np.zeros((3, 4), bool), chunks=(1, 4))
    files = sorted(p.name for p in (tmp_path / "g" / "m" / "c").iterdir())
    assert files == ["0", "1", "2"], f"{WHO}: all-False chunks were not written ({files})"
    _write_array(g, "e", np.zeros((0, 3), np.float32))
    empty = read_array(tmp_path / "g" / "e")
    assert empty is not None and empty.shape == (0, 3), WHO


def test_the_query_masks_array_is_bit_packed_and_read_directly(tmp_path: Path) -> None:
    # the query group's masks: uint8 (k, H, ceil(W/8)), one chunk holding all k views, blosc without shuffle,
    # crc32c, and the packbits attribute readers unpack with; zarr_direct hands the attributes back with the data
    store = build_toy_store(tmp_path / "toy.zarr")
    sid, qid = store.complete_pairs()[0]
    path = store.query_dir(sid, qid) / "masks"
    meta = json.loads((path / "zarr.json").read_text())
    assert meta["data_type"] == "uint8" and meta["shape"][2] == 4, f"{WHO}: masks {meta['data_type']} {meta['shape']}"
    assert meta["chunk_grid"]["configuration"]["chunk_shape"] == meta["shape"], WHO
    assert [c["name"] for c in meta["codecs"]] == ["bytes", "blosc", "crc32c"], WHO
    assert meta["codecs"][1]["configuration"]["shuffle"] == "noshuffle", f"{WHO}: {meta['codecs'][1]}"
    assert meta["attributes"] == {"packbits": {"axis": 2, "bitorder": "big", "width": 32}}, WHO
    got: dict = {}
    packed = read_array(path, meta_out=got)
    assert got["attributes"] == meta["attributes"]
    assert np.array_equal(packed, np.asarray(zarr.open_array(str(path), mode="r")[...]))
    assert np.array_equal(np.unpackbits(packed, axis=2, count=32).astype(bool), store.read_query(sid, qid).masks)
    # given the metadata (the group's consolidated copy), it opens no zarr.json and decodes the same
    (path / "zarr.json").rename(path / "moved.json")
    assert np.array_equal(read_array(path, meta=meta), packed)
