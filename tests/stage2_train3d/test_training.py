"""Training end to end on a tiny network and a hand-built store: fast_dev_run, resume, NaN, checkpoints."""

from __future__ import annotations

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
import yaml

from mllm3d.shared.store import open_store
from mllm3d.stage2_train3d.config import TrainConfig, load_config, with_overrides
from mllm3d.stage2_train3d.datamodule import StoreDataModule, collate
from mllm3d.stage2_train3d.model import build_network
from mllm3d.stage2_train3d.module import NonFiniteLossError, Stage2Module
from mllm3d.stage2_train3d.predictor import Predictor, load_checkpoint
from mllm3d.stage2_train3d.train import train_run
from tests.stage2_toy import EMBED_DIM, build_toy_store

TINY = [
    "model.stem=8",
    "model.down=[8,16]",
    "model.up=[16,8]",
    "model.feature_dim=16",
    "data.batch_size=3",
    "data.val_batch_size=3",
    "data.val_fraction=0.34",
    "data.queries_per_item=2",
    "trainer.cpu_threads=1",
    "trainer.log_every_n_steps=1",
    # mechanics tests: validate every epoch, load in the main process (the default recipe uses 5 / 1 worker)
    "trainer.check_val_every_n_epoch=1",
    "data.num_workers=0",
]


@pytest.fixture(scope="module")
def toy_store(tmp_path_factory: pytest.TempPathFactory):
    return build_toy_store(tmp_path_factory.mktemp("s2train") / "store.zarr", n_scenes=3, image_features=True)


def _run(store, out, epochs=2, extra=(), **kw):
    return train_run(None, store, out, overrides=[*TINY, f"optim.epochs={epochs}", *extra], progress=False, log=None, **kw)


def test_fast_dev_run_tiny_unet(toy_store, tmp_path):
    res = _run(toy_store, tmp_path / "dev", fast_dev_run=True)
    cfg = load_config(res["config_path"])
    assert cfg.model.query_dim == EMBED_DIM and cfg.model.image_feature_dim == 4  # resolved from the store
    assert cfg.loss.spatial_mode == "features"
    assert (tmp_path / "dev" / "config.yaml").is_file()


class _Crash(Exception):
    pass


class _CrashAt(pl.Callback):
    """Simulates a kill in the middle of an epoch."""

    def __init__(self, epoch: int, batch: int) -> None:
        self.epoch, self.batch = epoch, batch

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.current_epoch == self.epoch and batch_idx == self.batch:
            raise _Crash(f"killed at epoch {self.epoch} batch {self.batch}")


def _weights(path):
    return torch.load(path, map_location="cpu", weights_only=False)["state_dict"]


def test_resume_reproduces_uninterrupted_run(toy_store, tmp_path):
    straight = _run(toy_store, tmp_path / "a", evaluate_untrained=False)
    with pytest.raises(_Crash):
        _run(toy_store, tmp_path / "b", evaluate_untrained=False, callbacks=[_CrashAt(epoch=1, batch=1)])
    assert (tmp_path / "b" / "checkpoints" / "last.ckpt").is_file()
    assert torch.load(tmp_path / "b" / "checkpoints" / "last.ckpt", weights_only=False)["epoch"] == 0
    resumed = _run(toy_store, tmp_path / "b", evaluate_untrained=False, resume="last")
    wa, wb = _weights(straight["last_checkpoint"]), _weights(resumed["last_checkpoint"])
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.allclose(wa[k].float(), wb[k].float(), atol=1e-6), k
    for k in ("val/miou", "val/acc25", "val/acc50", "val/loss"):
        assert resumed["metrics"][k] == pytest.approx(straight["metrics"][k], abs=1e-6), k
    # training really changed W (it is optimised) and the checkpoint holds it
    init = build_network(load_config(straight["config_path"]).model)
    assert not torch.allclose(init.query_proj.weight, wa["net.query_proj.weight"])


