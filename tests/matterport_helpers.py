"""Write synthetic rooms as Matterport3D house regions (region meshes, fsegs/semseg, images, .conf)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from mllm3d.shared.mesh_ply import write_mesh_ply
from mllm3d.shared.synthetic import (
    SyntheticConfig,
    camera_poses,
    generate_layout,
    intrinsic_matrix,
    render_view,
)
from tests.mesh_helpers import layout_mesh

GL = np.diag([1.0, -1.0, -1.0, 1.0])


def write_house(house: Path, seeds: list[int], cfg: SyntheticConfig, offset: float = 50.0) -> list[dict]:
    """Region ``i`` = synthetic room of ``seeds[i]`` shifted ``i * offset`` metres along x; one .conf of all images."""
    rs = house / "region_segmentations"
    for sub in ("undistorted_color_images", "undistorted_depth_images", "undistorted_camera_parameters"):
        (house / sub).mkdir(parents=True, exist_ok=True)
    k = intrinsic_matrix(cfg)
    conf = ["dataset matterport", f"n_images {len(seeds) * cfg.num_views}",
            "depth_directory undistorted_depth_images", "color_directory undistorted_color_images"]
    truth = []
    for r, seed in enumerate(seeds):
        layout = generate_layout(seed, cfg)
        shift = np.array([r * offset, 0.0, 0.0])
        v, f, col, box = layout_mesh(layout, 0.1)
        face_seg = box[f[:, 0]]  # one segment per box; a face's vertices share its box
        write_mesh_ply(rs / f"region{r}.ply", v + shift, f, col, segment_id=face_seg)
        (rs / f"region{r}.fsegs.json").write_text(json.dumps({"segIndices": face_seg.tolist()}))
        groups = [{"id": int(o), "objectId": int(o), "label": layout.instance_labels[int(o)],
                   "segments": [int(b) for b in np.flatnonzero(layout.box_instance == o)]}
                  for o in sorted(layout.instance_labels)]
        (rs / f"region{r}.semseg.json").write_text(json.dumps({"segGroups": groups}))
        conf.append("intrinsics_matrix " + " ".join(f"{x:.10g}" for x in k.ravel()))
        poses, depths = [], []
        for i, pose in enumerate(camera_poses(layout, seed, cfg)):
            depth, color, _ = render_view(layout, pose, k, cfg.image_size)
            pose = pose.copy()
            pose[:3, 3] += shift
            name = f"pano{r}x{i}"
            Image.fromarray(color).save(house / "undistorted_color_images" / f"{name}_i1_{i % 6}.jpg", quality=95)
            Image.fromarray(np.rint(depth * 4000).astype(np.uint16)).save(
                house / "undistorted_depth_images" / f"{name}_d1_{i % 6}.png")
            conf.append(f"scan {name}_d1_{i % 6}.png {name}_i1_{i % 6}.jpg "
                        + " ".join(f"{x:.12g}" for x in (pose @ GL).ravel()))
            poses.append(pose)
            depths.append(depth)
        truth.append({"layout": layout, "poses": poses, "depths": depths, "K": k, "vertex_instances":
                      layout.box_instance[box]})
    (house / "undistorted_camera_parameters" / f"{house.name}.conf").write_text("\n".join(conf) + "\n")
    return truth
