"""open_source: spec strings -> scene sources."""

from __future__ import annotations

import pytest

from mllm3d.shared.errors import BadInputError
from mllm3d.shared.sources import open_source
from mllm3d.shared.synthetic import SyntheticSource


def test_synthetic_specs():
    default = open_source("synthetic")
    assert isinstance(default, SyntheticSource)
    assert (default.num_scenes, default.seed) == (6, 0)
    three = open_source("synthetic:3")
    assert (three.num_scenes, three.seed) == (3, 0)
    seeded = open_source("synthetic:2:17")
    assert (seeded.num_scenes, seeded.seed) == (2, 17)
    assert seeded.scene_ids() == ["synth_0000", "synth_0001"]


@pytest.mark.parametrize("spec", ["synthetic:x", "synthetic:2:y", "synthetic:0", "synthetic:1:2:3"])
def test_bad_synthetic_specs(spec):
    with pytest.raises(BadInputError, match="source spec"):
        open_source(spec)


def test_unknown_spec_and_missing_directory(tmp_path):
    with pytest.raises(BadInputError, match="unknown scene source 'nonsense'"):
        open_source("nonsense")
    with pytest.raises(BadInputError, match="not a directory"):
        open_source(f"scannet:{tmp_path / 'missing'}")


def test_scannet_specs(tmp_path):
    from mllm3d.shared.scannet import ScanNetSource
    from tests.shared.test_scannet import fake_scene

    fake_scene(tmp_path, name="scannet_scene0007_00")
    for spec in (f"scannet:{tmp_path}", str(tmp_path), str(tmp_path / "scannet_scene0007_00")):
        src = open_source(spec)
        assert isinstance(src, ScanNetSource) and src.scene_ids() == ["scene0007_00"]


def test_scannet_spec_options_and_caller_options(tmp_path):
    from tests.shared.test_scannet import fake_scene

    d = fake_scene(tmp_path, name="scene0008_00", frames=(0, 10, 20, 30, 40))
    src = open_source(f"scannet:{d}?frame_stride=2&max_frames=2")
    assert src.options["frame_stride"] == 2 and src.options["max_frames"] == 2
    assert src.load("scene0008_00").views.frame_ids() == [0, 20]
    assert open_source(f"{d}?frame_stride=4").load("scene0008_00").views.frame_ids() == [0, 40]
    assert open_source(str(d), frame_stride=3, max_frames=None).options["frame_stride"] == 3
    assert open_source(f"scannet:{d}?frame_stride=2", frame_stride=2).options["frame_stride"] == 2  # agree
    for spec, kw, match in (
        (f"scannet:{d}?frame_stride=2", {"frame_stride": 3}, "give it in one place"),
        (f"scannet:{d}?stride=2", {}, "unknown option 'stride=2'"),
        (f"scannet:{d}?frame_stride=x", {}, "frame_stride must be an integer"),
        (f"scannet:{d}?frame_stride=0", {}, "frame_stride must be an integer >= 1"),
        ("synthetic:2", {"frame_stride": 20}, "only apply to ScanNet sources"),
    ):
        with pytest.raises(BadInputError, match=match):
            open_source(spec, **kw)
    assert open_source("synthetic:1", frame_stride=1, max_frames=None).num_scenes == 1  # no-op values are fine