def test_checkpoint_restores_network_W_and_config(toy_store, tmp_path):
    res = _run(toy_store, tmp_path / "c", epochs=3)
    # label-free by default: the run's checkpoint is its last one; no ground-truth "best" is kept
    assert res["checkpoint"] == res["last_checkpoint"] == str(tmp_path / "c" / "checkpoints" / "last.ckpt")
    assert res["selection"] == "last epoch" and res["best_checkpoint"] == ""
    assert not list((tmp_path / "c" / "checkpoints").glob("best-*.ckpt"))
    assert res["metrics"]["val/miou"] >= 0
    assert res["untrained"]["val/miou"] >= 0
    saved = yaml.safe_load((tmp_path / "c" / "config.yaml").read_text())
    assert saved["model"]["stem"] == 8
    pred = Predictor.from_checkpoint(res["checkpoint"])
    ckpt = _weights(res["checkpoint"])
    assert torch.equal(pred.net.query_proj.weight, ckpt["net.query_proj.weight"])
    assert torch.equal(pred.net.image_proj.weight, ckpt["net.image_proj.weight"])
    assert pred.threshold == 0.5 and pred.config.model.stem == 8
    store = open_store(toy_store)
    scene = store.read_scene("toy00")
    rec = store.read_query("toy00", "q2")
    prob = pred.predict(scene, rec)
    assert prob.shape == (scene.num_points,) and prob.dtype == np.float32
    assert np.all((prob >= 0) & (prob <= 1))
    # predict == predict_points with q from the run's fusion config
    q = pred.query_embedding(rec)
    assert np.allclose(prob, pred.predict_points(scene.points, scene.colors, q))
    cfg, net = load_checkpoint(res["last_checkpoint"])
    assert cfg.model.query_dim == EMBED_DIM and net.query_proj.in_features == EMBED_DIM
    # the optimizer was built over W too
    module = Stage2Module(build_network(cfg.model), with_overrides(cfg, ["optim.scheduler=none"]))
    opt = module.configure_optimizers()["optimizer"]
    opt_params = {id(p) for g in opt.param_groups for p in g["params"]}
    assert id(module.net.query_proj.weight) in opt_params and id(module.net.image_proj.weight) in opt_params


def test_nan_loss_names_the_batch(toy_store):
    cfg = with_overrides(TrainConfig(), [*TINY, f"model.query_dim={EMBED_DIM}", "model.image_feature_dim=4"])
    dm = StoreDataModule(toy_store, cfg)
    dm.setup()
    ds = dm._dataset(dm.train_pairs[:4], train=False)
    batch = collate([ds[0], ds[1]])
    module = Stage2Module(build_network(cfg.model), cfg)
    module.model_step(batch, "train")  # finite
    with torch.no_grad():
        module.net.semantic_head.weight[0, 0] = float("nan")
    names = f"{dm.train_pairs[0][0]}/{dm.train_pairs[0][1]}"
    with pytest.raises(NonFiniteLossError, match=f"non-finite train loss.*{names}"):
        module.model_step(batch, "train")


