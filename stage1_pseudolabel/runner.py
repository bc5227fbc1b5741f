"""Stage 1 runner: segment every (scene, query) of a source with a backend and fill the store.

The unit of work is one scene with all its queries. Per scene: take the scene's lease, write the
query-independent scene group once, skip queries already complete (resume), draw each query's
views, call the segmenter once per sampled frame with every query that sampled it (the backend
shares the view encoding), map masks from the colour image onto the store's mask (depth) grid
through the two cameras' intrinsics, and write each query group atomically as soon as all its views
are done. A failing scene is reported and the run goes on; :class:`RunSummary` says what was
written, skipped and why.
"""

from __future__ import annotations

import logging
import sys
import time
import traceback
import warnings
from collections.abc import Sequence
from typing import Any

from rich.console import Console

from mllm3d.shared.errors import BadInputError, StoreError, UnknownSceneError
from mllm3d.shared.geometry import DepthTest
from mllm3d.shared.scene import Query, Scene, SceneSource
from mllm3d.shared.scene_store import store_scene
from mllm3d.shared.store import PseudoLabelStore, QueryRecord, open_store
from mllm3d.stage1_pseudolabel.leases import SceneLease, lease_path, remove_dead_temporaries
from mllm3d.stage1_pseudolabel.records import (
    assemble_record,
    map_features_to_depth,
    map_mask_to_depth,
    scene_image_size,
    source_frame_ids,
)
from mllm3d.stage1_pseudolabel.resume_check import refuse_changed_inputs, sampling_settings
from mllm3d.stage1_pseudolabel.run_config import RunConfig
from mllm3d.stage1_pseudolabel.run_inputs import (
    expand_device,
    group_queries,
    load_run_queries,
    open_run_source,
    queries_origin,
)
from mllm3d.stage1_pseudolabel.run_progress import RunProgress
from mllm3d.stage1_pseudolabel.run_summary import RunSummary, SceneFailure
from mllm3d.stage1_pseudolabel.segment_loop import segment_queries
from mllm3d.stage1_pseudolabel.segmenter import Segmenter, build_segmenter
from mllm3d.stage1_pseudolabel.segmenter_record import SegmenterRecord, open_for_run, segmenter_identity
from mllm3d.stage1_pseudolabel.sharding import Shard, resolve_shard, shard_scenes
from mllm3d.stage1_pseudolabel.view_sampling import sample_views, usable_frames

__all__ = [  # importable from here as before the split
    "AUDIT_EVENT", "RunConfig", "RunProgress", "RunSummary", "SceneFailure", "assemble_record", "expand_device",
    "group_queries", "incomplete_scenes", "load_run_queries", "map_features_to_depth", "map_mask_to_depth",
    "open_run_source", "plan_scenes", "process_scene", "queries_origin", "run_pseudolabels", "scene_image_size",
    "segmenter_identity",
]

