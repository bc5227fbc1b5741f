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

import dataclasses
import logging
import os
import sys
import time
import traceback
import warnings
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from mllm3d.shared.errors import BadInputError, StoreError, UnknownSceneError
from mllm3d.shared.geometry import DepthTest
from mllm3d.shared.scene import Query, Scene, SceneSource, View
from mllm3d.shared.scene_store import store_scene
from mllm3d.shared.store import PseudoLabelStore, QueryRecord, open_store
from mllm3d.stage1_pseudolabel.leases import SceneLease, lease_path, remove_dead_temporaries
from mllm3d.stage1_pseudolabel.mask_ops import (
    color_features_to_depth,
    color_mask_to_depth,
    color_to_depth_lookup,
    resize_nearest,
)
from mllm3d.stage1_pseudolabel.resume_check import refuse_changed_inputs, sampling_settings
from mllm3d.stage1_pseudolabel.run_config import RunConfig
from mllm3d.stage1_pseudolabel.segmenter import SegmentationResult, Segmenter, build_segmenter
from mllm3d.stage1_pseudolabel.segmenter_record import SegmenterRecord, open_for_run, segmenter_identity
from mllm3d.stage1_pseudolabel.sharding import Shard, resolve_shard, shard_scenes
from mllm3d.stage1_pseudolabel.view_sampling import ViewChoice, sample_views, usable_frames

# The runner announces write stages as Python audit events (``sys.audit``): (stage, key) with stage in
# "scene.after_publish", "query.before_write", "query.after_publish". Nothing in the package listens;
# the crash/resume tests install a hook (tests/fault_injection/).
AUDIT_EVENT = "mllm3d.stage1.write"

log = logging.getLogger(__name__)


@dataclass
class SceneFailure:
    scene_id: str
    reason: str


@dataclass
class RunSummary:
    """What one run (one shard) did."""

    shard: str = "0/1"
    scenes_assigned: int = 0
    scenes_processed: int = 0  # scenes this run worked on
    scenes_complete: int = 0  # skipped: every query already in the store
    scenes_leased: list[str] = field(default_factory=list)  # skipped: a live worker holds the lease
    queries_assigned: int = 0
    queries_written: int = 0
    queries_skipped_complete: int = 0
    queries_lost_race: int = 0  # another writer published the same group first
    unknown_scene_queries: int = 0
    unknown_scenes: list[str] = field(default_factory=list)
    queries_from: str = ""  # the annotation file (or other origin) of the queries
    source_options: dict[str, Any] = field(default_factory=dict)  # e.g. ScanNet frame_stride / max_frames
    duplicate_queries: int = 0
    failed: list[SceneFailure] = field(default_factory=list)
    views_segmented: int = 0
    scene_groups_written: int = 0
    temporaries_removed: int = 0
    leases_taken_over: int = 0
    elapsed_s: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failed

    @property
    def nothing_new(self) -> bool:
        return self.queries_written == 0 and self.scene_groups_written == 0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["ok"] = self.ok
        return d

    def lines(self) -> list[str]:
        """A human-readable report."""
        out = [
            f"shard {self.shard}: {self.scenes_assigned} scenes, {self.queries_assigned} queries assigned",
            f"written: {self.queries_written} queries, {self.scene_groups_written} scene groups "
            f"({self.views_segmented} views segmented in {self.elapsed_s:.1f} s)",
            f"skipped as complete: {self.queries_skipped_complete} queries ({self.scenes_complete} whole scenes)",
        ]
        if self.nothing_new and not self.failed:
            if self.queries_assigned == 0:
                out.append("nothing to do: no queries assigned to this shard")
            elif self.queries_skipped_complete >= self.queries_assigned:
                out.append("nothing new to write: the store already holds every assigned query")
            else:
                out.append("nothing written, but not every assigned query is in the store yet "
                           "(see the skipped scenes below)")
        if self.scenes_leased:
            out.append(
                f"skipped, leased by a running worker: {len(self.scenes_leased)} scenes {self.scenes_leased} "
                "(another process holds the lock on scenes/.lease-<scene>; rerun once it has finished)"
            )
        if self.queries_lost_race:
            out.append(f"published first by another worker: {self.queries_lost_race} queries")
        if self.source_options:
            out.append("source options: " + ", ".join(f"{k}={v}" for k, v in sorted(self.source_options.items())))
        if self.unknown_scene_queries:
            out.append(
                f"skipped, scene not in the source: {self.unknown_scene_queries} queries on "
                f"{len(self.unknown_scenes)} scenes {self.unknown_scenes[:10]}"
                + (f" (queries from {self.queries_from})" if self.queries_from else "")
            )
        if self.duplicate_queries:
            out.append(f"skipped duplicate query ids: {self.duplicate_queries}")
        if self.temporaries_removed:
            out.append(f"removed {self.temporaries_removed} leftover temporary groups of killed writers")
        if self.leases_taken_over:
            out.append(f"took over {self.leases_taken_over} scene leases left by killed workers")
        for f in self.failed:
            out.append(f"FAILED scene {f.scene_id}: {f.reason}")
        return out


