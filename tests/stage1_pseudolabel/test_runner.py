"""The Stage 1 runner on tiny synthetic scenes: fill, rerun, resume, unknown scenes, failures, leases."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from mllm3d.shared.errors import StoreError
from mllm3d.shared.scene import Query
from mllm3d.shared.store import open_store
from mllm3d.stage1_pseudolabel.cli import pseudolabel
from mllm3d.stage1_pseudolabel.leases import LeaseInfo, lease_path, pid_alive
from mllm3d.stage1_pseudolabel.runner import run_pseudolabels
from mllm3d.stage1_pseudolabel.synthetic_backend import build
from mllm3d.stage1_pseudolabel.view_sampling import sample_views, usable_frames
from tests.stage1_helpers import held_lease, hidden_entries, run_config, snapshot, tiny_source


@pytest.fixture(scope="module")
def source():
    return tiny_source(2)


@pytest.fixture(scope="module")
def filled(tmp_path_factory: pytest.TempPathFactory, source) -> Path:
    path = tmp_path_factory.mktemp("filled") / "store.zarr"
    cfg = run_config(path, backend_config={"image_features": True, "feature_stride": 8})
    summary = run_pseudolabels(cfg, source=source)
    assert summary.ok and summary.queries_written == len(source.queries())
    return path


def test_fills_the_store(filled: Path, source) -> None:
    store = open_store(filled)
    expected = sorted((q.scene_id, q.query_id) for q in source.queries())
    assert store.complete_pairs() == expected
    assert store.attrs["segmenter"]["name"] == "synthetic"
    scene = source.load("synth_0001")
    q = source.scene_queries("synth_0001")[1]
    rec = store.read_query(q.scene_id, q.query_id)
    choice = sample_views(usable_frames(scene.views, 0.1), 4, 0, q.scene_id, q.query_id)
    assert np.array_equal(rec.view_index, choice.view_index) and rec.view_seed == choice.view_seed
    assert rec.masks.shape == (4, 48, 64) and rec.seg_embeddings.shape == (4, 256)
    assert rec.image_features.shape == (4, 32, 6, 8)
    assert rec.segmenter == "synthetic" and rec.query.text == q.text and rec.query.target_ids == q.target_ids
    # same outputs as calling the backend directly on those views
    seg = build({"image_features": True, "feature_stride": 8})
    for j, vi in enumerate(rec.view_index):
        direct = seg.segment_view(scene.views[int(vi)], [q])
        r = direct.results[0]
        assert np.array_equal(rec.masks[j], r.mask) and rec.has_seg[j] == r.has_seg
        assert np.allclose(rec.seg_embeddings[j], r.seg_embedding, atol=2e-3)
        assert rec.confidence[j] == np.float32(r.confidence)
        assert np.allclose(rec.image_features[j], direct.image_features, atol=2e-3)
    # masks follow the targets: good overlap with the GT instance on average
    stored = store.read_scene("synth_0001")
    assert stored.num_views == 6 and stored.image_size == (48, 64)
    assert hidden_entries(filled) == []


def test_rerun_writes_nothing(filled: Path, source) -> None:
    before = {p: p.stat().st_mtime_ns for p in filled.rglob("*")}
    summary = run_pseudolabels(
        run_config(filled, backend_config={"image_features": True, "feature_stride": 8}), source=source
    )
    assert summary.ok and summary.nothing_new
    assert summary.queries_skipped_complete == len(source.queries()) and summary.scenes_complete == 2
    assert any("nothing new" in line for line in summary.lines())
    assert {p: p.stat().st_mtime_ns for p in filled.rglob("*")} == before


def test_resume_after_interrupted_write(tmp_path: Path, filled: Path, source) -> None:
    import shutil

    store_path = tmp_path / "store.zarr"
    shutil.copytree(filled, store_path)
    store = open_store(store_path)
    sid, qid = store.complete_pairs()[2]
    qdir = store.query_dir(sid, qid)
    # simulate a writer killed mid-write: its group is gone, a half-written temp dir is left
    shutil.rmtree(qdir)
    dead_pid = 2**22 + 12345
    tmp = qdir.parent / f".tmp-{qdir.name}.{socket.gethostname()}-{dead_pid}-deadbeef"
    (tmp / "masks").mkdir(parents=True)
    (tmp / "zarr.json").write_text('{"zarr_format": 3, "node_type": "group", "attributes": {}}')
    assert not open_store(store_path).has_query(sid, qid)
    summary = run_pseudolabels(
        run_config(store_path, backend_config={"image_features": True, "feature_stride": 8}), source=source
    )
    assert summary.ok and summary.queries_written == 1 and summary.temporaries_removed == 1
    assert summary.queries_skipped_complete == len(source.queries()) - 1
    assert hidden_entries(store_path) == []
    assert snapshot(store_path) == snapshot(filled)


def test_unknown_scene_queries_are_counted_and_skipped(tmp_path: Path, source) -> None:
    qs = source.scene_queries("synth_0000") + [
        Query("scene9999_00", "x1", "a chair", [1]),
        Query("scene9999_00", "x2", "a desk", [2]),
        Query("nowhere", "x3", "a bed", [3]),
    ]
    summary = run_pseudolabels(run_config(tmp_path / "s.zarr"), source=source, queries=qs)
    assert summary.ok and summary.queries_written == len(qs) - 3
    assert summary.unknown_scene_queries == 3 and summary.unknown_scenes == ["nowhere", "scene9999_00"]
    assert any("not in the source: 3 queries" in line for line in summary.lines())
    assert open_store(tmp_path / "s.zarr").scene_ids() == ["synth_0000"]


class BrokenSource:
    """Wraps a source; loading ``bad`` raises."""

    name = "broken"

    def __init__(self, inner, bad: str) -> None:
        self.inner, self.bad = inner, bad

    def scene_ids(self) -> list[str]:
        return self.inner.scene_ids()

    def queries(self) -> list[Query]:
        return self.inner.queries()

    def load(self, scene_id: str):
        if scene_id == self.bad:
            raise OSError(f"disk error reading {scene_id}/depth/0.png")
        return self.inner.load(scene_id)


def test_one_failing_scene_does_not_stop_the_others(tmp_path: Path) -> None:
    src = tiny_source(3)
    summary = run_pseudolabels(run_config(tmp_path / "s.zarr"), source=BrokenSource(src, "synth_0001"))
    assert not summary.ok
    assert [f.scene_id for f in summary.failed] == ["synth_0001"]
    assert "disk error reading synth_0001/depth/0.png" in summary.failed[0].reason
    store = open_store(tmp_path / "s.zarr")
    assert store.scene_ids() == ["synth_0000", "synth_0002"]
    assert summary.queries_written == len(src.scene_queries("synth_0000")) + len(
        src.scene_queries("synth_0002")
    )
    # a later good run finishes the failed scene only
    again = run_pseudolabels(run_config(tmp_path / "s.zarr"), source=src)
    assert (
        again.ok
        and again.queries_written == len(src.scene_queries("synth_0001"))
        and again.scenes_complete == 2
    )


def test_views_all_max_scenes_and_shards(tmp_path: Path, source) -> None:
    summary = run_pseudolabels(run_config(tmp_path / "a.zarr", views="all", max_scenes=1), source=source)
    assert summary.scenes_assigned == 1
    store = open_store(tmp_path / "a.zarr")
    sid, qid = store.complete_pairs()[0]
    assert store.read_query(sid, qid).view_index.tolist() == list(range(6))
    s1 = run_pseudolabels(run_config(tmp_path / "b.zarr", shard="1/2"), source=source)
    assert s1.shard == "1/2" and open_store(tmp_path / "b.zarr").scene_ids() == ["synth_0001"]


def test_mixed_segmenter_configs_are_refused(tmp_path: Path, source) -> None:
    path = tmp_path / "s.zarr"
    run_pseudolabels(run_config(path, max_scenes=1), source=source)
    with pytest.raises(StoreError, match="allow-mixed-segmenters"):
        run_pseudolabels(run_config(path, backend_config={"miss_rate": 0.5}), source=source)
    s = run_pseudolabels(
        run_config(path, backend_config={"miss_rate": 0.5}, allow_mixed_segmenters=True), source=source
    )
    assert s.ok and s.scenes_processed == 1


def test_a_lease_held_by_a_running_worker_is_skipped_until_it_is_killed(tmp_path: Path, source) -> None:
    path = tmp_path / "s.zarr"
    run_pseudolabels(run_config(path, max_scenes=1), source=source)  # creates the store
    store = open_store(path)
    with held_lease(lease_path(store, "synth_0001")) as holder:
        s = run_pseudolabels(run_config(path), source=source)
        assert s.ok and s.scenes_leased == ["synth_0001"] and not store.has_scene("synth_0001")
        assert any("leased by a running worker" in line for line in s.lines())
        holder.kill()  # kill -9: the kernel drops its lock, its lease file stays behind
        holder.wait(timeout=30)
        assert lease_path(store, "synth_0001").is_file()
        s = run_pseudolabels(run_config(path), source=source)
    assert s.ok and s.leases_taken_over == 1 and s.scenes_leased == [] and store.has_scene("synth_0001")
    assert hidden_entries(path) == []


def test_a_dead_workers_lease_naming_a_reused_live_pid_does_not_block(tmp_path: Path, source) -> None:
    """The lease file of a killed worker whose pid now belongs to a live unrelated process (our parent)."""
    path = tmp_path / "s.zarr"
    run_pseudolabels(run_config(path, max_scenes=1), source=source)
    store = open_store(path)
    reused = os.getppid()
    assert reused > 1 and pid_alive(reused)
    lease_path(store, "synth_0001").write_text(LeaseInfo(socket.gethostname(), reused, "killed", 0.0).to_json())
    s = run_pseudolabels(run_config(path), source=source)
    assert s.ok and s.scenes_leased == [] and s.leases_taken_over == 1
    assert store.has_scene("synth_0001") and all(
        store.has_query("synth_0001", q.query_id) for q in source.queries() if q.scene_id == "synth_0001")
    assert any("left by killed workers" in line for line in s.lines())
    assert hidden_entries(path) == []


def test_a_lease_file_deleted_under_a_worker_stops_that_scene(tmp_path: Path, source) -> None:
    """Deleting a held lease file by hand: the holder notices before its next frame (another worker may take it)."""
    from mllm3d.stage1_pseudolabel.leases import SceneLease

    path = tmp_path / "s.zarr"
    run_pseudolabels(run_config(path, max_scenes=1), source=source)
    lease = SceneLease(lease_path(open_store(path), "synth_0001"))
    assert lease.try_acquire() and not lease.lost
    lease.path.unlink()
    assert lease.lost
    other = SceneLease(lease.path)
    assert other.try_acquire()  # a new file, a new lock
    assert not other.lost and lease.lost
    lease.release()
    assert other.path.is_file()  # releasing the lost lease leaves the new holder's file alone
    other.release()
    assert not other.path.exists()


def test_cli_writes_summary_and_fails_on_errors(tmp_path: Path) -> None:
    cfg = tmp_path / "backend.yaml"
    cfg.write_text("backend_config:\n  miss_rate: 0.0\n  embed_dim: 32\n")
    out = tmp_path / "summary.json"
    res = CliRunner().invoke(
        pseudolabel,
        [
            "--source",
            "synthetic:1:0",
            "--store",
            str(tmp_path / "s.zarr"),
            "--backend-config",
            str(cfg),
            "--views",
            "2",
            "--seed",
            "5",
            "--no-progress",
            "--summary-json",
            str(out),
        ],
    )
    assert res.exit_code == 0, res.output
    data = json.loads(out.read_text())
    assert data["config"]["views"] == 2 and data["config"]["backend_config"] == {
        "miss_rate": 0.0,
        "embed_dim": 32,
    }
    assert data["summary"]["ok"] and data["summary"]["queries_written"] > 0
    store = open_store(tmp_path / "s.zarr")
    rec = store.read_query(*store.complete_pairs()[0])
    assert rec.num_views == 2 and rec.seg_embeddings.shape == (2, 32) and rec.has_seg.all()
    bad = CliRunner().invoke(
        pseudolabel, ["--source", "synthetic:1:0", "--store", str(tmp_path / "s.zarr"), "--views", "0"]
    )
    assert bad.exit_code != 0 and "--views" in bad.output


def test_cuda_local_device_follows_torchrun_local_rank() -> None:
    from mllm3d.stage1_pseudolabel.runner import expand_device

    assert expand_device({"device": "cuda:local", "dtype": "bfloat16"}, {"LOCAL_RANK": "3"}) == {
        "device": "cuda:3",
        "dtype": "bfloat16",
    }
    assert expand_device({"device": "cuda:local"}, {})["device"] == "cuda:0"
    assert expand_device({"device": "cuda:1"}, {"LOCAL_RANK": "3"})["device"] == "cuda:1"
    assert expand_device({}, {"LOCAL_RANK": "3"}) == {}


def test_a_lease_path_that_cannot_be_locked_stops_the_run_naming_it(tmp_path: Path, source) -> None:
    path = tmp_path / "s.zarr"
    run_pseudolabels(run_config(path, max_scenes=1), source=source)
    bad = lease_path(open_store(path), "synth_0001")
    bad.mkdir()  # a folder where the lease file goes
    with pytest.raises(StoreError, match=r"\.lease-synth_0001: cannot take the scene lease"):
        run_pseudolabels(run_config(path), source=source)
    assert bad.is_dir() and open_store(path).scene_ids() == ["synth_0000"]