def test_nan_loss_stops_a_run(toy_store, tmp_path):
    class _Poison(pl.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            with torch.no_grad():
                pl_module.net.query_proj.bias.fill_(float("nan"))

    with pytest.raises(NonFiniteLossError, match="scene/query: toy0"):
        _run(toy_store, tmp_path / "nan", epochs=1, evaluate_untrained=False, callbacks=[_Poison()])


def test_every_variant_yaml_loads_and_overrides_apply():
    from pathlib import Path

    from mllm3d.shared.errors import BadInputError

    root = Path(__file__).resolve().parents[2] / "configs" / "train"
    variants = {p.stem: load_config(p) for p in sorted(root.glob("*.yaml"))}
    assert {"default", "paper", "tiny", "no_token_for_query", "no_spatial", "no_view_filter"} <= set(variants)
    d = variants["default"]
    assert variants["no_token_for_query"].fusion.token_for_query is False
    assert variants["no_spatial"].loss.spatial is False and variants["no_view_filter"].fusion.view_filter is False
    assert variants["no_spatial"].model == d.model  # inherited through base:
    assert variants["paper"].model.down == [32, 64, 128, 256] and variants["paper"].model.feature_dim == 512
    cfg = load_config(root / "default.yaml", ["model.stem=4", "fusion.view_filter=false", "data.val_scenes=[a, b]"])
    assert cfg.model.stem == 4 and cfg.fusion.view_filter is False and cfg.data.val_scenes == ["a", "b"]
    with pytest.raises(BadInputError, match="unknown key 'model.stme'"):
        load_config(root / "default.yaml", ["model.stme=4"])
    with pytest.raises(BadInputError, match="loss.target"):
        load_config(None, ["loss.target=both"])


@pytest.mark.parametrize("logit", ["dot", "cosine"])
def test_pair_logits_without_token_for_query_score_each_pair_with_its_own_view(toy_store, logit):
    cfg = with_overrides(TrainConfig(), [*TINY, f"model.query_dim={EMBED_DIM}", "model.image_feature_dim=4",
                                         "fusion.token_for_query=false", f"model.logit={logit}"])
    dm = StoreDataModule(toy_store, cfg)
    dm.setup()
    ds = dm._dataset(dm.train_pairs, train=False)
    batch = collate([ds[0], ds[1]])
    module = Stage2Module(build_network(cfg.model), cfg)
    out = module.forward(batch)
    got = module._pair_logits(batch, out)
    f = out["semantic"][batch["point_voxel"][batch["pair_point"]]]
    t = module.net.project_query(batch["view_emb"])[batch["pair_view"]]
    if logit == "cosine":
        f, t = torch.nn.functional.normalize(f, dim=-1), torch.nn.functional.normalize(t, dim=-1)
    want = (f * t).sum(-1)
    if logit == "cosine":
        want = module.net.log_logit_scale.exp() * want + module.net.logit_bias
    assert got.shape == (batch["pair_point"].shape[0],) and torch.allclose(got, want, atol=1e-5)


def test_ground_truth_selection_only_by_name_and_reported_as_such(toy_store, tmp_path):
    res = _run(toy_store, tmp_path / "g", epochs=2, select_by="val-gt-miou")
    best = list((tmp_path / "g" / "checkpoints").glob("best-*.ckpt"))
    assert len(best) == 1 and res["checkpoint"] == res["best_checkpoint"] == str(best[0])
    assert "selected with labels, not label-free" in res["selection"]
    from mllm3d.stage2_train3d.predictor import resolve_checkpoint

    assert resolve_checkpoint(tmp_path / "g") == best[0]  # the run's own (named) selection
    from mllm3d.shared.errors import BadInputError

    with pytest.raises(BadInputError, match="select_by"):
        _run(toy_store, tmp_path / "x", epochs=1, select_by="best")


def test_checkpoint_records_its_training_scenes_and_eval_warns_on_them(toy_store, tmp_path):
    from types import SimpleNamespace

    from mllm3d.pipeline.evaluate_cli import trained_on_scored
    from mllm3d.stage2_train3d.datamodule import StoreDataModule

    res = _run(toy_store, tmp_path / "s", epochs=1)
    dm = StoreDataModule(toy_store, load_config(res["config_path"]))
    dm.list_pairs()
    train_scenes = sorted({s for s, _ in dm.train_pairs})
    val_pairs = list(dm.val_pairs)
    pred = Predictor.from_checkpoint(res["checkpoint"])
    assert pred.train_scenes == train_scenes and train_scenes
    method = SimpleNamespace(name="full", predictor=pred)
    assert trained_on_scored([method], val_pairs) == []  # held-out scenes: no warning
    lines = trained_on_scored([method], [*val_pairs, *dm.train_pairs])
    assert len(lines) == 1 and lines[0].startswith(f"full: {len(train_scenes)} of the ")
    assert "not held-out" in lines[0]
