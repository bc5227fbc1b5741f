"""Benchmark 3's mask sets: object-region masks on the ScanNet fixture, Stage 1 synthetic-backend masks.

- *ScanNet fixture, object-region masks*: for each synthetic "query", an axis-aligned 3D box (0.5-1.2 m)
  around a random point of the real scene; a view's mask = the pixels whose back-projected real depth
  falls in the box (real object-shaped silhouettes with ScanNet's depth holes and edge noise), 640x480,
  4 views per query drawn among the views that see the box.
- *synthetic scenes* (``synthetic:N:0``, 120x160): masks produced by the Stage 1 synthetic backend (the
  queries' ground-truth masks with LISA-like failure modes: misses, hallucinations, boundary noise,
  partial masks) for 4 random views per query; falls back to the raw instance-map masks if that
  backend cannot be imported.
"""

from __future__ import annotations

import numpy as np

from mllm3d.shared.geometry import backproject_depth
from mllm3d.shared.scene import Query, Scene
from mllm3d.shared.store import QueryRecord

VIEWS_PER_QUERY = 4
EMBED_DIM = 256


def box_region_records(scene: Scene, num_queries: int, seed: int = 0) -> list[QueryRecord]:
    """Object-region masks on a real scene (see the module docstring), 4 views per query."""
    rng = np.random.default_rng(seed)
    views = [scene.views[i] for i in range(len(scene.views))]
    world = []
    for v in views:
        pts, rr, cc = backproject_depth(np.asarray(v.depth), v.intrinsic, v.pose)
        world.append((pts, rr, cc, v.depth_size))
    records = []
    for q in range(num_queries):
        center = np.asarray(scene.points[rng.integers(0, scene.num_points)], dtype=np.float64)
        half = rng.uniform(0.25, 0.6, 3)
        masks, cover = [], []
        for pts, rr, cc, hw in world:
            inside = np.all(np.abs(pts - center) <= half, axis=1)
            m = np.zeros(hw, dtype=bool)
            m[rr[inside], cc[inside]] = True
            masks.append(m)
            cover.append(m.mean())
        seen = np.flatnonzero(np.asarray(cover) >= 0.01)
        if len(seen) >= VIEWS_PER_QUERY:
            chosen = np.sort(rng.choice(seen, VIEWS_PER_QUERY, replace=False))
        else:
            chosen = np.sort(np.argsort(cover)[-VIEWS_PER_QUERY:])
        records.append(_record(scene.scene_id, f"box{q:03d}", chosen, np.stack([masks[i] for i in chosen]), rng))
    return records


def _record(scene_id: str, query_id: str, view_index: np.ndarray, masks: np.ndarray, rng: np.random.Generator) -> QueryRecord:
    k = len(view_index)
    emb = rng.standard_normal((k, EMBED_DIM)).astype(np.float32) / np.sqrt(EMBED_DIM)
    return QueryRecord(
        query=Query(scene_id=scene_id, query_id=query_id, text=f"bench query {query_id}", target_ids=[0]),
        view_index=np.asarray(view_index, dtype=np.int32),
        masks=masks.astype(bool),
        seg_embeddings=emb,
        confidence=rng.uniform(0.5, 1.0, k).astype(np.float32),
        attention=rng.uniform(0.0, 1.0, k).astype(np.float32),
        has_seg=np.ones(k, dtype=bool),
        view_seed=int(rng.integers(0, 2**31 - 1)),
        segmenter="bench",
        generated_text=["Sure, it is [SEG]."] * k,
    )


def synthetic_records(num_scenes: int, seed: int = 0) -> tuple[list[Scene], list[QueryRecord], str]:
    """Synthetic scenes and their queries' masks in 4 random views (see the module docstring)."""
    from mllm3d.shared.synthetic import SyntheticConfig, generate_scene

    try:
        from mllm3d.stage1_pseudolabel.segmenter import build_segmenter

        seg = build_segmenter("synthetic", {"seed": seed})
        how = "Stage 1 synthetic backend (GT + misses/hallucinations/boundary noise/partial masks)"
    except Exception as exc:  # noqa: BLE001 - report and fall back to GT masks
        seg = None
        how = f"ground-truth instance-map masks (synthetic backend unavailable: {exc})"
    rng = np.random.default_rng(seed)
    scenes, records = [], []
    cfg = SyntheticConfig()
    for s in range(num_scenes):
        scene, queries = generate_scene(f"synth{s:03d}", seed + s, cfg)
        scenes.append(scene)
        for q in queries:
            chosen = np.sort(rng.choice(len(scene.views), VIEWS_PER_QUERY, replace=False))
            masks = []
            for i in chosen:
                view = scene.views[int(i)]
                if seg is not None:
                    masks.append(np.asarray(seg.segment_view(view, [q]).results[0].mask, dtype=bool))
                else:
                    masks.append(np.isin(view.instance_map, list(q.target_ids or [])))
            rec = _record(scene.scene_id, q.query_id, chosen, np.stack(masks), rng)
            rec.query = q
            records.append(rec)
    return scenes, records, how
