"""Write synthetic scenes as meshes: box layout -> gridded triangle mesh PLY + ScanNet aggregation/segs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from mllm3d.shared.annotations import save_queries
from mllm3d.shared.mesh_ply import write_mesh_ply
from mllm3d.shared.synthetic import SyntheticConfig, generate_layout, generate_queries
from mllm3d.shared.synthetic_layout import Layout


def layout_mesh(layout: Layout, spacing: float = 0.1) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(vertices, faces, colours uint8, vertex box index) of every visible box face, gridded at ``spacing``."""
    verts, faces, cols, boxes = [], [], [], []
    n = 0
    for b in range(len(layout.lo)):
        lo, hi = layout.lo[b], layout.hi[b]
        for face in range(6):
            if not layout.box_faces[b, face]:
                continue
            axis, side = divmod(face, 2)
            a, c = [i for i in range(3) if i != axis]
            na = max(1, int(np.ceil((hi[a] - lo[a]) / spacing)))
            nc = max(1, int(np.ceil((hi[c] - lo[c]) / spacing)))
            ua, uc = np.meshgrid(np.linspace(lo[a], hi[a], na + 1), np.linspace(lo[c], hi[c], nc + 1), indexing="ij")
            p = np.zeros((ua.size, 3))
            p[:, axis], p[:, a], p[:, c] = (hi if side else lo)[axis], ua.ravel(), uc.ravel()
            idx = np.arange(ua.size).reshape(na + 1, nc + 1) + n
            q = np.stack([idx[:-1, :-1], idx[1:, :-1], idx[1:, 1:], idx[:-1, 1:]], -1).reshape(-1, 4)
            faces.append(np.concatenate([q[:, [0, 1, 2]], q[:, [0, 2, 3]]]))
            verts.append(p)
            cols.append(np.repeat(layout.box_color[b][None], len(p), 0))
            boxes.append(np.full(len(p), b))
            n += len(p)
    return (np.concatenate(verts), np.concatenate(faces), np.clip(np.concatenate(cols), 0, 255).astype(np.uint8),
            np.concatenate(boxes))


def write_mesh_scene(scene_dir: Path, seed: int, cfg: SyntheticConfig = SyntheticConfig(),
                     spacing: float = 0.1) -> tuple[Layout, np.ndarray, np.ndarray]:
    """Scene ``scene_dir.name`` from ``seed``: ``<id>_vh_clean_2.ply``, aggregation, segs (one segment per
    box), ``queries_synthetic.json``; no frames. Returns (layout, vertices, vertex instance ids)."""
    sid = scene_dir.name
    layout = generate_layout(seed, cfg)
    v, f, col, box = layout_mesh(layout, spacing)
    write_mesh_ply(scene_dir / f"{sid}_vh_clean_2.ply", v, f, col)
    inst = layout.box_instance[box]
    groups = [{"objectId": int(oid), "label": layout.instance_labels[int(oid)],
               "segments": [int(b) for b in np.flatnonzero(layout.box_instance == oid)]}
              for oid in sorted(layout.instance_labels)]
    (scene_dir / f"{sid}.aggregation.json").write_text(json.dumps({"sceneId": sid, "segGroups": groups}))
    (scene_dir / f"{sid}_vh_clean_2.0.010000.segs.json").write_text(json.dumps({"segIndices": box.tolist()}))
    save_queries(scene_dir / "queries_synthetic.json", generate_queries(sid, seed, cfg))
    return layout, v, inst