# ---------------------------------------------------------------------------------------------- inputs
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


def expand_device(backend_config: dict[str, Any], env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """``device: cuda:local`` -> ``cuda:$LOCAL_RANK`` (torchrun's per-process GPU; 0 when unset)."""
    env = os.environ if env is None else env
    out = dict(backend_config)
    if str(out.get("device", "")).strip().lower() == "cuda:local":
        out["device"] = f"cuda:{int(env.get('LOCAL_RANK', '0') or 0)}"
    return out


# ---------------------------------------------------------------------------------------------- progress
class RunProgress:
    """Rich progress for scenes and queries with views/s; silent when disabled."""

    def __init__(self, enabled: bool, scenes: int, queries: int, console: Console | None = None) -> None:
        self.enabled = enabled
        self.start = time.monotonic()
        self.views = 0
        self.progress: Progress | None = None
        if enabled:
            self.progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[rate]}"),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=console or Console(stderr=True),
                transient=False,
            )
            self.scenes = self.progress.add_task("scenes", total=scenes, rate="")
            self.queries = self.progress.add_task("queries", total=queries, rate="")

    def __enter__(self) -> RunProgress:
        if self.progress is not None:
            self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.stop()

    def scene_done(self, name: str) -> None:
        if self.progress is not None:
            self.progress.update(self.scenes, advance=1, description=f"scenes ({name})")

    def query_done(self, n: int = 1) -> None:
        if self.progress is not None:
            self.progress.advance(self.queries, n)

    def views_done(self, n: int) -> None:
        self.views += n
        if self.progress is not None:
            rate = self.views / max(time.monotonic() - self.start, 1e-6)
            self.progress.update(self.queries, rate=f"{rate:.1f} views/s")



# ---------------------------------------------------------------------------------------------- records
def assemble_record(
    query: Query,
    choice: ViewChoice,
    results: dict[int, SegmentationResult],
    features: dict[int, np.ndarray | None],
    image_size: tuple[int, int],
    segmenter: Segmenter,
    views: Mapping[int, View] | None = None,
) -> QueryRecord:
    """A QueryRecord from per-view results, masks on the ``image_size`` (depth) grid.

    With ``views`` (frame index -> View), each colour mask is mapped through that view's intrinsics
    (:func:`map_mask_to_depth`) and so are its image features (:func:`map_features_to_depth`); masks of
    views not given are resized by nearest neighbour (a copy when
    they already have ``image_size``, as the runner's are).
    """
    idx = [int(i) for i in choice.view_index]
    rs = [results[i] for i in idx]
    dim = int(segmenter.embed_dim)
    masks = np.zeros((len(idx), *image_size), dtype=bool)
    emb = np.zeros((len(idx), dim), dtype=np.float32)
    for j, r in enumerate(rs):
        e = np.asarray(r.seg_embedding, dtype=np.float32).reshape(-1)
        if e.shape != (dim,):
            raise BadInputError(
                f"backend {segmenter.name}: [SEG] embedding of shape {e.shape}, expected ({dim},)"
            )
        emb[j] = e
        if r.has_seg:
            view = None if views is None else views.get(idx[j])
            if view is not None:
                masks[j] = map_mask_to_depth(np.asarray(r.mask, dtype=bool), view, image_size)
            else:
                masks[j] = resize_nearest(np.asarray(r.mask, dtype=bool), image_size)
    maps = None
    present = [r.attention_map for r in rs if r.attention_map is not None]
    if present:
        shape = np.asarray(present[0]).shape
        maps = np.stack(
            [
                np.zeros(shape, np.float32)
                if r.attention_map is None
                else resize_nearest(np.asarray(r.attention_map, np.float32), shape)
                for r in rs
            ]
        )
    feats = None
    if idx and all(features.get(i) is not None for i in idx):
        per_view = [features[i] if views is None or i not in views else
                    map_features_to_depth(features[i], views[i], image_size) for i in idx]
        feats = np.stack([np.asarray(f, dtype=np.float32) for f in per_view])
    return QueryRecord(
        query=query,
        view_index=np.asarray(idx, dtype=np.int32),
        masks=masks,
        seg_embeddings=emb,
        confidence=np.array([r.confidence for r in rs], dtype=np.float32),
        attention=np.array([r.attention for r in rs], dtype=np.float32),
        has_seg=np.array([bool(r.has_seg) for r in rs], dtype=bool),
        view_seed=choice.view_seed,
        segmenter=segmenter.name,
        generated_text=[str(r.text) for r in rs],
        attention_maps=maps,
        image_features=feats,
    )


