"""What one Stage 1 run (one shard) did: :class:`RunSummary` and its human-readable report."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


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
    segment_s: float = 0.0  # time in the segment loop (images, the segmenter, masks), store writes excluded

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
