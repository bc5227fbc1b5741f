"""Stage 2 as users run it, in subprocesses: SIGKILL mid-epoch then --resume, and 2-process CPU DDP."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mllm3d.stage2_train3d.config import TrainConfig, with_overrides
from mllm3d.stage2_train3d.datamodule import StoreDataModule, collate
from mllm3d.stage2_train3d.model import build_network
from mllm3d.stage2_train3d.module import Stage2Module
from tests.stage2_toy import EMBED_DIM, build_toy_store

pytestmark = pytest.mark.slow

TINY = [
    "model.stem=8",
    "model.down=[8,16]",
    "model.up=[16,8]",
    "model.feature_dim=16",
    "data.batch_size=2",
    "data.val_batch_size=2",
    "data.val_fraction=0.34",
    "trainer.cpu_threads=1",
    "trainer.log_every_n_steps=1",
    "trainer.accelerator=cpu",
    # mechanics tests: validate every epoch, load in the main process, one query per item (several batches per epoch)
    "trainer.check_val_every_n_epoch=1",
    "data.num_workers=0",
    "data.queries_per_item=1",
]
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("s2proc")
    return {
        "features": build_toy_store(d / "features.zarr", n_scenes=3, image_features=True),
        "plain": build_toy_store(d / "plain.zarr", n_scenes=3, image_features=False),
    }


def _train(
    store: Path, out: Path, *sets: str, resume: str | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """``mllm3d train`` in a subprocess with the tiny network and ``--set`` overrides."""
    args = [sys.executable, "-m", "mllm3d.cli", "train", "--store", str(store), "--out", str(out), "--no-progress"]
    args += ["--resume", resume] if resume else []
    for s in (*TINY, *sets):
        args += ["--set", s]
    return subprocess.run(args, cwd=ROOT, env={**os.environ, **(env or {})}, capture_output=True, text=True,
                          timeout=600)


def _state(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=False)["state_dict"]


def test_sigkill_mid_epoch_then_resume_equals_an_uninterrupted_run(stores, tmp_path):
    store = stores["features"]
    straight = _train(store, tmp_path / "a", "optim.epochs=3")
    assert straight.returncode == 0, straight.stderr[-3000:]
    killed = _train(store, tmp_path / "b", "optim.epochs=3", env={"MLLM3D_TEST_TRAIN_KILL_AT": "1:1"})
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    last = tmp_path / "b" / "checkpoints" / "last.ckpt"
    assert torch.load(last, weights_only=False)["epoch"] == 0  # the end of the epoch before the kill
    assert not (tmp_path / "b" / "result.json").exists()
    res = _train(store, tmp_path / "b", "optim.epochs=3", resume="last")
    assert res.returncode == 0, res.stderr[-3000:]
    a = json.loads((tmp_path / "a" / "result.json").read_text())
    b = json.loads((tmp_path / "b" / "result.json").read_text())
    for k in ("val/miou", "val/acc25", "val/acc50", "val/loss"):
        assert b["metrics"][k] == pytest.approx(a["metrics"][k], abs=1e-6), k
    wa, wb = _state(Path(a["last_checkpoint"])), _state(Path(b["last_checkpoint"]))
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.allclose(wa[k].float(), wb[k].float(), atol=1e-6), k


def test_resume_with_another_config_warns(stores, tmp_path):
    from mllm3d.stage2_train3d.resume import read_resume_point
    from mllm3d.stage2_train3d.train import as_config, train_run

    res = train_run(None, stores["plain"], tmp_path / "r", overrides=[*TINY, "optim.epochs=1"], progress=False,
                    evaluate_untrained=False, log=None)
    saved = as_config(res["config_path"])
    point = read_resume_point(res["last_checkpoint"])
    assert point.config_differences(saved) == []
    notes = point.config_differences(as_config(saved, ["optim.lr=0.01"]))
    assert notes == [f"warning: resuming {res['last_checkpoint']} with optim.lr=0.01 (the checkpoint was trained with 0.005)"]


@pytest.mark.parametrize(
    "store_kind, extra",
    [("plain", ["loss.spatial=false"]), ("plain", []), ("features", ["loss.spatial=false"]), ("features", [])],
    ids=["no-spatial", "prototype", "features-no-spatial", "features"],
)
def test_every_parameter_is_in_the_graph_under_ddp(stores, store_kind, extra):
    """With anchor_unused (set when world_size > 1) every parameter gets a gradient in every variant."""
    store = stores[store_kind]
    cfg = with_overrides(TrainConfig(), [*TINY, *extra, f"model.query_dim={EMBED_DIM}", "model.image_feature_dim=4",
                                         f"loss.spatial_mode={'features' if store_kind == 'features' else 'prototype'}"])
    dm = StoreDataModule(store, cfg)
    dm.setup()
    batch = collate([dm._dataset(dm.train_pairs, train=True)[0]])
    for anchor in (False, True):
        module = Stage2Module(build_network(cfg.model), cfg)
        module.anchor_unused = anchor
        module.model_step(batch, "train")["loss"].backward()
        missing = [n for n, p in module.net.named_parameters() if p.requires_grad and p.grad is None]  # frozen: not DDP's
        if anchor:
            assert missing == []
        elif store_kind == "plain" or extra:
            assert any(n.startswith("image_proj") for n in missing)  # the case that broke DDP


_DDP_SCRIPT = """
import sys
from mllm3d.stage2_train3d.train import train_run
res = train_run(None, sys.argv[1], sys.argv[2], overrides=sys.argv[3:], progress=False, evaluate_untrained=False)
print("DONE", res["metrics"].get("val/miou"))
"""


def test_two_process_cpu_ddp_trains_variants_with_unused_parameters(stores, tmp_path):
    script = tmp_path / "ddp_train.py"
    script.write_text(_DDP_SCRIPT)
    args = [sys.executable, str(script), str(stores["plain"]), str(tmp_path / "ddp"), *TINY, "optim.epochs=1",
            "trainer.devices=2", "trainer.strategy=ddp", "loss.spatial=false", "trainer.limit_train_batches=2",
            "data.batch_size=1"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    res = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, (res.stdout + res.stderr)[-4000:]
    assert res.stdout.count("DONE") == 2  # both ranks finished
    assert (tmp_path / "ddp" / "checkpoints" / "last.ckpt").is_file()


def test_sigkill_resume_with_a_worker_process_is_bit_identical(stores, tmp_path):
    """With ``data.num_workers=1`` (the default recipe's) a resume ends bit-identical to an uninterrupted
    run. Lightning builds the train iterator (whose worker prefetches batches) before it sets the sampler's
    epoch, so the resumed sampler starts at the checkpoint's epoch (was: the first two batches of the
    resumed epoch were epoch 0's)."""
    store = stores["features"]
    one = ("optim.epochs=3", "data.num_workers=1")
    straight = _train(store, tmp_path / "a", *one)
    assert straight.returncode == 0, straight.stderr[-3000:]
    killed = _train(store, tmp_path / "b", *one, env={"MLLM3D_TEST_TRAIN_KILL_AT": "1:1"})
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    res = _train(store, tmp_path / "b", *one, resume="last")
    assert res.returncode == 0, res.stderr[-3000:]
    a = json.loads((tmp_path / "a" / "result.json").read_text())
    b = json.loads((tmp_path / "b" / "result.json").read_text())
    for k in ("val/miou", "val/acc25", "val/acc50", "val/loss"):
        assert b["metrics"][k] == a["metrics"][k], k
    wa, wb = _state(Path(a["last_checkpoint"])), _state(Path(b["last_checkpoint"]))
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k