def map_mask_to_depth(mask: np.ndarray, view: View, image_size: tuple[int, int], lookup=None) -> np.ndarray:
    """A colour-resolution mask of ``view`` on its depth grid (``image_size``).

    With ``view.color_intrinsic`` each depth pixel samples the colour mask at K_c·K_d⁻¹·[u, v, 1]
    (nearest, outside the colour image -> False); without it the plain nearest-neighbour resize.
    """
    return color_mask_to_depth(mask, image_size, view.intrinsic, view.color_intrinsic, lookup=lookup)


def map_features_to_depth(fmap: np.ndarray | None, view: View, image_size: tuple[int, int]) -> np.ndarray | None:
    """A view's image features (spanning its colour image) on the frame of its depth grid, through the
    same K_c·K_d⁻¹ pixel map as its masks; unchanged without ``color_intrinsic`` or for the same camera."""
    cams = _colour_camera(view, image_size)
    if fmap is None or cams is None:
        return fmap
    return color_features_to_depth(fmap, image_size, view.color_size, *cams)


def _colour_camera(view: View, image_size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray] | None:
    """(K_d, K_c) of a view whose colour camera differs from its depth grid; None when they are the same."""
    if view.color_intrinsic is None:
        return None
    kd = np.asarray(view.intrinsic, dtype=np.float64)[:3, :3]
    kc = np.asarray(view.color_intrinsic, dtype=np.float64)[:3, :3]
    if view.color_size == tuple(image_size) and np.array_equal(kd, kc):
        return None
    return kd, kc


def _view_lookup(view: View, image_size: tuple[int, int]):
    """The colour->depth pixel map of one view (None when a resize or a copy does)."""
    cams = _colour_camera(view, image_size)
    return None if cams is None else color_to_depth_lookup(image_size, view.color_size, *cams)


def scene_image_size(
    store: PseudoLabelStore, scene_id: str, num_views: int, frame_ids: Sequence[int] | None = None
) -> tuple[int, int]:
    """The mask resolution recorded in the scene group (checked against the scene's views).

    The view count is checked from the group's attributes; with ``frame_ids`` the stored frame ids are
    compared too (a changed ``frame_stride`` / ``max_frames`` would otherwise misplace view indices).
    """
    meta = store.scene_dir(scene_id)
    attrs = store.scene_attrs(scene_id)
    hint = "the source changed since the scene group was written (another frame_stride / max_frames?); use a new store"
    if int(attrs["num_views"]) != num_views:
        raise StoreError(
            f"{meta}: stored scene has {attrs['num_views']} views but the source now gives {num_views}; {hint}"
        )
    if frame_ids is not None:
        stored = store.scene_frame_ids(scene_id).tolist()
        if stored != [int(f) for f in frame_ids]:
            diff = next(i for i, (a, b) in enumerate(zip(stored, frame_ids, strict=True)) if a != int(b))
            raise StoreError(
                f"{meta}: stored view {diff} is frame {stored[diff]} but the source now gives frame "
                f"{int(frame_ids[diff])}; {hint}"
            )
    return int(attrs["image_size"][0]), int(attrs["image_size"][1])


