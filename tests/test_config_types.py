"""Typed Stage 2 config: a wrong key, type or impossible value fails at load time, naming file, key and value."""

from __future__ import annotations

from pathlib import Path

import pytest
from mllm3d.shared.errors import BadInputError
from mllm3d.stage2_train3d.config import load_config

DEFAULT = Path(__file__).resolve().parents[1] / "configs" / "train" / "default.yaml"


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
