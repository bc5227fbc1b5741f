"""Hostile catalogue, part 2: configs, command-line options, stores and checkpoints through the CLI.

Each case runs the real ``mllm3d`` command in-process (click's CliRunner) and asserts a non-zero exit
with an ``Error:`` line naming the file, key or option, no Python traceback, and that nothing on disk
changed (the store, the run folder and the inputs are hashed before and after). The table in
docs/reliability.md lists each case.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from mllm3d.cli import main as mllm3d
from mllm3d.pipeline.store_check import check_store
from tests.stage1_helpers import hidden_entries, start_cli


def tree_digest(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` (relative path -> bytes); an absent root is empty."""
    out: dict[str, bytes] = {}
    for dirpath, _, files in os.walk(root):
        for name in files:
            p = Path(dirpath) / name
            out[str(p.relative_to(root))] = p.read_bytes()
    return out


def refused(args: list[str | Path], *names: str) -> str:
    """Run ``mllm3d ARGS``: it must exit non-zero with one-line errors naming every ``names``, no traceback."""
    res = CliRunner().invoke(mllm3d, [str(a) for a in args])
    out = res.output
    assert res.exit_code not in (0, None), out
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
    assert "Traceback" not in out, out
    error_lines = [line for line in out.splitlines() if "Error" in line or "error" in line]
    assert error_lines, out
    for name in names:
        assert name in out, (name, out)
    return out


def _pseudolabel(store: Path, *extra: str | Path) -> list[str | Path]:
    return ["pseudolabel", "--no-progress", "--source", "synthetic:1", "--store", store, *extra]


# ---------------------------------------------------------------------------------------------- configs
STAGE1_CONFIGS = [
    pytest.param({"run.yaml": "vews: 4\n"}, "vews", id="stage1-unknown-key"),
    pytest.param({"run.yaml": "views: [1, 2]\n"}, "views", id="stage1-views-a-list"),
    pytest.param({"run.yaml": "seed: 1.0e+999\n"}, "seed", id="stage1-seed-infinite"),
    pytest.param({"run.yaml": "- views: 4\n- seed: 0\n"}, "run.yaml", id="stage1-yaml-is-a-list"),
    pytest.param({"run.yaml": "backend_config:\n\tseed: 0\n"}, "run.yaml", id="stage1-tab-indent"),
    pytest.param({"run.yaml": "views: [4\n"}, "run.yaml", id="stage1-unclosed-bracket"),
    pytest.param({"run.yaml": "views: 4\nviews: 2\n"}, "views", id="stage1-duplicate-key"),
    pytest.param({"run.yaml": "base: b.yaml\n", "b.yaml": "base: run.yaml\n"}, "circular", id="stage1-base-cycle"),
    pytest.param({"run.yaml": "base: run.yaml\n"}, "circular", id="stage1-base-is-itself"),
    pytest.param({"run.yaml": "base: gone.yaml\n"}, "gone", id="stage1-base-missing"),
    pytest.param({"run.yaml": "base: [a, b]\n"}, "base", id="stage1-base-a-list"),
    pytest.param({"run.yaml": "backend_config:\n  miss_rat: 0.2\n"}, "miss_rat", id="stage1-backend-unknown-key"),
    pytest.param({"run.yaml": "backend_config:\n  miss_rate: lots\n"}, "miss_rate must be a finite number, got 'lots'",
                 id="stage1-backend-wrong-type"),
    pytest.param({"run.yaml": "backend_config:\n  preset: [a]\n"}, "preset must be a string",
                 id="stage1-backend-preset-a-list"),
    pytest.param({"run.yaml": "backend_config:\n  conf_wrong: [0.5]\n"}, "conf_wrong must be a list of 2",
                 id="stage1-backend-pair-too-short"),
    pytest.param({"run.yaml": b"views: 4\n\xff\xfe\n"}, "run.yaml", id="stage1-not-utf8"),
]


@pytest.mark.parametrize(("files", "name"), STAGE1_CONFIGS)
def test_a_bad_stage1_config_is_refused_before_any_work(tmp_path: Path, files: dict, name: str) -> None:
    for fname, text in files.items():
        (tmp_path / fname).write_bytes(text if isinstance(text, bytes) else text.encode())
    before = tree_digest(tmp_path)
    store = tmp_path / "store.zarr"
    refused(_pseudolabel(store, "--config", tmp_path / "run.yaml"), name)
    assert not store.exists()
    assert tree_digest(tmp_path) == before


