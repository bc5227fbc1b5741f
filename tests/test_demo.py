"""The demo end to end at the smallest size (2 scenes: 1 trained on, 1 held out; 1 epoch), its re-run, and
predict on its checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from mllm3d.shared.ply import read_ply

from mllm3d.pipeline.demo import demo_cmd
from mllm3d.pipeline.predict import predict_cmd

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
    assert names == ["2D projection (no 3D training)", "trained 3D network"]
    n = metrics["num_pairs"]
    assert n >= 8 and all(len(r["queries"]) == n for r in metrics["rows"])
    # scored on the held-out scene only, never on the one it was trained on
    scored = {q["scene_id"] for r in metrics["rows"] for q in r["queries"]}
    assert len(scored) == 1 and scored < {"synth_0000", "synth_0001"}
    assert metrics["split"] == f"1 held-out scenes (not trained on): {scored.pop()}"
    assert metrics["train_queries"] > 0 and "held-out queries" in output
    assert "Acc@0.25" in output and "contact sheet" in output
    assert output.rfind("baseline vs trained 3D network") > output.rfind("prediction PLY")  # ends with metrics
    ply = read_ply(out / "prediction.ply")
    assert set(ply) >= {"x", "y", "z", "red", "green", "blue", "score", "mask"}


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
