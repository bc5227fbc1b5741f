"""Benchmark 3's size part: on-disk bytes of query groups per (query, view), and of a scene group, by part."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from bench.common import dir_bytes
from bench.store_throughput import npy_write
from mllm3d.shared.store import PseudoLabelStore, QueryRecord


def _is_chunk(p: Path) -> bool:
    return p.name != "zarr.json"


def group_sizes(store: PseudoLabelStore, rec: QueryRecord) -> dict[str, int]:
    """On-disk bytes of one query group: mask chunks only, all chunks, everything (incl. metadata)."""
    d = store.query_dir(rec.query.scene_id, rec.query.query_id)
    return {
        "mask_chunks": dir_bytes(d / "masks", _is_chunk),
        "embedding_chunks": dir_bytes(d / "seg_embeddings", _is_chunk),
        "all_chunks": dir_bytes(d, _is_chunk),
        "total": dir_bytes(d),
    }


def measure_sizes(store: PseudoLabelStore, records: list[QueryRecord], npy_root: Path) -> dict[str, Any]:
    """Bytes per (query, view) over a set of written query groups, several ways, and the ratios to raw.

    - *all views*: the masks array's chunk bytes / every view (empty masks included);
    - *non-empty views*: the masks array's chunk bytes / the views whose mask has a pixel (the masks of a group
      are one chunk, so the few bytes its empty views take in it are charged to the views with a mask);
    - *whole group*: every file of the query groups / every view;
    - *verdict* (what one (query, view) with a mask really costs): the non-empty-view mask bytes + the [SEG]
      embedding per view + the per-view share of the group's small arrays (the views table)
      and of its zarr.json metadata files, against the same record as raw ``.npy`` files (``npy_write``:
      uint8 mask, float16 embedding, the small arrays and an attributes JSON, written under ``npy_root``);
    - *mask verdict*: the non-empty-view mask bytes + the per-view share of the masks array's zarr.json, vs raw uint8.
    """
    per = [group_sizes(store, r) for r in records]
    masks_meta = sum((store.query_dir(r.query.scene_id, r.query.query_id) / "masks" / "zarr.json").stat().st_size
                     for r in records)
    raw_record = 0
    for r in records:
        d = npy_root / r.query.scene_id / r.query.query_id
        npy_write(r, d, fsync=False)
        raw_record += dir_bytes(d)
    filled = [int(np.count_nonzero(r.masks.reshape(r.num_views, -1).any(axis=1))) for r in records]
    nonempty = sum(filled)
    views = sum(r.num_views for r in records)
    h, w = records[0].masks.shape[1:]
    raw = h * w
    mask_total = sum(p["mask_chunks"] for p in per)
    emb_total = sum(p["embedding_chunks"] for p in per)
    meta_total = sum(p["total"] - p["all_chunks"] for p in per)  # zarr.json of the group and each array
    small_total = sum(p["all_chunks"] - p["mask_chunks"] - p["embedding_chunks"] for p in per)
    masks_pv = mask_total / views
    total_pv = sum(p["total"] for p in per) / views
    chunks_pv = sum(p["all_chunks"] for p in per) / views
    emb_pv = emb_total / views
    meta_pv = meta_total / views
    small_pv = small_total / views
    fixed = sum(p["total"] - p["mask_chunks"] - p["embedding_chunks"] for p in per) / len(per)
    coverage = float(np.mean([r.masks.mean() for r in records]))
    empty = float(np.mean([[not m.any() for m in r.masks] for r in records]))
    ne_pv = mask_total / nonempty if nonempty else float("nan")
    max_pv = max((p["mask_chunks"] / n for p, n in zip(per, filled, strict=True) if n), default=float("nan"))
    verdict_pv = ne_pv + emb_pv + small_pv + meta_pv
    mask_verdict_pv = ne_pv + masks_meta / views
    raw_record_pv = raw_record / views
    return {
        "mask_bytes_per_nonempty_view": ne_pv,
        "ratio_masks_nonempty": raw / ne_pv if nonempty else float("nan"),
        "mask_bytes_max_group": max_pv,  # the largest group's masks chunk / its views with a mask
        "queries": len(records),
        "views": views,
        "nonempty_views": nonempty,
        "image_hw": [int(h), int(w)],
        "raw_uint8_per_view": raw,
        "mask_bytes_per_view": masks_pv,
        "chunk_bytes_per_view": chunks_pv,
        "group_bytes_per_view": total_pv,
        "embedding_bytes_per_view": emb_pv,
        "small_array_bytes_per_view": small_pv,
        "metadata_bytes_per_view": meta_pv,
        "verdict_bytes_per_view": verdict_pv,
        "group_fixed_bytes": fixed,
        "ratio_masks": raw / masks_pv,
        "ratio_group": raw / total_pv,
        "ratio_verdict": raw / verdict_pv if np.isfinite(verdict_pv) else float("nan"),  # vs the uint8 mask alone
        "ratio_record": raw_record_pv / verdict_pv if np.isfinite(verdict_pv) else float("nan"),
        "raw_record_per_view": raw_record_pv,
        "mask_verdict_bytes_per_view": mask_verdict_pv,
        "ratio_mask_verdict": raw / mask_verdict_pv if np.isfinite(mask_verdict_pv) else float("nan"),
        "mean_coverage": coverage,
        "empty_fraction": empty,
    }


def scene_group_sizes(store: PseudoLabelStore, scene_id: str) -> dict[str, Any]:
    """On-disk bytes of one scene group by part, normalised per point / per view / per visible pair."""
    d = store.scene_dir(scene_id)
    s = store.read_scene(scene_id)
    parts = {
        "points": dir_bytes(d / "points"),
        "colors": dir_bytes(d / "colors"),
        "instance_ids": dir_bytes(d / "instance_ids") if (d / "instance_ids").exists() else 0,
        "correspondences": dir_bytes(d / "correspondences"),
        "thumbnails": dir_bytes(d / "thumbnails") if (d / "thumbnails").exists() else 0,
    }
    qmeta = d / "queries" / "zarr.json"
    # the scene group without its query groups (only the queries/ group's own metadata counts)
    total = dir_bytes(d) - dir_bytes(d / "queries") + (qmeta.stat().st_size if qmeta.exists() else 0)
    parts["other"] = total - sum(parts.values())
    pairs = int(s.correspondences.offsets[-1])
    return {
        "scene_id": scene_id,
        "num_points": s.num_points,
        "num_views": s.num_views,
        "visible_pairs": pairs,
        "bytes": parts,
        "total": total,
        "per_point": (parts["points"] + parts["colors"] + parts["instance_ids"]) / max(s.num_points, 1),
        "per_visible_pair": parts["correspondences"] / max(pairs, 1),
        "visible_fraction": pairs / max(s.num_points * s.num_views, 1),
        "thumbnail_per_view": parts["thumbnails"] / max(s.num_views, 1),
        "other": parts["other"],
    }
