"""The per-query loop of Stage 1: the backend on every sampled frame, once for all queries that sampled it.

:func:`segment_queries` is shared by the runner (which writes each record into the store) and by
prediction of a new text query (which keeps the record): the backend encodes each frame once, masks are
checked and mapped from the colour image onto the depth grid at once, a query's record is assembled as
soon as all its views are done, and image features are freed once no unfinished query needs them.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from mllm3d.shared.errors import BadInputError
from mllm3d.shared.scene import Query, Scene
from mllm3d.shared.store import QueryRecord
from mllm3d.stage1_pseudolabel.records import (
    assemble_record,
    map_features_to_depth,
    map_mask_to_depth,
    view_lookup,
)
from mllm3d.stage1_pseudolabel.segmenter import SegmentationResult, Segmenter
from mllm3d.stage1_pseudolabel.view_sampling import ViewChoice, sample_views, usable_frames


@dataclass
class MaskTally:
    """What the backend gave over a loop: frames segmented, masks, and their pixels on the depth grid."""

    views: int = 0
    masks: int = 0
    pixels: int = 0

    @property
    def all_empty(self) -> bool:
        """Masks were given, but none keeps a pixel on the depth grid (colour/depth cameras disagree?)."""
        return self.masks > 0 and self.pixels == 0


def segment_queries(
    scene: Scene,
    queries: Sequence[Query],
    choices: Mapping[str, ViewChoice],
    segmenter: Segmenter,
    image_size: tuple[int, int],
    on_record: Callable[[Query, QueryRecord], None],
    on_view: Callable[[], None] | None = None,
    before_view: Callable[[], None] | None = None,
) -> MaskTally:
    """Segment every query's views (``choices[query_id]``) of ``scene`` and hand each finished record on.

    ``on_record(query, record)`` gets each query's record (masks on the ``image_size`` depth grid) as soon
    as its last view is done; ``on_view()`` is called after each frame, ``before_view()`` before each
    (it may raise to stop the loop).
    """
    by_frame: dict[int, list[Query]] = defaultdict(list)
    for q in queries:
        for i in choices[q.query_id].view_index:
            by_frame[int(i)].append(q)
    pending = {q.query_id: {int(i) for i in choices[q.query_id].view_index} for q in queries}
    results: dict[str, dict[int, SegmentationResult]] = defaultdict(dict)
    tally = MaskTally()
    features: dict[int, np.ndarray | None] = {}
    for fi in sorted(by_frame):
        if before_view is not None:
            before_view()
        qs = by_frame[fi]
        view = scene.views[fi]
        out = segmenter.segment_view(view, qs)
        if len(out.results) != len(qs):
            raise BadInputError(
                f"backend {segmenter.name}: {len(out.results)} results for {len(qs)} queries in frame {view.frame_id}"
            )
        tally.views += 1
        if on_view is not None:
            on_view()
        features[fi] = map_features_to_depth(out.image_features, view, image_size)  # the masks' frame
        lookup = view_lookup(view, image_size)
        for q, r in zip(qs, out.results, strict=True):
            if r.has_seg:
                if tuple(np.asarray(r.mask).shape) != view.color_size:
                    raise BadInputError(
                        f"backend {segmenter.name}: mask of shape {np.asarray(r.mask).shape} for frame "
                        f"{view.frame_id}, expected the colour resolution {view.color_size}"
                    )
                # on the depth grid now: smaller to keep, and assemble_record's resize is then a copy
                r = dataclasses.replace(r, mask=map_mask_to_depth(r.mask, view, image_size, lookup))
                tally.masks += 1
                tally.pixels += int(np.count_nonzero(r.mask))
            results[q.query_id][fi] = r
            pending[q.query_id].discard(fi)
            if not pending[q.query_id]:
                record = assemble_record(q, choices[q.query_id], results.pop(q.query_id), features, image_size,
                                         segmenter)
                on_record(q, record)
        # free the features of frames that no unfinished query uses
        needed = {int(i) for qid, p in pending.items() if p for i in choices[qid].view_index}
        for done in [i for i in features if i not in needed]:
            del features[done]
    return tally


def segment_one_query(
    scene: Scene,
    query: Query,
    segmenter: Segmenter,
    views: int | None = 4,
    seed: int = 0,
    min_valid_depth: float = 0.1,
) -> QueryRecord:
    """Stage 1 for one query outside a store: k seeded views, the backend on each, masks on the depth grid."""
    usable = usable_frames(scene.views, min_valid_depth)
    if len(usable) == 0:
        raise BadInputError(
            f"scene {scene.scene_id}: no frame has a valid pose and >= {min_valid_depth:.0%} valid depth"
        )
    choice = sample_views(usable, views, seed, scene.scene_id, query.query_id)
    sizes = {scene.views[int(i)].depth_size for i in choice.view_index}
    if len(sizes) != 1:
        raise BadInputError(f"scene {scene.scene_id}: the sampled views have different depth sizes {sorted(sizes)}")
    out: list[QueryRecord] = []
    segment_queries(scene, [query], {query.query_id: choice}, segmenter, sizes.pop(),
                    on_record=lambda _q, rec: out.append(rec))
    return out[0]