# The runner announces write stages as Python audit events (``sys.audit``): (stage, key) with stage in
# "scene.after_publish", "query.before_write", "query.after_publish". Nothing in the package listens;
# the crash/resume tests install a hook (tests/fault_injection/).
AUDIT_EVENT = "mllm3d.stage1.write"

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------- one scene
def process_scene(
    store: PseudoLabelStore,
    scene: Scene,
    queries: list[Query],
    segmenter: Segmenter,
    cfg: RunConfig,
    summary: RunSummary,
    progress: RunProgress,
    lease: SceneLease | None = None,
    record: SegmenterRecord | None = None,
) -> None:
    """Write the scene group (once) and every not-yet-complete query of one scene.

    ``record`` writes the run's segmenter into the store before its first query group."""
    depth_test = DepthTest(abs_tol=cfg.depth_abs_tol, rel_tol=cfg.depth_rel_tol, border=cfg.depth_border)
    if store_scene(store, scene, depth_test):
        summary.scene_groups_written += 1
        sys.audit(AUDIT_EVENT, "scene.after_publish", scene.scene_id)
    todo = [q for q in queries if not store.has_query(scene.scene_id, q.query_id)]
    summary.queries_skipped_complete += len(queries) - len(todo)  # counted before a refusal below, too
    progress.query_done(len(queries) - len(todo))
    image_size = scene_image_size(store, scene.scene_id, len(scene.views), source_frame_ids(scene))
    if not todo:
        return
    usable = usable_frames(scene.views, cfg.min_valid_depth)
    if len(usable) == 0:
        raise BadInputError(
            f"scene {scene.scene_id}: no frame has a valid pose and >= {cfg.min_valid_depth:.0%} valid depth"
        )
    choices = {
        q.query_id: sample_views(usable, cfg.views, cfg.seed, scene.scene_id, q.query_id, pool=cfg.view_pool) for q in todo
    }
    sampling = sampling_settings(cfg)

    def check_lease() -> None:
        if lease is not None and lease.lost:
            raise StoreError(
                f"scene {scene.scene_id}: the lease file {lease.path} was deleted or replaced while this worker "
                "held it; stopping this scene"
            )

    def view_done() -> None:
        progress.views_done(1)
        summary.views_segmented += 1

    writing = 0.0

    def write(query: Query, rec: QueryRecord) -> None:
        nonlocal writing
        t = time.monotonic()
        _write_one(store, rec, summary, sampling, record)
        progress.query_done()
        writing += time.monotonic() - t

    t0 = time.monotonic()
    tally = segment_queries(scene, todo, choices, segmenter, image_size, on_record=write, on_view=view_done,
                            before_view=check_lease)
    summary.segment_s += time.monotonic() - t0 - writing
    if tally.all_empty:
        msg = (f"scene {scene.scene_id}: all {tally.masks} masks are empty once mapped to the depth frame: check "
               "the scene's colour/depth intrinsics (a principal point far outside the image?)")
        warnings.warn(msg, stacklevel=2)  # a data warning API callers can catch; the CLI logs it


def _write_one(
    store: PseudoLabelStore,
    record: QueryRecord,
    summary: RunSummary,
    sampling: dict[str, Any] | None = None,
    segmenter_record: SegmenterRecord | None = None,
) -> None:
    """Publish one assembled query record (its view-sampling settings added); count a lost race."""
    key = f"{record.query.scene_id}/{record.query.query_id}"
    record.view_sampling = dict(sampling or {})
    sys.audit(AUDIT_EVENT, "query.before_write", key)
    if segmenter_record is not None:
        segmenter_record.before_query_write()
    if store.write_query(record):
        summary.queries_written += 1
        sys.audit(AUDIT_EVENT, "query.after_publish", key)
    else:
        summary.queries_lost_race += 1


# ---------------------------------------------------------------------------------------------- the run
def plan_scenes(cfg: RunConfig, by_scene: dict[str, list[Query]], shard: Shard) -> list[str]:
    """Scenes of this shard: those with queries, sorted, first ``max_scenes``, then sharded."""
    scenes = sorted(by_scene)
    if cfg.max_scenes is not None:
        scenes = scenes[: cfg.max_scenes]
    return shard_scenes(scenes, shard, cfg.shard_strategy)


def incomplete_scenes(store_path: str, scenes: list[str], by_scene: dict[str, list[Query]]) -> list[str]:
    """Scenes with at least one query not yet complete in the store (all of them if there is no store)."""
    try:
        store = open_store(store_path, "r")
    except StoreError:
        return list(scenes)
    return [s for s in scenes if not all(store.has_query(s, q.query_id) for q in by_scene[s])]


