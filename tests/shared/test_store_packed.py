"""Bit-packed masks (schema 2): readable with plain zarr as documented, old bool-mask stores still read."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import zarr

from mllm3d.shared.errors import StoreError
from mllm3d.shared.store import SCHEMA_VERSION, open_store
from mllm3d.shared.store_io import _write_array
from tests.shared.test_store import _record, _write_toy_scene

SCENE = "scene0001_00"


@pytest.fixture
def store(tmp_path: Path):
    s = open_store(tmp_path / "store.zarr", "a", segmenter={"name": "toy", "config": {"a": 1}})
    _write_toy_scene(s)
    assert s.write_query(_record())
    return s


def test_plain_zarr_reads_the_masks_back_by_unpacking_as_documented(store) -> None:
    rec = _record()
    g = zarr.open(str(store.query_dir(SCENE, "q/1")), mode="r")
    packed = np.asarray(g["masks"][...])
    spec = g["masks"].attrs["packbits"]
    assert packed.dtype == np.uint8 and packed.shape == (2, 32, 6)  # 48 pixels per row -> 6 bytes
    assert spec == {"axis": 2, "bitorder": "big", "width": 48}
    masks = np.unpackbits(packed, axis=spec["axis"], count=spec["width"], bitorder=spec["bitorder"]).astype(bool)
    assert np.array_equal(masks, rec.masks)
    # one hand-computed row: pixels 0 and 9 set -> bytes 0b10000000, 0b01000000, then zeros
    assert np.array_equal(np.packbits(np.isin(np.arange(48), [0, 9]), bitorder="big"), [128, 64, 0, 0, 0, 0])
    assert list(g["confidence"][...]) == pytest.approx([0.9, 0.2])


def test_a_width_that_is_no_multiple_of_8_round_trips(tmp_path: Path) -> None:
    from mllm3d.shared.store_io import pack_masks, unpack_masks

    masks = np.random.default_rng(5).random((3, 7, 13)) > 0.5
    packed, attrs = pack_masks(masks)
    assert packed.shape == (3, 7, 2)
    assert np.array_equal(unpack_masks(packed, attrs, tmp_path), masks)
    with pytest.raises(StoreError, match="do not match packbits"):
        unpack_masks(packed[..., :1], attrs, tmp_path)
    with pytest.raises(StoreError, match="without a 'packbits' attribute"):
        unpack_masks(packed, {}, tmp_path)


def _as_schema_1(store) -> Path:
    """Turn the store into what schema 1 wrote: bool masks without the packbits attribute, root version 1."""
    qdir = store.query_dir(SCENE, "q/1")
    masks = store.read_query(SCENE, "q/1").masks
    shutil.rmtree(qdir / "masks")
    _write_array(zarr.open_group(str(qdir), mode="r+"), "masks", masks, chunks=(1, *masks.shape[1:]))
    root = store.path / "zarr.json"
    doc = json.loads(root.read_text())
    doc["attributes"]["schema_version"] = 1
    root.write_text(json.dumps(doc))
    return root


def test_a_schema_1_store_reads_unchanged_and_is_upgraded_only_when_written(store) -> None:
    rec = _record()
    root = _as_schema_1(store)
    before = root.read_bytes()
    r = open_store(store.path, "r")
    assert np.array_equal(r.read_query(SCENE, "q/1").masks, rec.masks)  # bool masks of schema 1
    assert root.read_bytes() == before  # reading never modifies the store
    a = open_store(store.path, "a")
    attrs = json.loads(root.read_text())["attributes"]
    assert attrs["schema_version"] == SCHEMA_VERSION == 2 and attrs["upgraded_from_schema"] == 1
    assert a.attrs["schema_version"] == 2
    assert a.write_query(_record(query_id="q/2", seed=3))  # a schema 2 group beside the schema 1 one
    r = open_store(store.path, "r")
    assert np.array_equal(r.read_query(SCENE, "q/1").masks, rec.masks)
    assert np.array_equal(r.read_query(SCENE, "q/2").masks, _record(seed=3).masks)
    assert sorted(p.name for p in store.path.iterdir()) == ["scenes", "zarr.json"]  # no temporary left


def test_a_store_from_a_newer_schema_is_refused_naming_it(store) -> None:
    root = store.path / "zarr.json"
    doc = json.loads(root.read_text())
    doc["attributes"]["schema_version"] = SCHEMA_VERSION + 1
    root.write_text(json.dumps(doc))
    with pytest.raises(StoreError, match=f"{store.path}: store schema_version {SCHEMA_VERSION + 1} is not supported"):
        open_store(store.path, "r")


def test_query_metadata_is_written_compactly(store) -> None:
    meta = (store.query_dir(SCENE, "q/1") / "masks" / "zarr.json").read_text()
    assert "\n" not in meta.strip() and json.loads(meta)["attributes"]["packbits"]["width"] == 48