def test_a_bad_backend_config_value_names_where_it_came_from(tmp_path: Path) -> None:
    """The synthetic backend's config is checked when the run config loads: the error names the YAML file,
    or the ``--set`` that gave the value, not only the key."""
    (tmp_path / "run.yaml").write_text("backend_config:\n  miss_rate: lots\n")
    out = refused(_pseudolabel(tmp_path / "a.zarr", "--config", tmp_path / "run.yaml"), "miss_rate")
    assert f"{tmp_path / 'run.yaml'}: backend_config: miss_rate must be a finite number" in out, out
    out = refused(_pseudolabel(tmp_path / "b.zarr", "--set", "backend_config.miss_rate=2"), "miss_rate")
    assert "--set backend_config.miss_rate=2: backend_config: miss_rate must be in [0, 1], got 2" in out, out
    assert not (tmp_path / "a.zarr").exists() and not (tmp_path / "b.zarr").exists()


def test_a_config_that_is_a_directory_is_named(tmp_path: Path) -> None:
    (tmp_path / "cfg.yaml").mkdir()
    refused(_pseudolabel(tmp_path / "s.zarr", "--config", tmp_path / "cfg.yaml"), "cfg.yaml")
    assert not (tmp_path / "s.zarr").exists()


TRAIN_CONFIGS = [
    pytest.param("optim:\n  lr: fast\n", "lr", id="train-lr-a-word"),
    pytest.param("optim:\n  epochs: -3\n", "epochs", id="train-negative-epochs"),
    pytest.param("modle:\n  stem: 16\n", "modle", id="train-unknown-section"),
    pytest.param("- a\n- b\n", "train.yaml", id="train-yaml-is-a-list"),
    pytest.param("base: nowhere\n", "nowhere", id="train-base-unknown-name"),
]


@pytest.mark.parametrize(("text", "name"), TRAIN_CONFIGS)
def test_a_bad_train_config_is_refused_before_any_work(tmp_path: Path, text: str, name: str) -> None:
    cfg, out = tmp_path / "train.yaml", tmp_path / "run"
    cfg.write_text(text)
    refused(["train", "--store", tmp_path / "absent.zarr", "--config", cfg, "--out", out], name)
    assert not out.exists()


# ---------------------------------------------------------------------------------------------- options
OPTIONS = [
    pytest.param(["--views", "0"], "--views", id="views-zero"),
    pytest.param(["--views", "-3"], "--views", id="views-negative"),
    pytest.param(["--views", "four"], "--views", id="views-a-word"),
    pytest.param(["--shard", "3/2"], "3/2", id="shard-index-beyond-count"),
    pytest.param(["--shard", "0/0"], "0/0", id="shard-count-zero"),
    pytest.param(["--shard", "a/b"], "a/b", id="shard-not-numbers"),
    pytest.param(["--shard", "-1/2"], "-1/2", id="shard-negative"),
    pytest.param(["--set", "views"], "views", id="set-without-equals"),
    pytest.param(["--set", "nosuchkey=1"], "nosuchkey", id="set-unknown-key"),
    pytest.param(["--set", "=4"], "=4", id="set-empty-key"),
    pytest.param(["--frame-stride", "0"], "--frame-stride", id="frame-stride-zero"),
    pytest.param(["--max-scenes", "-1"], "--max-scenes", id="max-scenes-negative"),
    pytest.param(["--queries", "/nonexistent/q.json"], "q.json", id="queries-file-missing"),
    pytest.param(["--source", "/nonexistent/scans"], "/nonexistent/scans", id="source-folder-missing"),
    pytest.param(["--source", "synthetic:-2"], "synthetic:-2", id="source-negative-count"),
]


@pytest.mark.parametrize(("extra", "name"), OPTIONS)
def test_a_bad_pseudolabel_option_is_refused_before_any_work(tmp_path: Path, extra: list[str], name: str) -> None:
    store = tmp_path / "store.zarr"
    refused(_pseudolabel(store, *extra), name)
    assert not store.exists()


