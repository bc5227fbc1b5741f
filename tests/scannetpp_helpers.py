"""Write a synthetic scene in the ScanNet++ release layout (mesh, segments, COLMAP DSLR cameras, images)."""

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
from mllm3d.shared.synthetic_layout import Layout
from tests.mesh_helpers import layout_mesh


def matrix_to_quat(r: np.ndarray) -> tuple[float, float, float, float]:
    """(qw, qx, qy, qz) of a rotation matrix (Shepperd's method)."""
    tr = np.trace(r)
    if tr > 0:
        s = 2.0 * np.sqrt(tr + 1.0)
        return 0.25 * s, (r[2, 1] - r[1, 2]) / s, (r[0, 2] - r[2, 0]) / s, (r[1, 0] - r[0, 1]) / s
    i = int(np.argmax(np.diag(r)))
    j, k = (i + 1) % 3, (i + 2) % 3
    s = 2.0 * np.sqrt(1.0 + r[i, i] - r[j, j] - r[k, k])
    q = np.zeros(4)
    q[0] = (r[k, j] - r[j, k]) / s
    q[1 + i] = 0.25 * s
    q[1 + j] = (r[j, i] + r[i, j]) / s
    q[1 + k] = (r[k, i] + r[i, k]) / s
    return tuple(float(x) for x in q)


def write_scannetpp_scene(scene_dir: Path, seed: int, cfg: SyntheticConfig) -> dict:
    """ScanNet++ layout of synthetic scene ``seed``; returns the ground truth (layout, poses, K, depth, instances)."""
    layout: Layout = generate_layout(seed, cfg)
    v, f, col, box = layout_mesh(layout, 0.1)
    scans, dslr = scene_dir / "scans", scene_dir / "dslr"
    write_mesh_ply(scans / "mesh_aligned_0.05.ply", v, f, col)
    inst = layout.box_instance[box]
    (scans / "segments.json").write_text(json.dumps({"segIndices": box.tolist()}))
    groups = [{"objectId": int(o), "id": int(o), "label": layout.instance_labels[int(o)],
               "segments": [int(b) for b in np.flatnonzero(layout.box_instance == o)]}
              for o in sorted(layout.instance_labels)]
    (scans / "segments_anno.json").write_text(json.dumps({"sceneId": scene_dir.name, "segGroups": groups}))
    k = intrinsic_matrix(cfg)
    h, w = cfg.image_size
    (dslr / "colmap").mkdir(parents=True)
    (dslr / "resized_undistorted_images").mkdir()
    (dslr / "colmap" / "cameras.txt").write_text(
        f"# Camera list\n1 PINHOLE {w} {h} {k[0, 0]} {k[1, 1]} {k[0, 2] + 0.5} {k[1, 2] + 0.5}\n")
    lines = ["# Image list"]
    poses, depths, inst_maps = [], [], []
    for i, pose in enumerate(camera_poses(layout, seed, cfg)):
        depth, color, imap = render_view(layout, pose, k, cfg.image_size)
        name = f"DSC{i:05d}.JPG"
        Image.fromarray(color).save(dslr / "resized_undistorted_images" / name, quality=95)
        r_wc = pose[:3, :3].T
        t = -r_wc @ pose[:3, 3]
        lines += [f"{i + 1} " + " ".join(f"{x:.12g}" for x in (*matrix_to_quat(r_wc), *t)) + f" 1 {name}", ""]
        poses.append(pose)
        depths.append(depth)
        inst_maps.append(imap)
    (dslr / "colmap" / "images.txt").write_text("\n".join(lines) + "\n")
    return {"layout": layout, "poses": poses, "K": k, "depths": depths, "instance_maps": inst_maps,
            "vertex_instances": inst}
