"""``train_run``: the Python entry point of a Stage 2 training run (the CLI is a thin layer over it).

A run directory holds::

    <out>/config.yaml                 the resolved config (dims and spatial mode filled in from the store)
    <out>/checkpoints/last.ckpt       end of the latest epoch (resume with resume="last"); the run's checkpoint
    <out>/checkpoints/best-*.ckpt     only with select_by="val-gt-miou": best ground-truth val/miou (not label-free)
    <out>/logs/version_*/metrics.csv  CSV logs (TensorBoard logs too when tensorboard is installed)
    <out>/result.json                 what train_run returned
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback, ModelCheckpoint, RichProgressBar
from pytorch_lightning.loggers import CSVLogger
from pytorch_lightning.utilities.exceptions import SIGTERMException

from mllm3d.shared.errors import BadInputError, Mllm3dError
from mllm3d.shared.store import open_store
from mllm3d.stage2_train3d.config import (
    TrainConfig,
    config_from_dict,
    load_config,
    save_config,
    with_overrides,
)
from mllm3d.stage2_train3d.datamodule import StoreDataModule
from mllm3d.stage2_train3d.model import build_network
from mllm3d.stage2_train3d.module import Stage2Module
from mllm3d.stage2_train3d.resume import read_resume_point, resolve_resume

METRICS = ("val/miou", "val/acc25", "val/acc50")


@contextlib.contextmanager
def quiet_lightning() -> Iterator[None]:
    """Lightning's info lines (devices, tips, checkpoint restores) off for the block, levels restored after:
    for callers that print their own progress (demo, benchmark, bench)."""
    loggers = [logging.getLogger(n) for n in ("pytorch_lightning", "lightning.pytorch", "lightning_fabric")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def as_config(config: TrainConfig | Mapping[str, Any] | str | Path | None, overrides: Iterable[str] = ()) -> TrainConfig:
    """A TrainConfig from a config object, a dict, a YAML path or None (defaults), plus overrides."""
    if isinstance(config, TrainConfig):
        cfg = config
    elif isinstance(config, Mapping):
        cfg = config_from_dict(config)
    else:  # a name or a path: the overrides are checked against that file's values, naming it
        return load_config(config, overrides)
    return with_overrides(cfg, overrides)


def resolve_from_store(cfg: TrainConfig, dm: StoreDataModule) -> tuple[TrainConfig, list[str]]:
    """Fill in what the store determines: [SEG] embedding width, image-feature width, L_spatial mode.

    Returns the resolved config and human-readable notes (logged by the caller).
    """
    store = open_store(dm.store_path, "r")
    scene_id, query_id = dm.train_pairs[0]
    rec = store.read_query(scene_id, query_id, with_features=True)
    notes = []
    sets = []
    d = int(rec.seg_embeddings.shape[1])
    if d != cfg.model.query_dim:
        notes.append(f"model.query_dim {cfg.model.query_dim} -> {d} ([SEG] embedding width in the store)")
        sets.append(f"model.query_dim={d}")
    has_f = rec.image_features is not None
    if has_f:
        c = int(rec.image_features.shape[1])
        if c != cfg.model.image_feature_dim:
            notes.append(f"model.image_feature_dim {cfg.model.image_feature_dim} -> {c} (image features in the store)")
            sets.append(f"model.image_feature_dim={c}")
    if cfg.loss.spatial:
        mode = cfg.loss.spatial_mode
        if mode == "auto":
            mode = "features" if has_f else "prototype"
            sets.append(f"loss.spatial_mode={mode}")
        if mode == "features" and not has_f:
            raise BadInputError(
                f"{dm.store_path}: loss.spatial_mode=features but query {scene_id}/{query_id} has no image_features; "
                "use spatial_mode=prototype (geometric) or auto"
            )
        what = (
            f"image features C={rec.image_features.shape[1]}, form {cfg.loss.spatial_form!r} (loss.spatial_form)"
            if mode == "features"
            else "geometric prototype contrast (the store has no image features)"
        )
        notes.append(f"L_spatial: {what}, lambda={cfg.loss.spatial_weight:g}")
    else:
        notes.append("L_spatial: off")
    return with_overrides(cfg, sets), notes


def require_surviving_views(dm: StoreDataModule, cfg: TrainConfig) -> None:
    """BadInputError when the view filter drops every view of every training query (the loss would be 0).

    Stops at the first training query with a usable view, so a normal store costs one query read.
    """
    from collections import Counter

    from mllm3d.stage2_train3d.fusion import query_weights

    store = open_store(dm.store_path, "r")
    reasons: Counter[str] = Counter()
    for scene_id, query_id in dm.train_pairs:
        rec = store.read_query(scene_id, query_id, with_features=False)
        _, weights, _, why = query_weights(rec, cfg.fusion)
        if float(weights.sum()) > 0:
            return
        reasons.update(r.split(" ")[0] if r != "no [SEG]" else r for r in why)
    f = cfg.fusion
    raise BadInputError(
        f"{dm.store_path}: no (point, view) pair survives the view filter in any of the {len(dm.train_pairs)} "
        f"training queries (views dropped: {dict(reasons)}; fusion.min_confidence={f.min_confidence:g}, "
        f"fusion.min_area={f.min_area:g}); training would see a loss of 0. Lower fusion.min_confidence / "
        "fusion.min_area or set fusion.view_filter=false (--set KEY=VALUE)"
    )


class TrainingInterrupted(Mllm3dError):
    """The run got SIGTERM (a scheduler's preemption or time limit) or SIGINT (Ctrl-C) and stopped before it
    finished; ``exit_code`` is the shell's 128 + signal number."""

    def __init__(self, message: str, exit_code: int = 143) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@contextlib.contextmanager
def _reported_interrupts(out: Path, trainer: pl.Trainer) -> Iterator[None]:
    """Turn Lightning's ways of stopping on a signal inside ``fit``/``validate`` into TrainingInterrupted:
    SIGTERM raises SIGTERMException (a SystemExit with code 0); Ctrl-C ends in ``sys.exit(1)`` raised while
    handling the KeyboardInterrupt (after its graceful shutdown). Any other SystemExit passes through."""
    try:
        yield
    except SIGTERMException as exc:
        raise _interrupted(out, trainer) from exc
    except SystemExit as exc:
        if exc.code == 1 and isinstance(exc.__context__, KeyboardInterrupt):
            raise _interrupted(out, trainer, "SIGINT") from exc
        raise


def _loggers(out: Path) -> list[Any]:
    loggers: list[Any] = [CSVLogger(save_dir=str(out), name="logs")]
    if importlib.util.find_spec("tensorboard") is not None:
        from pytorch_lightning.loggers import TensorBoardLogger

        loggers.append(TensorBoardLogger(save_dir=str(out), name="tb"))
    return loggers


def _metrics(results: list[Mapping[str, Any]] | None) -> dict[str, float]:
    if not results:
        return {}
    return {k: float(v) for k, v in results[0].items() if k.startswith("val/")}


def build_trainer(
    cfg: TrainConfig,
    out: Path,
    callbacks: list[Callback],
    progress: bool,
    fast_dev_run: bool | int = False,
    **kwargs: Any,
) -> pl.Trainer:
    """The Lightning Trainer of a run (devices/strategy/num_nodes/accelerator from cfg.trainer)."""
    t = cfg.trainer
    if progress:
        callbacks = [*callbacks, RichProgressBar()]
    args: dict[str, Any] = dict(
        max_epochs=cfg.optim.epochs,
        accelerator=t.accelerator,
        devices=t.devices,
        strategy=t.strategy,
        num_nodes=t.num_nodes,
        precision=t.precision,
        deterministic=t.deterministic,
        log_every_n_steps=t.log_every_n_steps,
        check_val_every_n_epoch=t.check_val_every_n_epoch,
        gradient_clip_val=t.gradient_clip_val or None,
        limit_train_batches=t.limit_train_batches,
        limit_val_batches=t.limit_val_batches,
        use_distributed_sampler=False,  # StoreDataModule shards by rank itself (deterministic resume)
        default_root_dir=str(out),
        enable_progress_bar=progress,
        enable_model_summary=progress,
        callbacks=callbacks,
        logger=_loggers(out),
        fast_dev_run=fast_dev_run,
    )
    args.update(kwargs)
    return pl.Trainer(**args)


def train_run(
    config: TrainConfig | Mapping[str, Any] | str | Path | None,
    store_path: str | Path,
    out_dir: str | Path,
    resume: str | Path | None = None,
    *,
    overrides: Iterable[str] = (),
    callbacks: list[Callback] | None = None,
    progress: bool = True,
    evaluate_untrained: bool = True,
    fast_dev_run: bool | int = False,
    trainer_kwargs: Mapping[str, Any] | None = None,
    log: Callable[[str], None] | None = logging.getLogger(__name__).info,
    select_by: str = "last",
) -> dict[str, Any]:
    """Train one Stage 2 run and return its outcome.

    Returns ``{"checkpoint" (the selected one), "selection", "best_checkpoint" ("" unless selected by
    ground truth), "last_checkpoint", "config_path", "out_dir", "metrics" (the selected checkpoint's
    val/miou, val/acc25, val/acc50, val/proj_*), "untrained" (same keys before training, {} if skipped),
    "notes"}``. ``resume`` is None, "last" or a checkpoint path.

    ``select_by`` is ``"last"`` (default, label-free: the final weights) or ``"val-gt-miou"``: keep the
    checkpoint with the best ground-truth val/miou — model selection with labels, which a label-free
    method must not do unless asked; the result says so.
    """
    if select_by not in SELECTIONS:
        raise BadInputError(f"select_by {select_by!r}: expected one of {sorted(SELECTIONS)}")
    say = log or (lambda _msg: None)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cfg = as_config(config, overrides)
    dm = StoreDataModule(store_path, cfg)
    dm.list_pairs()
    cfg, notes = resolve_from_store(cfg, dm)
    dm.config = cfg
    require_surviving_views(dm, cfg)
    say(
        f"store {store_path}: {len(dm.train_pairs)} train / {len(dm.val_pairs)} val queries "
        f"({len({s for s, _ in dm.train_pairs})} / {len({s for s, _ in dm.val_pairs})} scenes)"
    )
    for note in notes:
        say(note)
    ckpt_path = resolve_resume(resume, out)
    point = None
    if ckpt_path is not None:
        point = read_resume_point(ckpt_path)  # one read: a bad checkpoint is refused before any work
        point.check_epochs(cfg.optim.epochs)
        for note in point.config_differences(cfg):
            say(note)
        dm.start_epoch = point.start_epoch

    if cfg.trainer.cpu_threads > 0:
        torch.set_num_threads(cfg.trainer.cpu_threads)
    pl.seed_everything(cfg.trainer.seed, workers=True, verbose=False)
    net = build_network(cfg.model)
    module = Stage2Module(net, cfg)
    if point is not None:
        point.check_fits(module)
    config_path = save_config(cfg, out / "config.yaml")  # after every check: a refused resume changes nothing
    module.train_scenes = sorted({s for s, _ in dm.train_pairs})
    by_gt = select_by == "val-gt-miou"
    best_ckpt = ModelCheckpoint(  # ground-truth model selection: only when asked for by name
        dirpath=str(out / "checkpoints"),
        filename="best-epoch{epoch:03d}-miou{val/miou:.4f}",
        auto_insert_metric_name=False,
        monitor="val/miou",
        mode="max",
        save_top_k=1,
    ) if by_gt else None
    # Lightning 2.6 refreshes save_last only when a top-k checkpoint is saved in the same step, so
    # last.ckpt is its own monitor-free checkpoint, rewritten at the end of every epoch
    last_ckpt = ModelCheckpoint(
        dirpath=str(out / "checkpoints"),
        filename="last",
        monitor=None,
        save_top_k=1,
        enable_version_counter=False,
        save_on_train_epoch_end=True,
    )
    trainer = build_trainer(
        cfg,
        out,
        [*([best_ckpt] if best_ckpt else []), last_ckpt, *(callbacks or [])],
        progress,
        fast_dev_run=fast_dev_run,
        **dict(trainer_kwargs or {}),
    )
    has_val = bool(dm.val_pairs)
    untrained: dict[str, float] = {}
    with _reported_interrupts(out, trainer):
        if evaluate_untrained and has_val and ckpt_path is None and not fast_dev_run:
            untrained = _metrics(trainer.validate(module, datamodule=dm, verbose=False))
            say("untrained: " + _fmt(untrained))
        trainer.fit(module, datamodule=dm, ckpt_path=ckpt_path)

    best = (best_ckpt.best_model_path or "") if best_ckpt else ""
    last = str(out / "checkpoints" / "last.ckpt") if (out / "checkpoints" / "last.ckpt").is_file() else ""
    selection = SELECTIONS[select_by] if not by_gt or best else SELECTIONS["last"]
    metrics: dict[str, float] = {}
    if has_val and not fast_dev_run:
        with _reported_interrupts(out, trainer):
            metrics = _metrics(trainer.validate(module, datamodule=dm, ckpt_path=best or None, verbose=False))
        say(f"trained ({selection}): " + _fmt(metrics))
    result = {
        "checkpoint": best or last,
        "selection": selection,
        "best_checkpoint": best,
        "last_checkpoint": last,
        "config_path": str(config_path),
        "out_dir": str(out),
        "metrics": metrics,
        "untrained": untrained,
        "notes": notes,
    }
    if trainer.is_global_zero:
        (out / "result.json").write_text(json.dumps(result, indent=2, default=_json_default), encoding="utf-8")
    return result


#: select_by -> how the result names the selected weights
SELECTIONS = {
    "last": "last epoch",
    "val-gt-miou": "best ground-truth val/miou checkpoint (selected with labels, not label-free)",
}


def _interrupted(out: Path, trainer: pl.Trainer, signal_name: str = "SIGTERM") -> TrainingInterrupted:
    last = out / "checkpoints" / "last.ckpt"
    how = (
        f"rerun the same command with --resume last to continue from {last} (end of the last finished epoch)"
        if last.is_file()
        else "no epoch finished, so there is no checkpoint: rerun the same command with --overwrite to start again"
    )
    return TrainingInterrupted(
        f"{out}: training interrupted by {signal_name} in epoch {trainer.current_epoch}, no result was written; {how}",
        exit_code=130 if signal_name == "SIGINT" else 143,
    )


def _json_default(x: Any) -> Any:
    return float(x) if isinstance(x, float) and math.isnan(x) else str(x)


def _fmt(m: Mapping[str, float]) -> str:
    return "  ".join(f"{k.removeprefix('val/')}={m[k]:.4f}" for k in (*METRICS, "val/proj_miou") if k in m)