def test_a_negative_seed_is_a_seed_like_any_other(tmp_path: Path) -> None:
    """--seed -1 is accepted (seeds are hashed, any int is valid) and recorded as given."""
    store = tmp_path / "store.zarr"
    res = CliRunner().invoke(mllm3d, [str(a) for a in _pseudolabel(store, "--seed", "-1", "--max-scenes", "1")])
    assert res.exit_code == 0, res.output
    groups = list((store / "scenes").glob("*/queries/*/zarr.json"))
    assert groups
    attrs = json.loads(groups[0].read_text())["attributes"]
    assert "-1" in json.dumps(attrs), attrs


@pytest.mark.parametrize("cmd", ["inspect", "train"])
def test_a_store_that_does_not_exist_is_named(tmp_path: Path, cmd: str) -> None:
    store = tmp_path / "nowhere.zarr"
    args = ["inspect", "--store", store] if cmd == "inspect" else ["train", "--store", store, "--out", tmp_path / "r"]
    refused(args, "nowhere.zarr")
    assert not store.exists() and not (tmp_path / "r").exists()


# ---------------------------------------------------------------------------------------------- stores
@pytest.fixture(scope="module")
def small_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    store = tmp_path_factory.mktemp("cat") / "store.zarr"
    res = CliRunner().invoke(mllm3d, [str(a) for a in _pseudolabel(store, "--max-scenes", "1")])
    assert res.exit_code == 0, res.output
    return store


def _copy(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst)
    return dst