def _frame_ids(scene: Scene) -> list[int]:
    """Frame ids of a scene's views without loading them when the sequence can say (LazyViews)."""
    ids = getattr(scene.views, "frame_ids", None)
    return list(ids()) if callable(ids) else [v.frame_id for v in scene.views]


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
    image_size = scene_image_size(store, scene.scene_id, len(scene.views), _frame_ids(scene))
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
    by_frame: dict[int, list[Query]] = defaultdict(list)
    for q in todo:
        for i in choices[q.query_id].view_index:
            by_frame[int(i)].append(q)
    pending = {q.query_id: {int(i) for i in choices[q.query_id].view_index} for q in todo}
    results: dict[str, dict[int, SegmentationResult]] = defaultdict(dict)
    segs = pixels = 0  # masks the backend gave, and their pixels left on the depth grid
    features: dict[int, np.ndarray | None] = {}
    for fi in sorted(by_frame):
        if lease is not None and lease.lost:
            raise StoreError(
                f"scene {scene.scene_id}: the lease file {lease.path} was deleted or replaced while this worker "
                "held it; stopping this scene"
            )
        qs = by_frame[fi]
        view = scene.views[fi]
        out = segmenter.segment_view(view, qs)
        if len(out.results) != len(qs):
            raise BadInputError(
                f"backend {segmenter.name}: {len(out.results)} results for {len(qs)} queries in frame {view.frame_id}"
            )
        progress.views_done(1)
        summary.views_segmented += 1
        features[fi] = map_features_to_depth(out.image_features, view, image_size)  # the masks' frame
        lookup = _view_lookup(view, image_size)
        for q, r in zip(qs, out.results, strict=True):
            if r.has_seg:
                if tuple(np.asarray(r.mask).shape) != view.color_size:
                    raise BadInputError(
                        f"backend {segmenter.name}: mask of shape {np.asarray(r.mask).shape} for frame "
                        f"{view.frame_id}, expected the colour resolution {view.color_size}"
                    )
                # on the depth grid now: smaller to keep, and assemble_record's resize is then a copy
                r = dataclasses.replace(r, mask=map_mask_to_depth(r.mask, view, image_size, lookup))
                segs, pixels = segs + 1, pixels + int(np.count_nonzero(r.mask))
            results[q.query_id][fi] = r
            pending[q.query_id].discard(fi)
            if not pending[q.query_id]:
                _write_one(
                    store,
                    q,
                    choices[q.query_id],
                    results.pop(q.query_id),
                    features,
                    image_size,
                    segmenter,
                    summary,
                    sampling_settings(cfg),
                    record,
                )
                progress.query_done()
        # free the features of frames that no unwritten query uses
        needed = {int(i) for qid, p in pending.items() if p for i in choices[qid].view_index}
        for done in [i for i in features if i not in needed]:
            del features[done]
    if segs and not pixels:
        msg = (f"scene {scene.scene_id}: all {segs} masks are empty once mapped to the depth frame: check the "
               "scene's colour/depth intrinsics (a principal point far outside the image?)")
        warnings.warn(msg, stacklevel=2)  # a data warning API callers can catch; the CLI logs it


def _write_one(
    store: PseudoLabelStore,
    query: Query,
    choice: ViewChoice,
    results: dict[int, SegmentationResult],
    features: dict[int, np.ndarray | None],
    image_size: tuple[int, int],
    segmenter: Segmenter,
    summary: RunSummary,
    sampling: dict[str, Any] | None = None,
    segmenter_record: SegmenterRecord | None = None,
) -> None:
    record = assemble_record(query, choice, results, features, image_size, segmenter)
    record.view_sampling = dict(sampling or {})
    sys.audit(AUDIT_EVENT, "query.before_write", f"{query.scene_id}/{query.query_id}")
    if segmenter_record is not None:
        segmenter_record.before_query_write()
    if store.write_query(record):
        summary.queries_written += 1
        sys.audit(AUDIT_EVENT, "query.after_publish", f"{query.scene_id}/{query.query_id}")
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
