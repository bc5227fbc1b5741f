"""Schema 3 query groups on disk: which files, what the group's consolidated metadata holds, the order of the
writes (complete last), the files one read opens, and the checks of the views table."""

from __future__ import annotations

import builtins
import json
from pathlib import Path

import numpy as np
import pytest
import zarr

from mllm3d.shared import store_queries
from mllm3d.shared.errors import StoreError
from mllm3d.shared.store import open_store
from mllm3d.shared.store_query_layout import MAX_VIEW_INDEX, VIEW_COLUMNS, split_views, views_table
from tests.shared.test_store import _record, _write_toy_scene

SCENE = "scene0001_00"


def _plain_record(**kw):
    rec = _record(**kw)
    rec.image_features = None
    return rec


@pytest.fixture
def store(tmp_path: Path):
    s = open_store(tmp_path / "store.zarr", "a", segmenter={"name": "toy", "config": {}})
    _write_toy_scene(s)
    assert s.write_query(_plain_record())
    return s


def _files(d: Path) -> list[str]:
    return sorted(p.relative_to(d).as_posix() for p in d.rglob("*") if p.is_file())


def test_a_query_group_is_three_arrays_of_one_chunk_each(store) -> None:
    d = store.query_dir(SCENE, "q/1")
    assert _files(d) == ["masks/c/0/0/0", "masks/zarr.json", "seg_embeddings/c/0/0", "seg_embeddings/zarr.json",
                         "views/c/0/0", "views/zarr.json", "zarr.json"]
    doc = json.loads((d / "zarr.json").read_text())
    members = doc["consolidated_metadata"]["metadata"]
    assert doc["consolidated_metadata"]["kind"] == "inline" and sorted(members) == ["masks", "seg_embeddings", "views"]
    for name, meta in members.items():  # the copy in the group is the array's own zarr.json, field for field
        assert meta == json.loads((d / name / "zarr.json").read_text()), name
    assert doc["attributes"]["complete"] is True


def test_the_views_table_holds_the_per_view_fields_exactly(store) -> None:
    rec = _plain_record()
    table = np.asarray(zarr.open_array(str(store.query_dir(SCENE, "q/1") / "views"), mode="r")[...])
    assert table.dtype == np.float32 and table.tolist() == [[1.0, np.float32(0.9), np.float32(0.5), 1.0],
                                                             [0.0, np.float32(0.2), np.float32(0.1), 0.0]]
    back = store.read_query(SCENE, "q/1")
    assert back.view_index.dtype == np.int32 and back.view_index.tolist() == [1, 0]
    assert back.has_seg.dtype == bool and back.has_seg.tolist() == [True, False]
    assert np.array_equal(back.confidence, rec.confidence) and np.array_equal(back.attention, rec.attention)
    assert back.confidence.dtype == back.attention.dtype == np.float32


def test_complete_is_written_last_after_every_array(store, monkeypatch) -> None:
    seen: dict[str, object] = {}
    real = store_queries.write_group_json

    def spy(tmp: Path, attrs: dict) -> None:
        seen["files_before"] = _files(tmp)
        seen["complete_before"] = json.loads((tmp / "zarr.json").read_text()).get("attributes", {}).get("complete")
        assert attrs["complete"] is True
        real(tmp, attrs)

    monkeypatch.setattr(store_queries, "write_group_json", spy)
    assert store.write_query(_plain_record(query_id="q/2", seed=4))
    assert seen["complete_before"] is None  # the group's zarr.json had no complete flag until the last write
    assert {"masks/c/0/0/0", "views/c/0/0", "seg_embeddings/c/0/0"} <= set(seen["files_before"])


def test_one_read_opens_the_group_zarr_json_and_one_chunk_per_array(store, monkeypatch) -> None:
    d = store.query_dir(SCENE, "q/1")
    opened: list[str] = []
    real_open = builtins.open

    def counting(file, *a, **kw):
        opened.append(Path(file).relative_to(d).as_posix())
        return real_open(file, *a, **kw)

    monkeypatch.setattr(builtins, "open", counting)
    store.read_query(SCENE, "q/1")
    monkeypatch.undo()
    assert sorted(opened) == ["masks/c/0/0/0", "seg_embeddings/c/0/0", "views/c/0/0", "zarr.json"]


def test_a_group_without_its_consolidated_metadata_still_reads(store) -> None:
    d = store.query_dir(SCENE, "q/1")
    doc = json.loads((d / "zarr.json").read_text())
    del doc["consolidated_metadata"]  # e.g. the attributes rewritten by another Zarr tool
    (d / "zarr.json").write_text(json.dumps(doc))
    back = store.read_query(SCENE, "q/1")
    assert np.array_equal(back.masks, _plain_record().masks) and back.has_seg.tolist() == [True, False]


def test_a_views_table_with_values_this_store_never_writes_is_an_error_naming_it(tmp_path: Path) -> None:
    cols = list(VIEW_COLUMNS)
    good = np.array([[2, 0.9, 0.5, 1], [0, 0.2, 0.1, 0]], np.float32)
    assert split_views(good, cols, tmp_path)["view_index"].tolist() == [2, 0]
    for bad, msg in ((np.array([[1.5, 0.9, 0.5, 1]], np.float32), "no view indices"),
                     (np.array([[-1, 0.9, 0.5, 1]], np.float32), "no view indices"),
                     (np.array([[1, 0.9, 0.5, 0.5]], np.float32), "other than 0 and 1"),
                     (np.array([[1, np.nan, 0.5, 1]], np.float32), "non-finite"),
                     (np.array([[1, 0.9, 0.5]], np.float32), r"expected float32 \(k, 4\)"),
                     (good.astype(np.float64), "expected float32")):
        with pytest.raises(StoreError, match=msg) as exc:
            split_views(bad, cols, tmp_path / "views")
        assert str(tmp_path / "views") in str(exc.value)
    with pytest.raises(StoreError, match="does not name the columns"):
        split_views(good, ["view_index", "confidence"], tmp_path)


def test_a_view_index_float32_cannot_hold_is_refused() -> None:
    rec = _plain_record()
    rec.view_index = np.array([MAX_VIEW_INDEX, 0], np.int32)  # 2**24 + 1 would round in float32
    with pytest.raises(StoreError, match="view_index outside"):
        views_table(rec)
    rec.view_index = np.array([MAX_VIEW_INDEX - 1, 0], np.int32)
    assert views_table(rec)[0, 0] == MAX_VIEW_INDEX - 1
