"""Query-group layouts: schema 3 (views table, one masks chunk, consolidated metadata) readable with plain zarr
as documented; groups of schema 2 (one array per per-view field, bit-packed masks) and schema 1 (bool masks),
written here by hand as those versions wrote them, still read."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import zarr

from mllm3d.shared.errors import StoreError
from mllm3d.shared.store import SCHEMA_VERSION, open_store
from mllm3d.shared.store_io import _write_array, pack_masks
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
    views = g["views"]
    cols = views.attrs["columns"]
    assert cols == ["view_index", "confidence", "attention", "has_seg"] and views.shape == (2, 4)
    assert list(views[:, cols.index("confidence")]) == pytest.approx([0.9, 0.2])
    assert views[:, cols.index("view_index")].tolist() == [1, 0] and views[:, cols.index("has_seg")].tolist() == [1, 0]
    # a reader that ignores the consolidated metadata (each array's own zarr.json) sees the same arrays
    plain = zarr.open_group(str(store.query_dir(SCENE, "q/1")), mode="r", use_consolidated=False)
    assert np.array_equal(plain["views"][...], views[...]) and np.array_equal(plain["masks"][...], packed)


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


def _write_legacy_group(store, query_id: str, schema: int, scene: str = SCENE) -> Path:
    """Rewrite a query group as schema ``schema`` (1 or 2) wrote it: one array per per-view field, masks one
    chunk per view (bool for 1, bit-packed for 2), attributes set by zarr, no consolidated metadata; the root's
    schema_version set to ``schema``. Returns the root zarr.json."""
    qdir = store.query_dir(scene, query_id)
    rec = store.read_query(scene, query_id)
    attrs = json.loads((qdir / "zarr.json").read_text())["attributes"]
    shutil.rmtree(qdir)
    g = zarr.open_group(str(qdir), mode="w")
    k = rec.num_views
    _write_array(g, "view_index", rec.view_index.astype(np.int32), chunks=(k,))
    if schema == 1:
        _write_array(g, "masks", rec.masks, chunks=(1, *rec.masks.shape[1:]))
    else:
        packed, packing = pack_masks(rec.masks)
        _write_array(g, "masks", packed, chunks=(1, *packed.shape[1:]), shuffle="noshuffle", attributes=packing)
    _write_array(g, "seg_embeddings", rec.seg_embeddings.astype(np.float16))
    _write_array(g, "confidence", rec.confidence, chunks=(k,))
    _write_array(g, "attention", rec.attention, chunks=(k,))
    _write_array(g, "has_seg", rec.has_seg, chunks=(k,))
    g.attrs.update(attrs)
    root = store.path / "zarr.json"
    doc = json.loads(root.read_text())
    doc["attributes"]["schema_version"] = schema
    root.write_text(json.dumps(doc))
    return root


@pytest.mark.parametrize("schema", [1, 2])
def test_an_older_schema_store_reads_unchanged_and_is_upgraded_only_when_written(store, schema: int) -> None:
    rec = _record()
    root = _write_legacy_group(store, "q/1", schema)
    assert not (store.query_dir(SCENE, "q/1") / "views").exists()
    before = root.read_bytes()
    r = open_store(store.path, "r")
    back = r.read_query(SCENE, "q/1")
    assert np.array_equal(back.masks, rec.masks) and np.array_equal(back.view_index, rec.view_index)
    assert np.array_equal(back.has_seg, rec.has_seg) and np.array_equal(back.confidence, rec.confidence)
    assert back.view_index.dtype == np.int32 and back.has_seg.dtype == bool
    assert root.read_bytes() == before  # reading never modifies the store
    a = open_store(store.path, "a")
    attrs = json.loads(root.read_text())["attributes"]
    assert attrs["schema_version"] == SCHEMA_VERSION == 3 and attrs["upgraded_from_schema"] == schema
    assert a.attrs["schema_version"] == 3
    assert a.write_query(_record(query_id="q/2", seed=3))  # a schema 3 group beside the older one
    assert (store.query_dir(SCENE, "q/2") / "views").is_dir()
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
    assert "\n" not in (store.query_dir(SCENE, "q/1") / "zarr.json").read_text().strip()
