"""``mllm3d view``: a Rerun ``.rrd`` recording of one query of a store, to look at in 3D.

One entity tree (``world/...``): the scene points with RGB; switchable point layers (the fused
pseudo-label probability, the 2D-projection mask, the network's score and mask with ``--checkpoint`` or
``--prediction``, the ground truth where present); every view of the query as a posed pinhole camera
(Transform3D from the stored camera-to-world pose, Pinhole from the intrinsics) with its thumbnail and
its mask as a segmentation overlay; per-view α (confidence), ω (weight), kept/dropped and the reason;
the query text and per-query metrics as a TextDocument and scalars.

rerun-sdk is the optional extra ``viz``; it is imported inside the functions only.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click
import numpy as np

from mllm3d.shared.errors import BadInputError, Mllm3dError
from mllm3d.shared.metrics import gt_mask, point_iou
from mllm3d.shared.store import open_store, safe_key

if TYPE_CHECKING:
    from mllm3d.stage2_train3d.fusion import FusionConfig

INSTALL_VIZ = 'pip install "mllm-for3d[viz]"'  # the optional extra that brings rerun-sdk
MISSING_RERUN = f"mllm3d view needs rerun-sdk: {INSTALL_VIZ}"


def require_rerun():  # noqa: ANN201 - returns the rerun module
    try:
        import rerun as rr
    except ImportError as exc:
        raise BadInputError(MISSING_RERUN) from exc
    return rr


def _layer_colors(values: np.ndarray) -> np.ndarray:
    """(N,) values in [0,1] -> (N,3) uint8, blue (0) to red (1)."""
    v = np.clip(np.nan_to_num(np.asarray(values, np.float32)), 0.0, 1.0)
    return np.stack([255 * v, np.zeros_like(v), 255 * (1 - v)], axis=1).astype(np.uint8)


def _mask_colors(mask: np.ndarray, colors: np.ndarray) -> np.ndarray:
    out = (np.asarray(colors, np.float32) * 0.35).astype(np.uint8)
    out[np.asarray(mask, bool)] = (255, 0, 0)
    return out


def write_recording(
    store_path: Path,
    scene_id: str,
    query_id: str,
    out: Path,
    checkpoint: Path | None = None,
    prediction: np.ndarray | None = None,
    fusion: FusionConfig | None = None,
    threshold: float = 0.5,
) -> dict[str, float]:
    """Write the recording of one query to ``out``; returns the per-query metrics it logged.

    ``prediction`` (N,) scores are masked at ``threshold``; ``fusion`` sets the view filter and vote
    threshold of the fused layer (default: the checkpoint's, else FusionConfig's defaults)."""
    rr = require_rerun()
    from mllm3d.pipeline.query_inspection import inspect_query
    from mllm3d.stage2_train3d.fusion import FusionConfig

    store = open_store(store_path, "r")
    cfg = fusion or FusionConfig()
    predictor = None
    if checkpoint is not None:
        from mllm3d.stage2_train3d.predictor import Predictor

        predictor = Predictor.from_checkpoint(checkpoint)
        cfg = fusion or predictor.config.fusion
    ins = inspect_query(store, scene_id, query_id, cfg)
    scene, rec, fused = ins.scene, ins.record, ins.fused
    if predictor is not None:
        prediction = predictor.predict(scene, rec)
        threshold = predictor.threshold
    if prediction is not None and prediction.shape != (scene.num_points,):
        raise BadInputError(f"prediction has shape {prediction.shape}, the scene has {scene.num_points} points")

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    stream = rr.RecordingStream("mllm3d-view", recording_id=f"{scene_id}/{query_id}")
    stream.save(str(out))
    pts = scene.points
    stream.log("world", rr.ViewCoordinates.RIGHT_HAND_Z_UP, static=True)
    stream.log("world/scene/rgb", rr.Points3D(pts, colors=scene.colors), static=True)
    label = fused.seen & (fused.prob >= cfg.vote_threshold)
    stream.log("world/scene/fused_prob", rr.Points3D(pts, colors=_layer_colors(fused.prob)), static=True)
    stream.log("world/scene/projection_mask", rr.Points3D(pts, colors=_mask_colors(label, scene.colors)), static=True)
    metrics: dict[str, float] = {}
    gt = None
    tids = rec.query.target_ids
    if scene.instance_ids is not None and tids is not None:
        gt = gt_mask(scene.instance_ids, tids)
        stream.log("world/scene/ground_truth", rr.Points3D(pts, colors=_mask_colors(gt, scene.colors)), static=True)
        metrics["projection_iou"] = point_iou(label, gt)
    if prediction is not None:
        pmask = prediction >= threshold
        stream.log("world/scene/network_score", rr.Points3D(pts, colors=_layer_colors(prediction)), static=True)
        stream.log("world/scene/network_mask", rr.Points3D(pts, colors=_mask_colors(pmask, scene.colors)), static=True)
        if gt is not None:
            metrics["network_iou"] = point_iou(pmask, gt)
    h, w = scene.image_size
    for r in ins.rows:
        cam = f"world/views/{r.index}"
        pose = np.asarray(scene.poses[r.view], np.float64)
        stream.log(cam, rr.Transform3D(translation=pose[:3, 3], mat3x3=pose[:3, :3]), static=True)
        stream.log(cam, rr.Pinhole(image_from_camera=scene.intrinsics[r.view], resolution=[w, h]), static=True)
        if ins.thumbnails is not None:
            from PIL import Image

            img = np.asarray(Image.fromarray(ins.thumbnails[r.index]).resize((w, h), Image.NEAREST))
            stream.log(f"{cam}/image", rr.Image(img), static=True)
        stream.log(f"{cam}/mask", rr.SegmentationImage(rec.masks[r.index].astype(np.uint8)), static=True)
        stream.log(f"{cam}/alpha", rr.Scalars(r.confidence), static=True)
        stream.log(f"{cam}/omega", rr.Scalars(r.weight), static=True)
        status = "kept" if r.kept else f"dropped: {r.reason}"
        stream.log(f"{cam}/status", rr.TextDocument(
            f"view #{r.index}, frame {r.frame_id}: {status}\nα (confidence) = {r.confidence:.3f}\n"
            f"ω (weight) = {r.weight:.3f}\n[SEG]: {'yes' if r.has_seg else 'no'}"), static=True)
    lines = [f"# {rec.query.text}", "", f"scene {scene_id}, query {query_id}, targets {tids}",
             f"{int(ins.fused.keep.sum())} of {rec.num_views} views kept"]
    lines += [f"- {k}: {v:.4f}" for k, v in metrics.items()]
    stream.log("query", rr.TextDocument("\n".join(lines), media_type=rr.MediaType.MARKDOWN), static=True)
    for k, v in metrics.items():
        stream.log(f"metrics/{k}", rr.Scalars(v), static=True)
    stream.flush()
    stream.disconnect()
    return metrics


def default_path(scene: str, query_id: str) -> Path:
    return Path("cache/view") / f"{safe_key(scene)}__{safe_key(query_id)}.rrd"


@click.command("view")
@click.option("--store", "store_path", required=True, type=click.Path(path_type=Path), help="Pseudo-label store.")
@click.option("--scene", required=True, help="Scene id.")
@click.option("--query", "query_id", default=None, help="Query id", show_default="the scene's first query")
@click.option("--checkpoint", type=click.Path(path_type=Path), default=None, help="Stage 2 checkpoint or run dir.")
@click.option("--prediction", type=click.Path(path_type=Path), default=None,
              help="A .npy of (N,) per-point scores (instead of --checkpoint).")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Recording path", show_default="cache/view/<scene>__<query>.rrd")
@click.option("--spawn", is_flag=True, help="Also open the Rerun viewer.")
def view_cmd(store_path: Path, scene: str, query_id: str | None, checkpoint: Path | None,
             prediction: Path | None, out: Path | None, spawn: bool) -> None:
    """Write a Rerun recording of a query: points, layers, posed cameras with images and masks."""
    try:
        require_rerun()
        if query_id is None:
            ids = open_store(store_path, "r").query_ids(scene)
            if not ids:
                raise BadInputError(f"{store_path}: scene {scene!r} has no complete queries")
            query_id = ids[0]
        pred = np.load(prediction).astype(np.float32).reshape(-1) if prediction is not None else None
        path = out or default_path(scene, query_id)
        metrics = write_recording(store_path, scene, query_id, path, checkpoint, pred)
    except Mllm3dError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"recording: {path}  (open it with: rerun {path})")
    for k, v in metrics.items():
        click.echo(f"{k}: {v:.4f}")
    if spawn:
        import subprocess
        import sys

        subprocess.Popen([sys.executable, "-m", "rerun", str(path)])  # the viewer, detached from this process
