"""Write a scene's query-independent group (geometry, correspondences, thumbnails) to the store."""

from __future__ import annotations

import numpy as np
from PIL import Image

from shared.geometry import DepthTest, compute_correspondences
from shared.scene import Scene
from shared.store import PseudoLabelStore

THUMB_WIDTH = 160


def thumbnail(color: np.ndarray, width: int = THUMB_WIDTH) -> np.ndarray:
    """RGB thumbnail of ``color`` with the given width (aspect kept)."""
    h, w = color.shape[:2]
    height = max(1, round(h * width / w))
    return np.asarray(Image.fromarray(color).resize((width, height), Image.BILINEAR))


def store_scene(
    store: PseudoLabelStore,
    scene: Scene,
    depth_test: DepthTest = DepthTest(),
    overwrite: bool = False,
) -> bool:
    """Compute correspondences of all the scene's views once and write the scene group.

    All views must share one depth resolution (the mask resolution of the store).
    Returns False when the scene was already in the store.
    """
    if store.has_scene(scene.scene_id) and not overwrite:
        return False
    views = [scene.views[i] for i in range(len(scene.views))]
    if not views:
        raise ValueError(f"scene {scene.scene_id}: no usable views")
    sizes = {v.depth_size for v in views}
    if len(sizes) != 1:
        raise ValueError(f"scene {scene.scene_id}: views have different depth sizes {sorted(sizes)}")
    corr = compute_correspondences(
        scene.points, [v.intrinsic for v in views], [v.pose for v in views], [v.depth for v in views], depth_test
    )
    return store.write_scene(
        scene.scene_id,
        points=scene.points,
        colors=scene.colors,
        frame_ids=np.array([v.frame_id for v in views], dtype=np.int32),
        intrinsics=np.stack([np.asarray(v.intrinsic, dtype=np.float64)[:3, :3] for v in views]),
        poses=np.stack([np.asarray(v.pose, dtype=np.float64) for v in views]),
        image_size=sizes.pop(),
        correspondences=corr,
        instance_ids=scene.instance_ids,
        instance_labels=scene.instance_labels,
        thumbnails=np.stack([thumbnail(v.color) for v in views]),
        source=scene.source,
        depth_test=depth_test,
        overwrite=overwrite,
    )