def _truncate(rel: str):
    def go(store: Path) -> str:
        f = store / rel
        f.write_bytes(f.read_bytes()[: len(f.read_bytes()) // 2])
        return rel
    return go


def _foreign(store: Path) -> str:
    (store / "zarr.json").write_text(json.dumps({"zarr_format": 3, "node_type": "group", "attributes": {"x": 1}}))
    return ""  # the message names the store itself ("not an mllm3d pseudo-label store (root zarr.json ...)")


def _root_is_an_array(store: Path) -> str:
    meta = json.loads((store / "zarr.json").read_text())
    meta["node_type"] = "array"
    (store / "zarr.json").write_text(json.dumps(meta))
    return "zarr.json"


STORES = [
    pytest.param(_truncate("zarr.json"), id="store-root-metadata-truncated"),
    pytest.param(_foreign, id="store-foreign-zarr-group"),
    pytest.param(_root_is_an_array, id="store-root-says-array"),
    pytest.param(_truncate("scenes/zarr.json"), id="store-scenes-metadata-truncated"),
]


@pytest.mark.parametrize("damage", STORES)
def test_a_damaged_store_is_named_by_every_command_and_left_as_it_is(small_store: Path, tmp_path: Path, damage) -> None:
    store = _copy(small_store, tmp_path / "store.zarr")
    rel = damage(store)
    before = tree_digest(store)
    named = str(store / rel) if rel else str(store)
    refused(["inspect", "--store", store], named)
    assert CliRunner().invoke(mllm3d, ["inspect", "--store", str(store), "--check"]).exit_code == 1
    assert any(named in p.message for p in check_store(store) if p.severity == "error"), check_store(store)
    refused(_pseudolabel(store), named)
    refused(["train", "--store", store, "--out", tmp_path / "run"], named)
    assert tree_digest(store) == before, rel
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("where", ["afile/store.zarr", "afile"])
def test_a_store_under_or_at_a_file_is_named(tmp_path: Path, where: str) -> None:
    (tmp_path / "afile").write_text("x")
    refused(_pseudolabel(tmp_path / where), "afile")
    assert (tmp_path / "afile").read_text() == "x"


@pytest.mark.parametrize("where", ["afile/store.zarr", "afile/deeper/store.zarr"])
def test_run_pseudolabels_under_a_file_raises_a_store_error_naming_it(tmp_path: Path, where: str) -> None:
    """The Python API (no CLI in between): a StoreError naming the store and the file in its way, one line
    (was: a raw FileExistsError / NotADirectoryError from mkdir); the file and its folder are untouched."""
    from mllm3d.shared.errors import StoreError
    from mllm3d.stage1_pseudolabel.runner import run_pseudolabels
    from tests.stage1_helpers import run_config, tiny_source

    (tmp_path / "afile").write_text("x")
    before = tree_digest(tmp_path)
    with pytest.raises(StoreError) as err:
        run_pseudolabels(run_config(tmp_path / where), source=tiny_source())
    msg = str(err.value)
    assert msg == f"{tmp_path / where}: cannot create the store: {tmp_path / 'afile'} is a file, not a directory", msg
    assert tree_digest(tmp_path) == before and sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


@pytest.mark.parametrize("fx", [0.0, float("nan"), -5.0])
def test_a_bad_focal_length_is_one_line_naming_the_matrix(fx: float) -> None:
    from mllm3d.shared.errors import BadInputError
    from mllm3d.shared.geometry import check_intrinsic

    with pytest.raises(BadInputError) as err:
        check_intrinsic(np.array([[fx, 0, 320], [0, 500, 240], [0, 0, 1]]), "scene0/intrinsic_color.txt")
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith("scene0/intrinsic_color.txt: focal lengths") and "fy=500" in msg, msg


@pytest.mark.parametrize(("extra", "label"), [
    (["--set", "views=0"], "--set views=0"), (["--views", "0"], "--views 0"),
    (["--max-scenes", "-1"], "--max-scenes -1"), (["--set", "seed=x"], "--set seed=x"),
])
def test_a_stage1_option_error_names_the_option_not_the_recipe(tmp_path: Path, extra: list[str], label: str) -> None:
    out = refused(_pseudolabel(tmp_path / "s.zarr", *extra), label)
    assert out.strip().startswith(f"Error: {label}:") and "default recipe" not in out, out


# ---------------------------------------------------------------------------------------------- checkpoints
@pytest.mark.parametrize("kind", ["directory", "other-architecture", "not-a-checkpoint-dict"])
def test_a_checkpoint_that_is_not_one_of_ours_is_named(small_store: Path, tmp_path: Path, kind: str) -> None:
    import torch

    ckpt = tmp_path / "model.ckpt"
    if kind == "directory":
        ckpt.mkdir()
    elif kind == "other-architecture":
        torch.save({"state_dict": {"encoder.weight": torch.zeros(3, 3)}, "hyper_parameters": {}}, ckpt)
    else:
        torch.save([1, 2, 3], ckpt)
    before = tree_digest(small_store)
    refused(["eval", "--store", small_store, "--checkpoint", ckpt], "model.ckpt")
    assert tree_digest(small_store) == before


@pytest.mark.parametrize("cmd", ["predict", "eval"])
def test_a_checkpoint_that_does_not_exist_is_named(small_store: Path, tmp_path: Path, cmd: str) -> None:
    ckpt = tmp_path / "gone" / "model.ckpt"
    out = tmp_path / "prediction.ply"
    args: list[str | Path] = (["predict", "--source", "synthetic:1", "--scene", "synth_0000", "--text", "a chair",
                               "--checkpoint", ckpt, "--out", out] if cmd == "predict"
                              else ["eval", "--store", small_store, "--checkpoint", ckpt])
    before = tree_digest(small_store)
    msg = refused(args, str(ckpt))
    assert msg.startswith("Error:") and len(msg.strip().splitlines()) == 1, msg
    assert not out.exists() and not ckpt.parent.exists()
    assert tree_digest(small_store) == before


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores file permissions: a read-only store is writable")
@pytest.mark.parametrize("check", [False, True], ids=["inspect", "inspect-check"])
def test_inspect_on_a_read_only_store_reads_it_and_changes_nothing(small_store: Path, tmp_path: Path,
                                                                     check: bool) -> None:
    """``inspect`` only reads: on a store nobody may write (chmod -R a-w) it reports as on a writable one."""
    store = _copy(small_store, tmp_path / "store.zarr")
    before = tree_digest(store)
    modes = {p: p.stat().st_mode for p in [store, *store.rglob("*")]}
    for p in modes:
        p.chmod(p.stat().st_mode & ~0o222)
    try:
        res = CliRunner().invoke(mllm3d, ["inspect", "--store", str(store), *(["--check"] if check else [])])
    finally:
        for p, mode in sorted(modes.items(), key=lambda kv: len(kv[0].parts)):
            p.chmod(mode)
    assert res.exit_code == 0 and "Traceback" not in res.output, res.output
    assert tree_digest(store) == before


@pytest.fixture(scope="module")
def toy_train_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.stage2_toy import build_toy_store

    return build_toy_store(tmp_path_factory.mktemp("cat_train") / "toy.zarr", n_scenes=3, image_features=False)


def _saved(obj: object):
    def go(d: Path) -> Path:
        torch.save(obj, d / "model.ckpt")
        return d / "model.ckpt"
    return go


RESUME_CHECKPOINTS = [
    pytest.param(lambda d: "last", "checkpoints/last.ckpt: checkpoint to resume from not found",
                 id="resume-last-in-a-new-out"),
    pytest.param(lambda d: (d / "model.ckpt").mkdir() or d / "model.ckpt",
                 "model.ckpt: checkpoint to resume from not found", id="resume-from-a-folder"),
    pytest.param(_saved({"state_dict": [1, 2, 3], "epoch": 0}), "model.ckpt: its weights do not fit this run's network",
                 id="resume-state-dict-a-list"),
    pytest.param(_saved({"state_dict": {}, "epoch": None}), "model.ckpt: not a Lightning checkpoint (its epoch is None",
                 id="resume-epoch-null"),
    pytest.param(_saved({"state_dict": {}, "epoch": "x", "loops": "garbage"}),
                 "model.ckpt: not a Lightning checkpoint (its epoch is 'x'", id="resume-epoch-a-word"),
]


@pytest.mark.parametrize(("make", "message"), RESUME_CHECKPOINTS)
def test_a_resume_checkpoint_that_is_absent_or_not_ours_is_named_before_any_work(toy_train_store: Path, tmp_path: Path,
                                                                                  make, message: str) -> None:
    """``train --resume`` with nothing to resume from (``last`` in a fresh --out, a folder) or a torch file that
    is not one of our checkpoints: one line naming it, before training; --out is not created, inputs unchanged."""
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    resume = make(inputs)
    before, store_before = tree_digest(inputs), tree_digest(toy_train_store)
    out = tmp_path / "run"
    from tests.test_hostile_round2 import _train_args

    msg = refused(_train_args(toy_train_store, out, "--resume", resume), message)
    assert len([line for line in msg.splitlines() if line.startswith("Error:")]) == 1, msg
    assert not out.exists()
    assert tree_digest(inputs) == before and tree_digest(toy_train_store) == store_before


@pytest.mark.parametrize("cmd", ["eval", "predict"])
def test_a_truncated_torch_checkpoint_is_one_line_naming_it(small_store: Path, tmp_path: Path, cmd: str) -> None:
    """The first half of a real torch file (a copy cut short) given to ``eval`` or ``predict``: one line naming
    it, no --out written, the store and the file unchanged."""
    ckpt = tmp_path / "model.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(1000)}, "epoch": 0}, ckpt)
    ckpt.write_bytes(ckpt.read_bytes()[: ckpt.stat().st_size // 2])
    data, before = ckpt.read_bytes(), tree_digest(small_store)
    out = tmp_path / "prediction.ply"
    args: list[str | Path] = (["predict", "--source", "synthetic:1", "--scene", "synth_0000", "--text", "a chair",
                               "--target-ids", "1", "--checkpoint", ckpt, "--out", out] if cmd == "predict"
                              else ["eval", "--store", small_store, "--checkpoint", ckpt])
    msg = refused(args, f"{ckpt}: not a readable")
    assert msg.startswith("Error:") and len(msg.strip().splitlines()) == 1, msg
    assert not out.exists() and ckpt.read_bytes() == data and tree_digest(small_store) == before


# ---------------------------------------------------------------------------------------------- signals
def test_sigint_during_pseudolabel_exits_130_and_the_store_resumes_clean(tmp_path: Path) -> None:
    """Ctrl-C: no traceback, an exit status of 130, no temporaries or leases; a rerun completes the store."""
    store = tmp_path / "store.zarr"
    # a Ctrl-C right after the second query group is published (the process signals itself: no race)
    proc = start_cli(["--source", "synthetic:6", "--store", str(store)],
                     env={"MLLM3D_TEST_KILL_AT": "query:2:after_publish:INT"})
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.startswith("Error:")]
    assert len(lines) == 1 and "interrupted by SIGINT" in lines[0] and "rerun" in lines[0], err
    # a temporary group may be left (invisible to readers); the rerun removes it (its writer is dead)
    assert not [h for h in hidden_entries(store) if ".lease-" in h]
    res = CliRunner().invoke(mllm3d, ["pseudolabel", "--no-progress", "--source", "synthetic:6", "--store", str(store)])
    assert res.exit_code == 0, res.output
    check = CliRunner().invoke(mllm3d, ["inspect", "--store", str(store), "--check"])
    assert check.exit_code == 0, check.output
    assert hidden_entries(store) == []


@pytest.fixture(scope="module")
def sigint_train(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess, Path, Path]:
    """``mllm3d train`` (tiny network, 50 epochs) sent SIGINT before epoch 1's second batch (after epoch 0's
    last.ckpt; the process signals itself at that batch, so no machine is too fast or too slow for it)."""
    from tests.stage2_toy import build_toy_store
    from tests.test_hostile_round2 import TINY_TRAIN

    d = tmp_path_factory.mktemp("sigint_train")
    store = build_toy_store(d / "toy.zarr", n_scenes=3, image_features=False)
    out = d / "run"
    args = [sys.executable, "-m", "mllm3d.cli", "train", "--store", str(store), "--out", str(out), "--no-progress"]
    for s in (*TINY_TRAIN, "optim.epochs=50"):
        args += ["--set", s]
    env = {**os.environ, "MLLM3D_TEST_TRAIN_KILL_AT": "1:1:INT"}
    proc = subprocess.Popen(args, cwd=Path(__file__).resolve().parents[1], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    stdout, stderr = proc.communicate(timeout=300)
    return subprocess.CompletedProcess(args, proc.returncode, stdout, stderr), store, out


@pytest.mark.slow
def test_sigint_during_train_leaves_a_run_that_resumes(sigint_train) -> None:
    """Ctrl-C mid-training: no traceback, no result.json, and ``--resume last`` in the same --out finishes."""
    from tests.test_hostile_round2 import TINY_TRAIN

    res, store, out = sigint_train
    assert res.returncode != 0 and "Traceback" not in res.stderr, res.stderr[-3000:]
    assert not (out / "result.json").exists() and (out / "checkpoints" / "last.ckpt").is_file()
    assert torch.load(out / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)["epoch"] == 0
    args = ["train", "--store", str(store), "--out", str(out), "--no-progress", "--resume", "last"]
    for s in (*TINY_TRAIN, "optim.epochs=2"):
        args += ["--set", s]
    again = CliRunner().invoke(mllm3d, args)
    assert again.exit_code == 0, again.output[-3000:]
    assert json.loads((out / "result.json").read_text())["last_checkpoint"]


@pytest.mark.slow
def test_sigint_during_train_exits_130_with_one_error_line(sigint_train) -> None:
    res, _, _ = sigint_train
    lines = [line for line in res.stderr.splitlines() if line.startswith("Error:")]
    assert res.returncode == 130, res.stderr[-3000:]
    assert len(lines) == 1 and "interrupted by SIGINT" in lines[0] and "--resume last" in lines[0], res.stderr


def _complete_groups(store: Path) -> dict[str, dict[str, bytes]]:
    """Every published (complete) scene and query group of ``store``: group path -> its files."""
    from mllm3d.shared.store import open_store

    s = open_store(store)
    out = {}
    for sid, qid in s.complete_pairs():
        q = s.query_dir(sid, qid)
        out[str(q.relative_to(store))] = tree_digest(q)
    return out


def _signal_error_line(proc_stderr: str, signame: str) -> str:
    assert "Traceback" not in proc_stderr, proc_stderr[-3000:]
    lines = [line for line in proc_stderr.splitlines() if line.startswith("Error:")]
    assert len(lines) == 1 and f"interrupted by {signame}" in lines[0], proc_stderr[-3000:]
    return lines[0]


def test_sigterm_mid_query_write_on_a_resumed_store_keeps_every_earlier_group(tmp_path: Path) -> None:
    """SIGTERM while a query group is half written (masks on disk, the other arrays not) in a run that
    resumes a store: exit 143, one line whose counts are the store's own, every group published before the
    run byte-identical, the half-written group not visible; the rerun completes the store."""
    from mllm3d.shared.store import open_store

    store = tmp_path / "store.zarr"
    first = CliRunner().invoke(mllm3d, ["pseudolabel", "--no-progress", "--source", "synthetic:2", "--store",
                                        str(store), "--max-scenes", "1"])
    assert first.exit_code == 0, first.output
    published = _complete_groups(store)
    assert published
    proc = start_cli(["--source", "synthetic:2", "--store", str(store)],
                     env={"MLLM3D_TEST_KILL_AT": "query:2:mid_write:TERM"})
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err[-3000:]
    line = _signal_error_line(err, "SIGTERM")
    s = open_store(store)
    pairs = s.complete_pairs()
    assert (f"holds {len(s.scene_ids())} complete scene group(s) and {len(pairs)} complete query group(s)"
            in " ".join(line.split())), line
    now = _complete_groups(store)
    assert {k: now[k] for k in published} == published  # nothing published earlier changed
    assert len(now) == len(published) + 1  # the first query of the second scene; the second never published
    assert not [h for h in hidden_entries(store) if ".lease-" in h]
    res = CliRunner().invoke(mllm3d, ["pseudolabel", "--no-progress", "--source", "synthetic:2", "--store", str(store)])
    assert res.exit_code == 0, res.output
    assert CliRunner().invoke(mllm3d, ["inspect", "--store", str(store), "--check"]).exit_code == 0
    assert hidden_entries(store) == [] and {k: _complete_groups(store)[k] for k in now} == now


def test_sigint_before_the_first_scene_is_published_leaves_an_empty_store_that_resumes(tmp_path: Path) -> None:
    """Ctrl-C when the first scene group is complete in its temporary but not yet renamed into place: exit
    130, one line, no scene visible to readers, no lease; the rerun writes the whole store and --check passes."""
    from mllm3d.shared.store import open_store

    store = tmp_path / "store.zarr"
    proc = start_cli(["--source", "synthetic:1", "--store", str(store)],
                     env={"MLLM3D_TEST_KILL_AT": "scene:1:before_publish:INT"})
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-3000:]
    line = _signal_error_line(err, "SIGINT")
    assert "0 complete scene group(s) and 0 complete query group(s)" in " ".join(line.split()), line
    assert open_store(store).scene_ids() == [] and open_store(store).complete_pairs() == []
    assert not [h for h in hidden_entries(store) if ".lease-" in h]
    res = CliRunner().invoke(mllm3d, [str(a) for a in _pseudolabel(store)])
    assert res.exit_code == 0, res.output
    assert open_store(store).scene_ids() == ["synth_0000"] and open_store(store).complete_pairs()
    assert CliRunner().invoke(mllm3d, ["inspect", "--store", str(store), "--check"]).exit_code == 0
    assert hidden_entries(store) == []


@pytest.mark.parametrize("sig", ["TERM", "INT"], ids=["sigterm", "sigint"])
def test_a_signal_during_synth_loses_no_written_scene_and_the_rerun_completes(tmp_path: Path, sig: str) -> None:
    """SIGTERM / Ctrl-C while ``mllm3d synth`` has its second scene complete in a temporary, not yet renamed:
    exit 143 / 130 with one line saying what the store holds, no traceback, the temporary removed, the first
    scene byte-identical; the rerun writes the rest and the store reads back whole."""
    from mllm3d.shared.store import open_store

    store, queries = tmp_path / "s.zarr", tmp_path / "q.json"
    args = ["synth", "--num-scenes", "3", "--store", str(store), "--queries-out", str(queries)]
    env = {**os.environ, "MLLM3D_TEST_KILL_AT": f"scene:2:before_publish:{sig}"}
    res = subprocess.run([sys.executable, "-m", "mllm3d.cli", *args], cwd=Path(__file__).resolve().parents[1],
                         env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == {"TERM": 143, "INT": 130}[sig], res.stderr[-3000:]
    line = _signal_error_line(res.stderr, f"SIG{sig}")
    assert f"synth interrupted by SIG{sig}" in line, line
    assert "holds 1 complete scene group(s)" in line and "rerun the same command" in line, line
    assert hidden_entries(store) == []  # the second scene's temporary was removed on the way out
    assert open_store(store).scene_ids() == ["synth_0000"] and not queries.exists()
    first = tree_digest(store / "scenes" / "synth_0000")
    again = CliRunner().invoke(mllm3d, args)
    assert again.exit_code == 0, again.output
    s = open_store(store)
    assert s.scene_ids() == ["synth_0000", "synth_0001", "synth_0002"]
    for sid in s.scene_ids():
        assert s.read_scene(sid).points.shape[0] > 0
    assert tree_digest(store / "scenes" / "synth_0000") == first
    assert json.loads(queries.read_text())
