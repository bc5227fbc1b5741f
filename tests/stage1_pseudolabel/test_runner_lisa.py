"""``mllm3d pseudolabel --backend lisa`` end to end with the tiny random-weight LISA checkpoint."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from mllm3d.shared.annotations import load_queries, save_queries
from mllm3d.shared.scannet import ScanNetSource
from mllm3d.shared.store import open_store
from mllm3d.shared.synthetic import SyntheticSource
from mllm3d.stage1_pseudolabel.cli import pseudolabel
from mllm3d.stage1_pseudolabel.runner import run_pseudolabels
from tests.lisa_helpers import tiny_checkpoint
from tests.stage1_helpers import hidden_entries, run_config, snapshot

pytestmark = pytest.mark.slow


def check_valid(store_path: Path, k: int, image_size: tuple[int, int]) -> None:
    store = open_store(store_path)
    assert store.attrs["segmenter"]["name"] == "lisa"
    for sid, qid in store.complete_pairs():
        rec = store.read_query(sid, qid)
        assert rec.segmenter == "lisa" and rec.masks.shape == (k, *image_size)
        assert rec.seg_embeddings.ndim == 2 and rec.seg_embeddings.shape[0] == k
        for arr in (rec.seg_embeddings, rec.confidence, rec.attention):
            assert np.all(np.isfinite(arr))
        assert np.all((rec.view_index >= 0) & (rec.view_index < store.read_scene(sid).num_views))
        assert len(rec.generated_text) == k
    assert hidden_entries(store_path) == []


def test_cli_with_tiny_lisa_on_a_synthetic_scene(tmp_path: Path) -> None:
    ckpt = tiny_checkpoint()
    qfile = save_queries(tmp_path / "q.json", SyntheticSource(1, seed=0).scene_queries("synth_0000")[:2])
    common = [
        "--source",
        "synthetic:1:0",
        "--queries",
        str(qfile),
        "--backend",
        "lisa",
        "--checkpoint",
        str(ckpt),
        "--device",
        "cpu",
        "--dtype",
        "float32",
        "--decoding",
        "forced",
        "--views",
        "1",
        "--no-progress",
    ]
    res = CliRunner().invoke(pseudolabel, [*common, "--store", str(tmp_path / "a.zarr")])
    assert res.exit_code == 0, res.output
    assert "written: 2 queries, 1 scene groups" in res.output
    assert len(open_store(tmp_path / "a.zarr").complete_pairs()) == 2
    check_valid(tmp_path / "a.zarr", 1, (120, 160))
    # float32 on CPU: a second run gives the same store, byte for byte
    assert CliRunner().invoke(pseudolabel, [*common, "--store", str(tmp_path / "b.zarr")]).exit_code == 0
    assert snapshot(tmp_path / "a.zarr") == snapshot(tmp_path / "b.zarr")
    again = CliRunner().invoke(pseudolabel, [*common, "--store", str(tmp_path / "a.zarr")])
    assert again.exit_code == 0 and "nothing new to write" in again.output


def test_real_scannet_fixture_through_tiny_lisa(tmp_path: Path, scannet_scene_dir: Path) -> None:
    source = ScanNetSource(scannet_scene_dir, max_frames=4)
    queries = load_queries(scannet_scene_dir / "queries_scene0378_00.json")
    assert len(queries) == 6 and {q.scene_id for q in queries} == {"scene0378_00"}
    cfg = run_config(
        tmp_path / "s.zarr", backend="lisa", backend_config={"checkpoint": str(tiny_checkpoint())}, views=2
    )
    summary = run_pseudolabels(cfg, source=source, queries=queries)
    assert summary.ok and summary.queries_written == 6, summary.lines()
    store = open_store(tmp_path / "s.zarr")
    assert store.complete_pairs() == sorted(("scene0378_00", q.query_id) for q in queries)
    scene = store.read_scene("scene0378_00")
    assert scene.image_size == (480, 640) and scene.num_views == 4 and scene.num_points > 1000
    check_valid(tmp_path / "s.zarr", 2, (480, 640))
