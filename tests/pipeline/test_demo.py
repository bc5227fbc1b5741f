"""The demo end to end at the smallest size (2 scenes: 1 trained on, 1 held out; 1 epoch), its re-run, and
predict on its checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from mllm3d.pipeline.demo import demo_cmd
from mllm3d.pipeline.predict import predict_cmd
from mllm3d.shared.ply import read_ply

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("demo")
    res = CliRunner(env={"COLUMNS": "200"}).invoke(demo_cmd, ["--quick", "--out", str(out)])
    assert res.exit_code == 0, res.output + repr(res.exception)
    return out, res.output


def test_demo_writes_everything(demo_dir) -> None:
    out, output = demo_dir
    for name in ("store.zarr", "run/config.yaml", "metrics.json", "contact_sheet.png", "fused_pseudolabel.ply",
                 "prediction.ply"):
        assert (out / name).exists(), name
    metrics = json.loads((out / "metrics.json").read_text())
    names = [r["name"] for r in metrics["rows"]]
    assert names == ["2D projection (no 3D training)", "trained 3D network", "network + test-view evidence"]
    n = metrics["num_pairs"]
    assert n >= 8 and all(len(r["queries"]) == n for r in metrics["rows"])
    # scored on the held-out scene only, never on the one it was trained on
    scored = {q["scene_id"] for r in metrics["rows"] for q in r["queries"]}
    assert len(scored) == 1 and scored < {"synth_0000", "synth_0001"}
    assert metrics["split"] == f"1 held-out scenes (not trained on): {scored.pop()}"
    assert metrics["train_queries"] > 0 and "held-out queries" in output
    assert "(95 % CI, paired bootstrap)" in output
    assert "Acc@0.25" in output and "contact sheet" in output
    assert output.rfind("baseline vs trained 3D network") > output.rfind("prediction PLY")  # ends with metrics
    ply = read_ply(out / "prediction.ply")
    assert set(ply) >= {"x", "y", "z", "red", "green", "blue", "score", "mask"}


def test_demo_writes_the_3d_view_and_says_how_to_open_it(demo_dir) -> None:
    pytest.importorskip("rerun")
    from mllm3d.shared.store import open_store
    from tests.rrd_helpers import read_rrd

    out, output = demo_dir
    rrd = out / "view.rrd"
    assert f"rerun {rrd}" in output and "--spawn" in output
    assert "contact sheet (query text, each view's mask" in output
    ents = read_rrd(rrd)
    # the showcase query: a held-out one, named in the recording's query document
    doc = ents["/query"]["TextDocument:text"]
    metrics = json.loads((out / "metrics.json").read_text())
    scored = {(q["scene_id"], q["query_id"]): q["iou"] for q in metrics["rows"][1]["queries"]}
    (sid, qid), = [k for k in scored if f"scene {k[0]}, query {k[1]}," in doc]
    store = open_store(out / "store.zarr", "r")
    assert doc.startswith(f"# {store.query_attrs(sid, qid)['text']}")
    n = store.read_scene(sid).num_points
    for layer in ("rgb", "fused_prob", "projection_mask", "ground_truth", "network_score", "network_mask"):
        assert len(ents[f"/world/scene/{layer}"]["Points3D:positions"]) == n, layer
    k = store.read_query(sid, qid, with_features=False).num_views
    assert {e for e in ents if e.startswith("/world/views/") and e.count("/") == 3} == {
        f"/world/views/{i}" for i in range(k)}
    # the network's layer is the evaluated network's: its IoU is the one the evaluation scored
    assert ents["/metrics/network_iou"]["Scalars:scalars"] == pytest.approx([scored[sid, qid]])
    base = {(q["scene_id"], q["query_id"]): q["iou"] for q in metrics["rows"][0]["queries"]}
    assert ents["/metrics/projection_iou"]["Scalars:scalars"] == pytest.approx([base[sid, qid]])


def test_demo_without_the_viz_extra_says_how_to_add_it(demo_dir, monkeypatch) -> None:
    import sys

    out, _ = demo_dir
    (out / "view.rrd").write_bytes(b"stale")
    monkeypatch.setitem(sys.modules, "rerun", None)  # as if rerun-sdk were not installed
    res = CliRunner(env={"COLUMNS": "200"}).invoke(demo_cmd, ["--quick", "--out", str(out)])
    assert res.exit_code == 0, res.output
    lines = [ln for ln in res.output.splitlines() if "3D view:" in ln]
    assert lines == ['3D view: not written (rerun-sdk is not installed); add it with: pip install "mllm-for3d[viz]"']
    assert not (out / "view.rrd").exists(), "no stale recording beside this run's outputs"


def test_demo_rerun_reuses_store_and_run(demo_dir) -> None:
    out, _ = demo_dir
    ckpt_before = sorted((out / "run" / "checkpoints").iterdir())
    res = CliRunner(env={"COLUMNS": "200"}).invoke(demo_cmd, ["--quick", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "reused" in res.output
    assert sorted((out / "run" / "checkpoints").iterdir()) == ckpt_before


def test_predict_cli_on_the_demo_checkpoint(demo_dir, tmp_path: Path) -> None:
    out, _ = demo_dir
    ckpt = json.loads((out / "run" / "result.json").read_text())
    path = ckpt["checkpoint"]
    ply = tmp_path / "new.ply"
    # object 2: its 3 sampled views pass the view filter (object 1's do not, which predict now refuses)
    args = ["--source", "synthetic:1:0", "--scene", "synth_0000", "--text", "the thing I want", "--target-ids", "2",
            "--checkpoint", path, "--out", str(ply), "--views", "3"]
    res = CliRunner(env={"COLUMNS": "200"}).invoke(predict_cmd, args)
    assert res.exit_code == 0, res.output + repr(res.exception)
    data = read_ply(ply)
    assert f"points: {data['x'].shape[0]}" in res.output and "mean score" in res.output
    res = CliRunner().invoke(predict_cmd, args[:6] + args[8:])  # no --target-ids with the synthetic backend
    assert res.exit_code != 0 and "--target-ids" in res.output