def run_pseudolabels(
    cfg: RunConfig,
    source: SceneSource | None = None,
    queries: Sequence[Query] | None = None,
    segmenter: Segmenter | None = None,
    console: Console | None = None,
) -> RunSummary:
    """Run Stage 1 for this worker's shard. ``source``/``queries``/``segmenter`` override ``cfg``."""
    t0 = time.monotonic()
    shard = resolve_shard(cfg.shard)
    summary = RunSummary(shard=str(shard))
    source = open_run_source(cfg, source)
    summary.source_options = {k: v for k, v in (getattr(source, "options", None) or {}).items()
                              if k in ("frame_stride", "max_frames")}
    summary.queries_from = queries_origin(cfg, source, queries is not None)
    qs = list(queries) if queries is not None else load_run_queries(cfg, source)
    by_scene = group_queries(qs, set(source.scene_ids()), summary)
    scenes = plan_scenes(cfg, by_scene, shard)
    summary.scenes_assigned = len(scenes)
    summary.queries_assigned = sum(len(by_scene[s]) for s in scenes)

    try:
        existing = open_store(cfg.store, "r")
    except StoreError:
        existing = None  # no store yet (or not one: open_store "a" below names it)
    if existing is not None:
        refuse_changed_inputs(existing, by_scene, scenes, cfg)
    todo_scenes = incomplete_scenes(cfg.store, scenes, by_scene)
    pending_set = set(todo_scenes)
    done_scenes = [s for s in scenes if s not in pending_set]
    summary.scenes_complete = len(done_scenes)
    summary.queries_skipped_complete = sum(len(by_scene[s]) for s in done_scenes)
    if not todo_scenes:  # nothing to do: do not even build the (possibly heavy) segmenter
        summary.elapsed_s = time.monotonic() - t0
        return summary

    seg = (
        segmenter
        if segmenter is not None
        else build_segmenter(cfg.backend, expand_device(cfg.backend_config))
    )
    identity = segmenter_identity(seg)
    store, pending = open_for_run(cfg.store, identity, cfg.allow_mixed_segmenters)
    record = SegmenterRecord(store, identity, pending)
    summary.temporaries_removed += len(remove_dead_temporaries(store, cfg.lease_timeout_s))

    queries_todo = sum(len(by_scene[s]) for s in todo_scenes)
    with RunProgress(cfg.progress, len(todo_scenes), queries_todo, console) as progress:
        for scene_id in todo_scenes:
            lease = SceneLease(lease_path(store, scene_id))
            if not lease.try_acquire():
                summary.scenes_leased.append(scene_id)
                who = f" ({lease.holder.describe()})" if lease.holder is not None else ""
                log.warning("scene %s: leased by a running worker%s, skipped", scene_id, who)
                progress.query_done(len(by_scene[scene_id]))
                progress.scene_done(scene_id)
                continue
            try:
                if lease.took_over:
                    log.info("scene %s: took over the %s", scene_id, lease.took_over)
                    summary.leases_taken_over += 1
                    summary.temporaries_removed += len(remove_dead_temporaries(store, cfg.lease_timeout_s))
                if store.has_scene(scene_id) and all(
                    store.has_query(scene_id, q.query_id) for q in by_scene[scene_id]
                ):
                    summary.scenes_complete += 1  # finished by another worker since planning
                    summary.queries_skipped_complete += len(by_scene[scene_id])
                    progress.query_done(len(by_scene[scene_id]))
                    continue
                scene = source.load(scene_id)
                process_scene(store, scene, by_scene[scene_id], seg, cfg, summary, progress, lease, record)
                summary.scenes_processed += 1
            except (KeyboardInterrupt, SystemExit):
                raise
            except Exception as exc:  # one scene's failure must not stop the others
                reason = f"{type(exc).__name__}: {exc}"
                if not isinstance(exc, (BadInputError, StoreError, UnknownSceneError)):
                    tb = traceback.extract_tb(exc.__traceback__)
                    if tb:
                        reason += f" (at {tb[-1].filename}:{tb[-1].lineno})"
                summary.failed.append(SceneFailure(scene_id, reason))
                log.error("scene %s failed: %s", scene_id, reason)
            finally:
                lease.release()
                progress.scene_done(scene_id)
    summary.elapsed_s = time.monotonic() - t0
    return summary
