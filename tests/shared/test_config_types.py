"""Typed Stage 2 config: a wrong key, type or impossible value fails at load time, naming file, key and value."""

from __future__ import annotations

from pathlib import Path

import pytest

from mllm3d.shared.errors import BadInputError
from mllm3d.stage2_train3d.config import load_config

DEFAULT = Path(__file__).resolve().parents[2] / "configs" / "train" / "default.yaml"


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("optim.lr=abc", "optim.lr = 'abc': expected a number"),
        ("model.stem=abc", "model.stem = 'abc': expected an integer"),
        ("data.batch_size=2.5", "data.batch_size = 2.5: expected an integer"),
        ("data.batch_size=0", "data.batch_size = 0: expected an integer >= 1"),
        ("data.num_workers=-1", "data.num_workers = -1: expected an integer >= 0"),
        ("optim.epochs=0", "optim.epochs = 0: expected an integer >= 1"),
        ("optim.lr=0", "optim.lr = 0.0: expected a number > 0"),
        ("loss.spatial=maybe", "loss.spatial = 'maybe': expected true or false"),
        ("model.down=[32, x]", "model.down[1] = 'x': expected an integer"),
        ("data.val_scenes=a", "data.val_scenes = 'a': expected a list of str"),
        ("data.val_fraction=1.5", "data.val_fraction = 1.5: expected a number in [0, 1)"),
        ("loss.spatial_weight=-1", "loss.spatial_weight = -1.0: expected a number >= 0"),
        ("model=3", "model must be a mapping, got 3"),
    ],
)
def test_bad_values_fail_at_load_naming_file_key_and_value(override: str, message: str) -> None:
    with pytest.raises(BadInputError) as err:
        load_config(DEFAULT, [override])
    text = str(err.value)
    assert text.startswith(f"{DEFAULT}: ") and message in text and "\n" not in text


def test_numbers_yaml_reads_as_strings_are_converted() -> None:
    cfg = load_config(DEFAULT, ["optim.lr=1e-3", "data.voxel_size=5e-2", "optim.epochs=3.0"])
    assert cfg.optim.lr == 0.001 and cfg.data.voxel_size == 0.05
    assert cfg.optim.epochs == 3 and isinstance(cfg.optim.epochs, int)


def test_bad_value_in_a_yaml_file_names_that_file(tmp_path: Path) -> None:
    bad = tmp_path / "mine.yaml"
    bad.write_text(f"base: {DEFAULT}\ndata:\n  batch_size: two\n")
    with pytest.raises(BadInputError, match=r"mine\.yaml: data\.batch_size = 'two': expected an integer"):
        load_config(bad)


# --- one loader for both stages: packaged names, base: by name, typed Stage 1 ---------------------------


def test_recipes_by_name_and_the_dataclass_defaults_are_the_default_recipe() -> None:
    from mllm3d.stage2_train3d.config import TrainConfig

    assert load_config("default").to_dict() == load_config(None).to_dict() == TrainConfig().to_dict()
    paper = load_config("paper")  # base: default, then the paper's values (method: Table 5)
    assert (paper.optim.optimizer, paper.optim.lr, paper.optim.epochs) == ("sgd", 0.1, 40)
    assert (paper.model.stem, paper.model.feature_dim, paper.data.voxel_size) == (32, 512, 0.05)
    assert load_config("paper.yaml").to_dict() == paper.to_dict()


def test_every_packaged_variant_states_its_base() -> None:
    from mllm3d.shared.config_io import packaged_dir

    for p in sorted(packaged_dir("train").glob("*.yaml")):
        if p.stem != "default":
            assert "\nbase: " in "\n" + p.read_text(), f"{p.name} does not state its base"


def test_a_user_file_can_start_from_a_packaged_name(tmp_path: Path) -> None:
    mine = tmp_path / "mine.yaml"
    mine.write_text("base: paper\noptim:\n  epochs: 3\n")
    cfg = load_config(mine)
    assert (cfg.optim.optimizer, cfg.optim.epochs, cfg.model.stem) == ("sgd", 3, 32)


def test_unknown_name_lists_the_packaged_recipes() -> None:
    with pytest.raises(BadInputError, match=r"nosuch: config file not found .*packaged: default, fused_target"):
        load_config("nosuch")


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (["views=abc"], "views must be a positive integer or 'all'"),
        (["seed=x"], "seed = 'x': expected an integer"),
        (["max_depth=far"], "max_depth = 'far': expected a number"),
        (["frame_stride=0"], "frame_stride must be an integer >= 1, got 0"),
        (["progress=sometimes"], "progress = 'sometimes': expected true or false"),
        (["backend_config=3"], "backend_config = 3: expected a mapping"),
        (["sead=1"], "unknown key 'sead'"),
    ],
)
def test_stage1_run_config_is_typed_by_the_same_loader(sets: list[str], message: str) -> None:
    from mllm3d.stage1_pseudolabel.run_config import RunConfig

    with pytest.raises(BadInputError) as err:
        RunConfig.load("synthetic", sets)
    text = str(err.value)
    assert "synthetic.yaml: " in text and message in text and "\n" not in text


def test_stage1_by_name_with_sets_and_cli_overrides() -> None:
    from mllm3d.stage1_pseudolabel.run_config import RunConfig

    cfg = RunConfig.load("synthetic", ["seed=3", "backend_config.miss_rate=0.2", "views=all"], store="x.zarr")
    assert (cfg.seed, cfg.views, cfg.store) == (3, None, "x.zarr")
    assert cfg.backend_config["miss_rate"] == 0.2 and cfg.backend_config["hallucination_rate"] == 0.15
    lisa = RunConfig.load("lisa-7b")
    assert (lisa.backend, lisa.frame_stride, lisa.max_depth) == ("lisa", 20, 10.0)
