"""Write a scene's query-independent group (geometry, correspondences, thumbnails) to the store.

Views are streamed: each one is loaded once (colour + depth), gives its correspondences and thumbnail,
and is dropped before the next is loaded, so a scene with thousands of lazily-read frames never holds
more than one decoded frame (plus the small per-view results).
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from mllm3d.shared.geometry import Correspondences, DepthTest, ScenePoints
from mllm3d.shared.scene import Scene
from mllm3d.shared.store import PseudoLabelStore

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
    Returns False when the scene was already in the store (nothing is loaded then).
    """
    if store.has_scene(scene.scene_id) and not overwrite:
        return False
    n = len(scene.views)
    if n == 0:
        raise ValueError(f"scene {scene.scene_id}: no usable views")
    scene_points = ScenePoints(scene.points)  # sorted into culling blocks once, not per view
    size: tuple[int, int] | None = None
    frame_ids, intrinsics, poses, thumbs, parts = [], [], [], [], []
    for i in range(n):
        v = scene.views[i]
        if size is None:
            size = v.depth_size
        elif v.depth_size != size:
            raise ValueError(
                f"scene {scene.scene_id}: views have different depth sizes {sorted({size, v.depth_size})} "
                f"(frame {v.frame_id})"
            )
        parts.append(scene_points.project(v.intrinsic, v.pose, v.depth, depth_test))
        frame_ids.append(v.frame_id)
        intrinsics.append(np.asarray(v.intrinsic, dtype=np.float64)[:3, :3])
        poses.append(np.asarray(v.pose, dtype=np.float64))
        thumbs.append(thumbnail(v.color))
        del v  # the decoded frame goes before the next one is read
    assert size is not None
    return store.write_scene(
        scene.scene_id,
        points=scene.points,
        colors=scene.colors,
        frame_ids=np.array(frame_ids, dtype=np.int32),
        intrinsics=np.stack(intrinsics),
        poses=np.stack(poses),
        image_size=size,
        correspondences=Correspondences.from_views(parts),
        instance_ids=scene.instance_ids,
        instance_labels=scene.instance_labels,
        thumbnails=np.stack(thumbs),
        source=scene.source,
        depth_test=depth_test,
        overwrite=overwrite,
    )
