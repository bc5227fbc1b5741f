"""The functions a user scripts against, re-exported by ``import mllm3d`` (see the README, "Python").

    import mllm3d
    scene = mllm3d.open_source("synthetic:2:0").load("synth_0001")
    predictor = mllm3d.load_predictor("cache/demo/run")
    segmenter = mllm3d.load_backend("synthetic")
    pred = mllm3d.predict(predictor, segmenter, scene, "the chair closest to the window", target_ids=[12])

Each is a thin, documented entry over the module that does the work; the CLI commands call the same code.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mllm3d.shared.errors import BadInputError
from mllm3d.shared.scene import Query, Scene, SceneSource
from mllm3d.shared.store import open_store

if TYPE_CHECKING:
    from mllm3d.pipeline.predict import Prediction
    from mllm3d.stage1_pseudolabel.run_config import RunConfig
    from mllm3d.stage1_pseudolabel.runner import RunSummary
    from mllm3d.stage1_pseudolabel.segmenter import Segmenter
    from mllm3d.stage2_train3d.predictor import Predictor

__all__ = ["open_store", "open_source", "pseudolabel", "train", "load_predictor", "load_backend", "predict"]


def open_source(spec: str) -> SceneSource:
    """A scene source: ``synthetic[:N[:SEED]]``, ``scannet:PATH``, ``scannetpp:PATH``, ``matterport:PATH``, ..."""
    from mllm3d.shared.sources import open_source as _open

    return _open(spec)


def pseudolabel(config: str | Path | None = "synthetic", sets: Iterable[str] = (), **overrides: Any) -> RunSummary:
    """Stage 1: fill a pseudo-label store (``config`` a packaged name such as ``synthetic`` / ``lisa-7b``
    or a YAML path; ``sets`` ``key=value`` overrides; keyword overrides such as ``store=...``)."""
    from mllm3d.stage1_pseudolabel.run_config import RunConfig
    from mllm3d.stage1_pseudolabel.runner import run_pseudolabels

    cfg: RunConfig = RunConfig.load(config, sets, **{"progress": False, **overrides})
    return run_pseudolabels(cfg)


def train(store: str | Path, out: str | Path, config: str | Path | None = "default",
          overrides: Iterable[str] = (), resume: str | Path | None = None, progress: bool = False) -> dict[str, Any]:
    """Stage 2: train the 3D network on a store into run directory ``out``; returns the run's result
    (metrics, the selected checkpoint). ``out`` must be new unless ``resume`` is given."""
    from mllm3d.stage2_train3d.train import train_run

    return train_run(config, store, out, resume=resume, overrides=list(overrides), progress=progress, log=None)


def load_predictor(checkpoint: str | Path, device: str = "cpu") -> Predictor:
    """A trained 3D network: a ``.ckpt`` or a run directory of ``mllm3d train`` (the checkpoint it selected)."""
    from mllm3d.stage2_train3d.predictor import Predictor, resolve_checkpoint

    path = resolve_checkpoint(Path(checkpoint))
    if not path.is_file():
        raise BadInputError(f"{checkpoint}: no checkpoint found (give a .ckpt or a run directory of mllm3d train)")
    return Predictor.from_checkpoint(path, device=device)


def load_backend(name: str = "synthetic", config: str | Path | None = None, **options: Any) -> Segmenter:
    """The Stage 1 2D backend: ``synthetic`` (the seeded stand-in, reads the ground truth) or ``lisa``
    (``checkpoint=``, ``clip_path=``, ``device=``, ...); ``config`` a backend or run config YAML/name."""
    from mllm3d.pipeline.predict import load_backend as _load

    return _load(name, None if config is None else str(config), options)[0]


def predict(
    predictor: Predictor,
    segmenter: Segmenter,
    scene: Scene,
    text: str,
    *,
    target_ids: Sequence[int] | None = None,
    views: int | None = 4,
    seed: int = 0,
) -> Prediction:
    """A new text query on a scene: Stage 1 on ``views`` seeded views, q from the kept views, then the 3D
    network's per-point probabilities (``.prob``, ``.mask``). The synthetic stand-in cannot read text: it
    needs the ``target_ids`` its masks should show."""
    from mllm3d.pipeline.predict import fusion_of, new_query_id, predict_query

    if segmenter.name == "synthetic" and target_ids is None:
        raise BadInputError("the synthetic backend fabricates masks from the ground truth: give target_ids=[...]")
    query = Query(scene.scene_id, new_query_id(text), text, None if target_ids is None else list(target_ids),
                  "predict", None, {})
    return predict_query(scene, query, segmenter, predictor, fusion_of(predictor), views, seed)
