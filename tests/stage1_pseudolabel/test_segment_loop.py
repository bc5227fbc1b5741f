"""The per-query loop shared by the runner and prediction gives the same record both ways."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mllm3d.shared.store import open_store
from mllm3d.stage1_pseudolabel.runner import run_pseudolabels
from mllm3d.stage1_pseudolabel.segment_loop import segment_one_query
from mllm3d.stage1_pseudolabel.segmenter import build_segmenter
from tests.stage1_helpers import run_config, tiny_source


def test_one_query_outside_the_store_equals_the_runners_stored_record(tmp_path: Path) -> None:
    source = tiny_source(1)
    s = run_pseudolabels(run_config(tmp_path / "s.zarr", views=3, seed=5), source=source)
    assert s.ok and s.queries_written >= 3
    store = open_store(tmp_path / "s.zarr")
    scene = source.load("synth_0000")
    seg = build_segmenter("synthetic", {})
    for q in [q for q in source.queries() if q.scene_id == "synth_0000"]:
        stored = store.read_query(q.scene_id, q.query_id)
        rec = segment_one_query(scene, q, seg, views=3, seed=5)
        assert rec.view_index.tolist() == stored.view_index.tolist()
        np.testing.assert_array_equal(rec.masks, stored.masks)
        # the store keeps embeddings as float16
        np.testing.assert_array_equal(rec.seg_embeddings.astype(np.float16), stored.seg_embeddings.astype(np.float16))
        np.testing.assert_array_equal(rec.confidence, stored.confidence)
        np.testing.assert_array_equal(rec.has_seg, stored.has_seg)
