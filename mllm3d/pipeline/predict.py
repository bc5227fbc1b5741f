"""``mllm3d predict``: a new text query on a scene -> Stage 1 on k views -> q -> the trained 3D network -> PLY.

Steps (docs/method.md, "Inference"): draw k seeded views of the scene, run the 2D backend for the query on
each, assemble the views into a :class:`QueryRecord`, filter the views and compute the unified query
embedding q with the checkpoint's own fusion settings (Token-for-Query, or the plain mean for the
"w/o Token-for-Query" variant), score every point with the 3D network and write the mask as a PLY.

The ``synthetic`` backend is a stand-in for the MLLM, not a model: it reads the ground truth of the
synthetic scene, so a new query needs the target instance ids (``--target-ids``) from which it
fabricates the (noisy) masks and embeddings; or pick one of the source's own queries with
``--query-id``. Real text understanding needs ``--backend lisa``.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
import numpy as np
from rich.console import Console
from rich.table import Table

from mllm3d.pipeline.render import highlight_colors
from mllm3d.shared.errors import BadInputError, Mllm3dError
from mllm3d.shared.scene import Query, Scene, SceneSource
from mllm3d.shared.store import QueryRecord
from mllm3d.stage1_pseudolabel.segment_loop import segment_one_query
from mllm3d.stage1_pseudolabel.segmenter import Segmenter
from mllm3d.stage1_pseudolabel.view_sampling import parse_views
from mllm3d.stage2_train3d.fusion import FusionConfig, query_weights


@dataclass
class PredictConfig:
    """What to predict: which scene and query, and how Stage 1 runs for it."""

    source: str = "synthetic"
    scene_id: str = ""
    text: str | None = None  # a new query text
    query_id: str | None = None  # or one of the source's own queries
    target_ids: list[int] | None = None  # synthetic backend only: the objects its stand-in masks show
    backend: str = "synthetic"
    backend_config: dict[str, Any] = field(default_factory=dict)
    views: int | None = 4  # k views (None = every usable frame)
    seed: int = 0  # view-sampling seed
    min_valid_depth: float = 0.1


@dataclass
class Prediction:
    """The outcome of one prediction."""

    query: Query
    record: QueryRecord  # Stage 1's output for the new query (masks at the depth resolution)
    q: np.ndarray  # (D,) unified query embedding
    weights: np.ndarray  # (k,) view weights
    keep: np.ndarray  # (k,) views used
    reasons: list[str]
    prob: np.ndarray  # (N,) per-point probability
    threshold: float

    @property
    def mask(self) -> np.ndarray:
        return self.prob >= self.threshold


def new_query_id(text: str) -> str:
    """A stable id for a free-text query (seeds the synthetic backend's embedding and the view draw)."""
    return "predict-" + hashlib.sha1(text.encode("utf-8")).hexdigest()[:10]


def resolve_query(source: SceneSource, cfg: PredictConfig) -> Query:
    """The query to run: one of the source's queries (``query_id``) or a new one from ``text``."""
    if cfg.query_id is not None:
        matches = [q for q in source.queries() if q.scene_id == cfg.scene_id and q.query_id == cfg.query_id]
        if not matches:
            ids = [q.query_id for q in source.queries() if q.scene_id == cfg.scene_id]
            raise BadInputError(
                f"source {cfg.source!r}: scene {cfg.scene_id!r} has no query {cfg.query_id!r}"
                f" (its queries: {ids[:12]}{' ...' if len(ids) > 12 else ''})"
            )
        q = matches[0]
        if cfg.text:
            q = Query(q.scene_id, q.query_id, cfg.text, q.target_ids, q.source, q.kind, dict(q.extra))
        if cfg.target_ids is not None:
            q = Query(q.scene_id, q.query_id, q.text, list(cfg.target_ids), q.source, q.kind, dict(q.extra))
        return q
    if not cfg.text:
        raise BadInputError("give --text (a new query) or --query-id (one of the source's queries)")
    if cfg.backend == "synthetic" and cfg.target_ids is None:
        raise BadInputError(
            "the synthetic backend is a stand-in that fabricates masks from the ground truth: a new --text query "
            "needs --target-ids (the instance ids it should show), or use --query-id to pick a source query"
        )
    return Query(cfg.scene_id, new_query_id(cfg.text), cfg.text, cfg.target_ids, "predict", None, {})


def predict_query(
    scene: Scene,
    query: Query,
    segmenter: Segmenter,
    predictor: Any,
    fusion: FusionConfig,
    views: int | None = 4,
    seed: int = 0,
    min_valid_depth: float = 0.1,
) -> Prediction:
    """Stage 1 for the query, q from the kept views, then the network's per-point probabilities."""
    record = segment_one_query(scene, query, segmenter, views, seed, min_valid_depth)
    q, w, keep, reasons = query_weights(record, fusion)
    if not np.any(keep):
        kinds = Counter(r if r == "no [SEG]" else f"{r.split(' ')[0]} too low" for r in reasons)
        why = ", ".join(f"{n}x {r}" for r, n in kinds.most_common()) or "no views"
        raise BadInputError(
            f"query {query.scene_id}/{query.query_id}: no view survives the view filter ({why}; the checkpoint's "
            f"fusion.min_confidence={fusion.min_confidence:g}, fusion.min_area={fusion.min_area:g}), so there is no "
            "query embedding to predict with; try more --views or another --seed"
        )
    prob = np.asarray(predictor.predict_points(scene.points, scene.colors, q), dtype=np.float32)
    if prob.shape != (scene.num_points,):
        raise BadInputError(f"predictor returned {prob.shape} scores for {scene.num_points} points")
    return Prediction(query, record, q, w, keep, reasons, prob, float(predictor.threshold))


def write_prediction_ply(path: str | Path, scene: Scene, pred: Prediction) -> Path:
    """Target points red over the scene's colours dimmed; ``score`` and ``mask`` as scalar fields."""
    from mllm3d.shared.ply import write_ply

    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fields: dict[str, np.ndarray] = {"score": pred.prob.astype(np.float32), "mask": pred.mask.astype(np.uint8)}
    if scene.instance_ids is not None:
        fields["instance"] = scene.instance_ids.astype(np.int32)
    return write_ply(p, scene.points, highlight_colors(scene.colors, pred.mask), **fields)


def fusion_of(predictor: Any) -> FusionConfig:
    """The fusion settings the checkpoint was trained with (defaults if it does not say)."""
    cfg = getattr(predictor, "config", None)
    fusion = getattr(cfg, "fusion", None)
    return fusion if isinstance(fusion, FusionConfig) else FusionConfig()


def view_table(pred: Prediction, scene: Scene) -> Table:
    t = Table(title=f"Stage 1 views for {pred.query.query_id}: {pred.query.text!r}")
    for c in ("frame", "[SEG]", "confidence", "mask area", "ω", "status"):
        t.add_column(c, justify="left" if c == "status" else "right")
    r = pred.record
    for j in range(r.num_views):
        t.add_row(
            str(scene.views[int(r.view_index[j])].frame_id),
            "yes" if r.has_seg[j] else "no",
            f"{float(r.confidence[j]):.3f}",
            f"{float(r.masks[j].mean()):.4f}",
            f"{float(pred.weights[j]):.3f}",
            pred.reasons[j],
        )
    return t


def parse_ids(text: str | None) -> list[int] | None:
    """``"3,7"`` -> [3, 7]; ``""`` -> [] (zero-target); None -> None."""
    if text is None:
        return None
    try:
        return [int(t) for t in text.replace(" ", "").split(",") if t]
    except ValueError:
        raise BadInputError(f"--target-ids must be comma-separated integers, got {text!r}") from None


def load_backend(name: str, config_path: str | None, overrides: dict[str, Any]) -> tuple[Segmenter, dict[str, Any]]:
    """The Stage 1 backend with its config YAML (flat or a run config) and command-line overrides."""
    from mllm3d.stage1_pseudolabel.run_config import load_backend_config
    from mllm3d.stage1_pseudolabel.segmenter import build_segmenter

    cfg: dict[str, Any] = load_backend_config(config_path) if config_path else {}
    cfg.update({k: v for k, v in overrides.items() if v is not None})
    return build_segmenter(name, cfg), cfg


def summary_lines(pred: Prediction, ply: Path, scene: Scene, gt: Sequence[int] | None = None) -> list[str]:
    n = scene.num_points
    lines = [
        f"points: {n}, predicted target points: {int(pred.mask.sum())} ({pred.mask.mean():.1%}), "
        f"mean score {float(pred.prob.mean()):.4f} (mean over target points "
        f"{float(pred.prob[pred.mask].mean()) if pred.mask.any() else float('nan'):.4f}), threshold {pred.threshold:g}",
        f"views kept: {int(pred.keep.sum())} of {pred.record.num_views}",
        f"PLY: {ply}",
    ]
    if gt is not None and scene.instance_ids is not None:
        from mllm3d.shared.metrics import gt_mask, point_iou

        lines.append(f"IoU against the targets {list(gt)}: {point_iou(pred.mask, gt_mask(scene.instance_ids, gt)):.4f}")
    return lines


@click.command("predict")
@click.option("--source", default="synthetic", show_default=True, help="Scene source spec (as for pseudolabel).")
@click.option("--scene", "scene_id", required=True, help="Scene id in the source.")
@click.option("--text", default=None, help="A new query text.")
@click.option("--query-id", default=None, help="Use one of the source's own queries instead of --text.")
@click.option("--target-ids", default=None,
              help="Synthetic backend only: comma-separated instance ids the stand-in masks should show.")
@click.option("--checkpoint", "checkpoint", required=True, type=click.Path(path_type=Path),
              help="Trained 3D network: a .ckpt, or a run directory of mllm3d train (its best checkpoint).")
@click.option("--backend", type=click.Choice(["synthetic", "lisa"]), default="synthetic", show_default=True,
              help="Stage 1 backend (synthetic: the stand-in that reads the ground truth; lisa: the MLLM).")
@click.option("--backend-config", "backend_config_path", default=None, type=click.Path(dir_okay=False),
              help="Backend config YAML (flat, or a Stage 1 run config).")
@click.option("--checkpoint-2d", default=None, help="LISA checkpoint directory (backend config 'checkpoint').")
@click.option("--clip", default=None, help="CLIP vision tower directory (backend config 'clip_path').")
@click.option("--views", default="4", show_default=True, help="Views per query (k) or 'all'.")
@click.option("--seed", type=int, default=0, show_default=True, help="View-sampling seed.")
@click.option("--out", "out", type=click.Path(path_type=Path), default=Path("cache/predict/prediction.ply"),
              show_default=True, help="Output PLY.")
@click.option("--device", default="cpu", show_default=True, help="Device of the 3D network.")
def predict_cmd(
    source: str,
    scene_id: str,
    text: str | None,
    query_id: str | None,
    target_ids: str | None,
    checkpoint: Path,
    backend: str,
    backend_config_path: str | None,
    checkpoint_2d: str | None,
    clip: str | None,
    views: str,
    seed: int,
    out: Path,
    device: str,
) -> None:
    """Segment a scene for a text query with a trained 3D network; write the mask as a coloured PLY."""
    from mllm3d.shared.sources import open_source
    from mllm3d.stage2_train3d.predictor import Predictor, resolve_checkpoint

    console = Console()
    try:
        if out.is_dir():
            raise BadInputError(f"{out}: --out is an existing directory; give the path of the .ply file to write")
        cfg = PredictConfig(
            source=source, scene_id=scene_id, text=text, query_id=query_id, target_ids=parse_ids(target_ids),
            backend=backend, views=parse_views(views), seed=seed,
        )
        checkpoint = resolve_checkpoint(checkpoint)
        if not checkpoint.is_file():
            raise BadInputError(f"checkpoint {checkpoint} not found")
        src = open_source(source)
        query = resolve_query(src, cfg)
        scene = src.load(scene_id)
        segmenter, _ = load_backend(backend, backend_config_path, {"checkpoint": checkpoint_2d, "clip_path": clip})
        predictor = Predictor.from_checkpoint(checkpoint, device=device)
        with console.status(f"Stage 1 ({backend}) on {cfg.views or 'all'} views, then the 3D network"):
            pred = predict_query(scene, query, segmenter, predictor, fusion_of(predictor), cfg.views, seed,
                                 cfg.min_valid_depth)
        ply = write_prediction_ply(out, scene, pred)
    except Mllm3dError as exc:
        raise click.ClickException(str(exc)) from exc
    console.print(view_table(pred, scene))
    if backend == "synthetic":
        console.print("[dim]synthetic backend: a stand-in that fabricates masks from the given target ids[/dim]")
    for line in summary_lines(pred, ply, scene, query.target_ids):
        console.print(line)
