"""Hostile inputs, round 2 (issue 13): each case gives a one-line error naming what is wrong, and
nothing already written (a store's pseudo-labels, an earlier training run) is lost."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from mllm3d.cli import main as mllm3d
from mllm3d.shared.scene import Query
from mllm3d.shared.store import QueryRecord, open_store
from tests.fs_helpers import tree_digest


def invoke(*args: object):
    return CliRunner().invoke(mllm3d, [str(a) for a in args], catch_exceptions=False)


def one_line_error(res) -> str:
    """The error line of a failed command (no traceback)."""
    assert res.exit_code != 0, res.output
    assert "Traceback" not in res.output, res.output
    lines = [ln for ln in res.output.splitlines() if "error" in ln.lower()]
    assert lines, res.output
    return " ".join(res.output.split())


def _add_query(store_path: Path, scene_id: str, query_id: str = "q0") -> None:
    store = open_store(store_path, "a")
    h, w = store.scene_attrs(scene_id)["image_size"]
    store.write_query(QueryRecord(
        query=Query(scene_id, query_id, "the chair"), view_index=np.array([0], np.int32),
        masks=np.ones((1, h, w), bool), seg_embeddings=np.ones((1, 4), np.float32),
        confidence=np.array([0.9], np.float32), attention=np.array([0.5], np.float32),
        has_seg=np.array([True]),
    ))


# ---------------------------------------------------------------------------------------------- 1. synth --overwrite
def test_synth_overwrite_refuses_to_delete_pseudolabels(tmp_path: Path) -> None:
    store = tmp_path / "s.zarr"
    args = ("synth", "--num-scenes", 1, "--store", store, "--queries-out", tmp_path / "q.json")
    assert invoke(*args).exit_code == 0
    sid = open_store(store).scene_ids()[0]
    _add_query(store, sid)
    before = tree_digest(store)
    res = invoke(*args, "--overwrite")
    msg = one_line_error(res)
    assert "--discard-pseudolabels" in msg and "1 pseudo-label query group" in msg and sid in msg
    assert tree_digest(store) == before
    assert open_store(store).query_ids(sid) == ["q0"]
    # explicitly asked for: the scene is rewritten and its pseudo-labels go
    res = invoke(*args, "--overwrite", "--discard-pseudolabels")
    assert res.exit_code == 0, res.output
    assert open_store(store).query_ids(sid) == []


def test_synth_overwrite_without_pseudolabels_still_rewrites(tmp_path: Path) -> None:
    store = tmp_path / "s.zarr"
    args = ("synth", "--num-scenes", 1, "--store", store, "--queries-out", tmp_path / "q.json")
    assert invoke(*args).exit_code == 0
    res = invoke(*args, "--overwrite")
    assert res.exit_code == 0 and "1 scene(s) written" in " ".join(res.output.split()), res.output


# ---------------------------------------------------------------------------------------------- 2, 3, 10. train
TINY_TRAIN = [
    "model.stem=8", "model.down=[8,16]", "model.up=[16,8]", "model.feature_dim=16", "data.batch_size=2",
    "data.val_batch_size=2", "data.val_fraction=0.34", "trainer.cpu_threads=1", "trainer.accelerator=cpu",
    "trainer.check_val_every_n_epoch=1", "data.num_workers=0", "data.queries_per_item=1",
]


@pytest.fixture(scope="module")
def toy_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.stage2_toy import build_toy_store

    return build_toy_store(tmp_path_factory.mktemp("h2train") / "toy.zarr", n_scenes=3, image_features=False)


def _train_args(store: Path, out: Path, *extra: object) -> list[object]:
    args: list[object] = ["train", "--store", store, "--out", out, "--no-progress", *extra]
    for s in (*TINY_TRAIN, "optim.epochs=1"):
        args += ["--set", s]
    return args


def _fake_previous_run(out: Path) -> None:
    (out / "checkpoints").mkdir(parents=True)
    (out / "checkpoints" / "last.ckpt").write_bytes(b"an earlier run's weights")
    (out / "config.yaml").write_text("earlier: run\n")


def test_train_into_an_earlier_run_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "run"
    _fake_previous_run(out)
    before = tree_digest(out)
    res = invoke(*_train_args(tmp_path / "no-store-needed.zarr", out))
    msg = one_line_error(res)
    assert "holds an earlier training run" in msg and "config.yaml" in msg and "--overwrite" in msg
    assert "--resume last" in msg and str(out) in msg
    assert tree_digest(out) == before


@pytest.mark.parametrize("content", [b"", b"garbage, not a torch file", None], ids=["empty", "garbage", "truncated"])
def test_resume_from_a_broken_checkpoint_names_it(tmp_path: Path, toy_store: Path, content: bytes | None) -> None:
    out = tmp_path / "run"
    (out / "checkpoints").mkdir(parents=True)
    ckpt = out / "checkpoints" / "last.ckpt"
    if content is None:  # the first half of a real torch file
        import torch

        torch.save({"state_dict": {"w": torch.zeros(1000)}, "epoch": 0}, ckpt)
        ckpt.write_bytes(ckpt.read_bytes()[: ckpt.stat().st_size // 2])
    else:
        ckpt.write_bytes(content)
    res = invoke(*_train_args(toy_store, out, "--resume", "last"))
    msg = one_line_error(res)
    assert f"{ckpt}: not a readable checkpoint" in msg or f"{ckpt}: not a Lightning checkpoint" in msg, msg


def test_resume_from_a_checkpoint_of_another_network_names_it(tmp_path: Path, toy_store: Path) -> None:
    """A Lightning checkpoint whose weights belong to another network (here: model.stem 4 where this run has 8)
    is refused before training, naming it and the first mismatching weight; the earlier run is untouched."""
    other = tmp_path / "other"
    assert invoke(*_train_args(toy_store, other), "--set", "model.stem=4").exit_code == 0  # after TINY_TRAIN's 8
    out = tmp_path / "run"
    (out / "checkpoints").mkdir(parents=True)
    ckpt = out / "checkpoints" / "last.ckpt"
    ckpt.write_bytes((other / "checkpoints" / "last.ckpt").read_bytes())
    before = tree_digest(out)
    res = invoke(*_train_args(toy_store, out, "--resume", "last"))
    msg = one_line_error(res)
    assert f"{ckpt}: its weights do not fit this run's network" in msg and "of another shape" in msg, msg
    assert "--overwrite" in msg and "resume with the config it was trained with" in msg, msg
    assert tree_digest(out) == before


def test_resume_with_fewer_epochs_than_the_checkpoint_names_it(tmp_path: Path, toy_store: Path) -> None:
    """A checkpoint at the end of epoch 2 resumed with optim.epochs=1 (Lightning: a traceback once training
    has started) is refused before training, naming the checkpoint and both epoch counts; nothing changes."""
    out = tmp_path / "run"
    assert invoke(*_train_args(toy_store, out), "--set", "optim.epochs=2").exit_code == 0
    (out / "result.json").unlink()  # as if it had been interrupted after its last epoch
    before = tree_digest(out)
    res = invoke(*_train_args(toy_store, out, "--resume", "last"))
    msg = one_line_error(res)
    ckpt = out / "checkpoints" / "last.ckpt"
    assert f"{ckpt}: already trained 2 epochs, more than this run's optim.epochs=1" in msg, msg
    assert tree_digest(out) == before


@pytest.mark.slow
def test_sigterm_during_train_exits_nonzero_and_says_how_to_resume(tmp_path: Path, toy_store: Path) -> None:
    root = Path(__file__).resolve().parent.parent
    out = tmp_path / "run"
    args = [sys.executable, "-m", "mllm3d.cli", *map(str, _train_args(toy_store, out))]
    args = [a.replace("optim.epochs=1", "optim.epochs=3") for a in args]
    env = {**os.environ, "MLLM3D_TEST_TRAIN_KILL_AT": "1:0:TERM"}
    res = subprocess.run(args, cwd=root, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 143, (res.stdout + res.stderr)[-3000:]
    assert "Traceback" not in res.stderr
    msg = " ".join(res.stderr.split())
    assert "training interrupted by SIGTERM in epoch 1" in msg and "--resume last" in msg, msg
    assert not (out / "result.json").exists()
    assert (out / "checkpoints" / "last.ckpt").is_file()


# ---------------------------------------------------------------------------------------------- 4. max depth
def test_kinect_invalid_depth_is_dropped_and_counted(tmp_path: Path) -> None:
    from PIL import Image

    from mllm3d.shared.scannet import load_scannet_scene
    from tests.shared.test_scannet import fake_scene

    d = fake_scene(tmp_path, "scene0009_00")
    depth = np.full((48, 64), 2000, np.uint16)
    depth[:5, :7] = 65535  # 35 Kinect "invalid" pixels in frame 10
    Image.fromarray(depth).save(d / "depth" / "10.png")
    with pytest.warns(UserWarning) as caught:
        scene = load_scannet_scene(d)
    msgs = [str(w.message) for w in caught if "max_depth" in str(w.message)]
    assert len(msgs) == 1 and "dropped 35 depth pixel(s) beyond max_depth=10 m" in msgs[0] and "frames [10]" in msgs[0]
    assert str(d) in msgs[0]
    v = scene.views[1]
    assert v.frame_id == 10 and float(v.depth.max()) == 2.0 and int((v.depth == 0).sum()) == 35
    assert scene.points[:, 2].max() < 3.0  # no point 65 m away in the back-projected cloud
    far = load_scannet_scene(d, max_depth=100.0)  # nothing beyond 100 m: kept, no warning
    assert float(far.views[1].depth.max()) == pytest.approx(65.535)


# ---------------------------------------------------------------------------------------------- 5. NaN vertices
def test_store_refuses_a_scene_with_non_finite_points(tmp_path: Path) -> None:
    from mllm3d.shared.errors import StoreError
    from tests.toy_store import write_toy_scene

    store = open_store(tmp_path / "s.zarr", "a")
    real = store.write_scene

    def with_nan(scene_id, points, *a, **kw):
        points = points.copy()
        points[3, 0] = np.nan
        return real(scene_id, points, *a, **kw)

    store.write_scene = with_nan  # type: ignore[method-assign]
    with pytest.raises(StoreError, match="toy0001_00: points hold NaN or infinite coordinates"):
        write_toy_scene(store)
    assert store.scene_ids() == [] and not [p for p in (tmp_path / "s.zarr" / "scenes").iterdir() if p.is_dir()]


# ---------------------------------------------------------------------------------------------- 7. every view filtered
def test_train_with_every_view_filtered_out_stops_with_the_setting_to_change(tmp_path: Path, toy_store: Path) -> None:
    out = tmp_path / "run"
    res = invoke(*_train_args(toy_store, out, "--set", "fusion.min_confidence=1.5"))
    msg = one_line_error(res)
    assert "no (point, view) pair survives the view filter" in msg and "fusion.min_confidence=1.5" in msg, msg
    assert "fusion.view_filter=false" in msg
    assert not (out / "checkpoints").exists() and not (out / "result.json").exists()


def test_predict_with_every_view_filtered_out_says_so(tmp_path: Path) -> None:
    import torch

    from mllm3d.pipeline.predict import predict_query
    from mllm3d.shared.errors import BadInputError
    from mllm3d.shared.synthetic import SyntheticSource
    from mllm3d.stage1_pseudolabel.segmenter import build_segmenter
    from mllm3d.stage2_train3d.config import load_config
    from mllm3d.stage2_train3d.fusion import FusionConfig
    from mllm3d.stage2_train3d.model import build_network
    from mllm3d.stage2_train3d.predictor import Predictor

    torch.manual_seed(0)
    source = SyntheticSource(1, seed=3)
    scene = source.load("synth_0000")
    seg = build_segmenter("synthetic", {"seed": 0, "embed_dim": 32, "miss_rate": 0.0, "hallucination_rate": 0.0})
    cfg = load_config(None, ["model.stem=8", "model.down=[8,16]", "model.up=[16,16]", "model.feature_dim=16",
                             "model.query_dim=32"])
    q = source.scene_queries("synth_0000")[0]
    with pytest.raises(BadInputError, match=r"no view survives the view filter \(3x confidence too low; "
                                            r"the checkpoint's fusion\.min_confidence=1\.5"):
        predict_query(scene, q, seg, Predictor(build_network(cfg.model), cfg), FusionConfig(min_confidence=1.5),
                      views=3, seed=0)


def test_predict_out_that_is_a_directory_is_refused(tmp_path: Path) -> None:
    (tmp_path / "ckpt.ckpt").write_bytes(b"x")
    res = invoke("predict", "--scene", "synth_0000", "--text", "x", "--target-ids", "1",
                 "--checkpoint", tmp_path / "ckpt.ckpt", "--out", tmp_path)
    msg = one_line_error(res)
    assert f"{tmp_path}: --out is an existing directory" in msg


# ---------------------------------------------------------------------------------------------- 8. copied groups
@pytest.fixture
def synth_store(tmp_path: Path) -> Path:
    store = tmp_path / "s.zarr"
    assert invoke("synth", "--num-scenes", 1, "--store", store, "--queries-out", tmp_path / "q.json").exit_code == 0
    _add_query(store, open_store(store).scene_ids()[0])
    return store


def test_copied_scene_group_is_not_listed_twice_and_check_fails(synth_store: Path) -> None:
    import shutil

    from mllm3d.pipeline.store_check import check_store

    sid = open_store(synth_store).scene_ids()[0]
    shutil.copytree(synth_store / "scenes" / sid, synth_store / "scenes" / f"{sid}.bak")
    with pytest.warns(UserWarning, match=rf"{sid}\.bak: skipped, its scene_id '{sid}' does not match the folder"):
        assert open_store(synth_store).scene_ids() == [sid]
    with pytest.warns(UserWarning):
        assert open_store(synth_store).complete_pairs() == [(sid, "q0")]
    errors = [p for p in check_store(synth_store) if p.severity == "error"]
    assert [(Path(p.where).name, "does not match the folder name" in p.message) for p in errors] == [(f"{sid}.bak", True)]
    res = invoke("inspect", "--store", synth_store, "--check")
    assert res.exit_code == 1 and "copied or renamed group" in " ".join(res.output.split())


def test_missing_scenes_group_metadata_fails_check(synth_store: Path) -> None:
    from mllm3d.pipeline.store_check import check_store

    (synth_store / "scenes" / "zarr.json").unlink()
    errors = [p for p in check_store(synth_store) if p.severity == "error"]
    assert [(p.where, p.message.startswith("group metadata file missing")) for p in errors] == [
        (str(synth_store / "scenes" / "zarr.json"), True)
    ]
    assert invoke("inspect", "--store", synth_store, "--check").exit_code == 1


# ---------------------------------------------------------------------------------------------- 9. long names
def test_store_keys_are_bounded_and_short_keys_unchanged() -> None:
    from mllm3d.shared.store import MAX_KEY_LEN, safe_key

    assert safe_key("scene0001_00") == "scene0001_00"  # old stores keep their names
    assert safe_key("a b") == "a_b~" + __import__("hashlib").sha1(b"a b").hexdigest()[:8]
    long_a, long_b = "s" * 250, "s" * 249 + "t"
    ka, kb = safe_key(long_a), safe_key(long_b)
    assert len(ka) == MAX_KEY_LEN and len(kb) == MAX_KEY_LEN and ka != kb and ka.startswith("s" * 80)


def test_a_300_character_query_id_and_250_character_scene_id_are_written_and_read(tmp_path: Path) -> None:
    from mllm3d.stage1_pseudolabel.leases import lease_path
    from tests.toy_store import write_toy_scene

    sid, qid = "scene_" + "x" * 244, "q" * 300
    store = open_store(tmp_path / "s.zarr", "a")
    write_toy_scene(store, sid)
    _add_query(tmp_path / "s.zarr", sid, qid)
    store = open_store(tmp_path / "s.zarr")
    assert store.scene_ids() == [sid] and store.query_ids(sid) == [qid] and store.complete_pairs() == [(sid, qid)]
    assert store.read_query(sid, qid).query.query_id == qid
    assert len(lease_path(store, sid).name) < 255
    from mllm3d.pipeline.store_check import check_store

    assert [p for p in check_store(tmp_path / "s.zarr") if p.severity == "error"] == []


def test_a_long_id_written_before_keys_were_bounded_still_opens(tmp_path: Path) -> None:
    import os

    from mllm3d.shared.store import _unbounded_key, safe_key
    from tests.toy_store import write_toy_scene

    sid = "scene_" + "y" * 120
    store = open_store(tmp_path / "s.zarr", "a")
    write_toy_scene(store, sid)
    os.rename(tmp_path / "s.zarr" / "scenes" / safe_key(sid), tmp_path / "s.zarr" / "scenes" / _unbounded_key(sid))
    store = open_store(tmp_path / "s.zarr")
    assert store.scene_ids() == [sid] and store.read_scene(sid).scene_id == sid


# ---------------------------------------------------------------------------------------------- 3b. SIGTERM pseudolabel
def test_sigterm_during_pseudolabel_says_what_was_published_and_resumes(tmp_path: Path) -> None:
    from tests.stage1_helpers import hidden_entries, run_cli

    store = tmp_path / "store.zarr"
    args = ["--source", "synthetic:1:0", "--store", str(store), "--backend", "synthetic"]
    res = run_cli(args, env={"MLLM3D_TEST_KILL_AT": "query:2:after_publish:TERM"})
    assert res.returncode == 143, res.stderr[-3000:]
    assert "Traceback" not in res.stderr
    msg = " ".join(res.stderr.split())
    assert (f"pseudolabel interrupted by SIGTERM; the store {store} holds 1 complete scene group(s) and "
            "2 complete query group(s)") in msg and "rerun the same command to resume" in msg, msg
    assert hidden_entries(store) == []  # no temporary group, no lease left behind
    assert len(open_store(store).complete_pairs()) == 2
    again = run_cli(args)
    assert again.returncode == 0, again.stderr[-3000:]
    assert len(open_store(store).complete_pairs()) > 2


def test_run_config_max_depth_reaches_the_scannet_reader(tmp_path: Path) -> None:
    from mllm3d.shared.errors import BadInputError
    from mllm3d.stage1_pseudolabel.run_config import RunConfig
    from mllm3d.stage1_pseudolabel.runner import open_run_source
    from tests.shared.test_scannet import fake_scene

    fake_scene(tmp_path / "scans", "scene0009_00")
    assert RunConfig().max_depth == 10.0
    src = open_run_source(RunConfig(source=f"scannet:{tmp_path / 'scans'}", max_depth=4.5))
    assert src.options["max_depth"] == 4.5
    with pytest.raises(BadInputError, match="max_depth must be a number of metres > 0, got 0"):
        RunConfig(max_depth=0)


# ---------------------------------------------------------------------------------------------- 9b. long scene folder
def test_a_250_character_scene_folder_runs_through_stage1(tmp_path: Path) -> None:
    from mllm3d.shared.scannet import ScanNetSource
    from mllm3d.stage1_pseudolabel.runner import run_pseudolabels
    from tests.shared.test_scannet import fake_scene
    from tests.stage1_helpers import hidden_entries, run_config
    from tests.test_bad_inputs import StubSegmenter

    sid = "scene" + "7" * 245
    fake_scene(tmp_path / "scans", sid)
    q = Query(sid, "q" * 300, "the red half of the wall")
    summary = run_pseudolabels(run_config(tmp_path / "store.zarr"), source=ScanNetSource(tmp_path / "scans"),
                               queries=[q], segmenter=StubSegmenter())
    assert summary.ok and summary.queries_written == 1, summary.lines()
    assert open_store(tmp_path / "store.zarr").complete_pairs() == [(sid, q.query_id)]
    assert hidden_entries(tmp_path / "store.zarr") == []
