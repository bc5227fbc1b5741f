"""``mllm3d view``: the Rerun recording of a toy query, read back with rerun's own reader."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from tests.rrd_helpers import read_rrd
from tests.toy_store import SCENE, H, W, build_toy_store

rr = pytest.importorskip("rerun")


def test_view_recording_entities_counts_and_values(tmp_path: Path) -> None:
    from mllm3d.pipeline.view import view_cmd

    store_path = tmp_path / "s.zarr"
    store = build_toy_store(store_path)
    n = store.read_scene(SCENE).num_points
    pred = np.zeros(n, np.float32)
    pred[: n // 2] = 0.9
    np.save(tmp_path / "pred.npy", pred)
    out = tmp_path / "v.rrd"
    res = CliRunner().invoke(view_cmd, ["--store", str(store_path), "--scene", SCENE, "--query", "table",
                                        "--prediction", str(tmp_path / "pred.npy"), "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert f"rerun {out}" in res.output
    ents = read_rrd(out)
    for layer in ("rgb", "fused_prob", "projection_mask", "ground_truth", "network_score", "network_mask"):
        assert len(ents[f"/world/scene/{layer}"]["Points3D:positions"]) == n == H * W
    # 3 posed cameras with the toy's intrinsics and identity poses, a mask and an image each
    for i in range(3):
        cam = ents[f"/world/views/{i}"]
        k = np.asarray(cam["Pinhole:image_from_camera"], float).reshape(3, 3).T  # stored column-major
        assert k[0, 0] == k[1, 1] == 30.0 and k[0, 2] == pytest.approx((W - 1) / 2)
        assert np.ravel(cam["Pinhole:resolution"]).tolist() == [W, H]
        assert np.allclose(np.ravel(cam["Transform3D:translation"]), [0, 0, 0])
        assert f"/world/views/{i}/mask" in ents and f"/world/views/{i}/image" in ents
    assert not [e for e in ents if e.startswith("/world/views/3")]
    # α of the third view is 0.1 and it is dropped by the view filter (ω = 0)
    assert ents["/world/views/2/alpha"]["Scalars:scalars"] == pytest.approx([0.1])
    assert ents["/world/views/2/omega"]["Scalars:scalars"] == pytest.approx([0.0])
    assert "dropped: confidence 0.10 < 0.5" in ents["/world/views/2/status"]["TextDocument:text"]
    assert "kept" in ents["/world/views/0/status"]["TextDocument:text"]
    assert "text of table" in ents["/query"]["TextDocument:text"]
    # the table query's views mask columns 8..19: IoU with instance 2 (8 columns) = 8/12
    assert ents["/metrics/projection_iou"]["Scalars:scalars"] == pytest.approx([8 / 12])
    # the prediction marks the top 12 rows; instance 2 = columns 8..15: 12*8 / (12*32 + 12*8)
    assert ents["/metrics/network_iou"]["Scalars:scalars"] == pytest.approx([96 / (12 * 32 + 12 * 8)])


def test_view_without_rerun_says_how_to_install(tmp_path: Path, monkeypatch) -> None:
    import sys

    from mllm3d.pipeline.view import view_cmd

    monkeypatch.setitem(sys.modules, "rerun", None)
    res = CliRunner().invoke(view_cmd, ["--store", str(tmp_path), "--scene", SCENE])
    assert res.exit_code != 0 and 'pip install "mllm-for3d[viz]"' in res.output
