"""The inputs of a Stage 1 run: its source (with the run's reader options), its queries grouped by scene,
where they come from, and the backend device."""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

from mllm3d.shared.errors import BadInputError
from mllm3d.shared.scene import Query, SceneSource
from mllm3d.stage1_pseudolabel.run_config import RunConfig
from mllm3d.stage1_pseudolabel.run_summary import RunSummary


def group_queries(
    queries: Sequence[Query], known_scenes: set[str], summary: RunSummary
) -> dict[str, list[Query]]:
    """scene id -> its queries (first occurrence of each id kept); unknown scenes are counted.

    A query with empty text is an error (as in mllm3d.shared.annotations), raised before any work.
    """
    by_scene: dict[str, list[Query]] = defaultdict(list)
    seen: set[tuple[str, str]] = set()
    unknown: dict[str, int] = defaultdict(int)
    for q in queries:
        if not str(q.text or "").strip():
            raise BadInputError(f"query {q.scene_id}/{q.query_id}: empty text, nothing to segment")
        if q.scene_id not in known_scenes:
            unknown[q.scene_id] += 1
            continue
        key = (q.scene_id, q.query_id)
        if key in seen:
            summary.duplicate_queries += 1
            continue
        seen.add(key)
        by_scene[q.scene_id].append(q)
    summary.unknown_scene_queries = sum(unknown.values())
    summary.unknown_scenes = sorted(unknown)
    return dict(by_scene)


def queries_origin(cfg: RunConfig, source: SceneSource, given: bool) -> str:
    """Where the run's queries come from, for messages: the annotation file, or what else."""
    if given:
        return "the queries passed to run_pseudolabels"
    if cfg.queries:
        return f"annotation file {cfg.queries}"
    if getattr(source, "name", "") == "scannet":
        return f"the queries_*.json files beside the scenes of {cfg.source}"
    return f"the queries of source {cfg.source!r}"


def open_run_source(cfg: RunConfig, source: SceneSource | None = None) -> SceneSource:
    """``cfg.source`` opened with the run's source options; a given source must agree with them."""
    options = cfg.source_options()
    if source is None:
        from mllm3d.shared.sources import open_source

        opened = open_source(cfg.source, **options)
        reader_options = getattr(opened, "options", None)
        if isinstance(reader_options, dict) and "max_depth" in reader_options:  # a ScanNet reader
            reader_options["max_depth"] = float(cfg.max_depth)
        return opened
    have = getattr(source, "options", None)
    for key, value in options.items():
        if key == "frame_stride" and value == 1 and have is None:
            continue
        if have is None or have.get(key) != value:
            raise BadInputError(
                f"run config sets {key}={value} but the source object passed to run_pseudolabels has "
                f"{key}={None if have is None else have.get(key)}; build the source with it or leave it unset"
            )
    return source


def load_run_queries(cfg: RunConfig, source: SceneSource) -> list[Query]:
    """Queries from ``cfg.queries`` or, without a file, the source's own."""
    if cfg.queries:
        from mllm3d.shared.annotations import load_queries

        return load_queries(cfg.queries)
    qs = source.queries()
    if not qs:
        raise BadInputError(f"source {cfg.source!r} comes without queries: pass --queries FILE")
    return qs


def check_store_path(store: str | os.PathLike[str]) -> None:
    """BadInputError when the store path, or the nearest of its parents that exists, is not a folder."""
    p = os.path.abspath(store)
    while not os.path.exists(p) and os.path.dirname(p) != p:
        p = os.path.dirname(p)
    if not os.path.isdir(p):
        where = "is a file" if str(p) == os.path.abspath(store) else f"lies under {p}, which is not a folder"
        raise BadInputError(f"{store}: the store path {where}; give a folder for --store")


def expand_device(backend_config: dict[str, Any], env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """``device: cuda:local`` -> ``cuda:$LOCAL_RANK`` (torchrun's per-process GPU; 0 when unset)."""
    env = os.environ if env is None else env
    out = dict(backend_config)
    if str(out.get("device", "")).strip().lower() == "cuda:local":
        out["device"] = f"cuda:{int(env.get('LOCAL_RANK', '0') or 0)}"
    return out
