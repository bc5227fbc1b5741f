"""A resume must not mix inputs: refuse a rerun whose queries or view sampling differ from what the store holds.

A complete query group is skipped on a rerun. If the query file now gives that id another text or other
targets, or the run samples views with other settings (``views``, ``seed``, ``min_valid_depth``, ``view_pool``), skipping
would keep stale pseudo-labels beside new ones (2- and 4-view queries in one store) without a word. So
before any work the runner compares every complete query group of its scenes with the run's inputs and
refuses, naming what changed. Groups written before ``view_sampling`` was recorded are still checked
for text, targets and the seed (their stored ``view_seed`` is a function of seed, scene and query id).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mllm3d.shared.errors import BadInputError
from mllm3d.shared.scene import Query
from mllm3d.shared.store import PseudoLabelStore, group_attrs
from mllm3d.stage1_pseudolabel.run_config import RunConfig
from mllm3d.stage1_pseudolabel.view_sampling import view_seed


def sampling_settings(cfg: RunConfig) -> dict[str, Any]:
    """The settings that decide a query's views, as recorded in its group (``view_sampling``)."""
    return {"views": "all" if cfg.views is None else int(cfg.views), "seed": int(cfg.seed),
            "min_valid_depth": float(cfg.min_valid_depth), "view_pool": getattr(cfg, "view_pool", None)}


def _targets(q: Query) -> list[int] | None:
    return None if q.target_ids is None else [int(t) for t in q.target_ids]


def query_changes(attrs: dict[str, Any], q: Query, cfg: RunConfig) -> list[str]:
    """What differs between a stored query group's attributes and this run's query and settings."""
    out = []
    if "text" in attrs and attrs["text"] != q.text:
        out.append(f"text {str(attrs['text'])[:60]!r} -> {q.text[:60]!r}")
    if "target_ids" in attrs and attrs["target_ids"] != _targets(q):
        out.append(f"target_ids {attrs['target_ids']} -> {_targets(q)}")
    stored = attrs.get("view_sampling")
    if isinstance(stored, dict):
        for key, now in sampling_settings(cfg).items():
            if key in stored and stored[key] != now:
                out.append(f"{key} {stored[key]!r} -> {now!r}")
    elif "view_seed" in attrs and attrs["view_seed"] != view_seed(cfg.seed, q.scene_id, q.query_id):
        out.append(f"seed: its views were drawn with another seed than {cfg.seed}")
    return out


def refuse_changed_inputs(store: PseudoLabelStore, by_scene: dict[str, list[Query]], scenes: Sequence[str],
                          cfg: RunConfig) -> None:
    """BadInputError naming the first changed queries if any complete query group differs from this run's."""
    changed: list[str] = []
    for sid in scenes:
        for q in by_scene.get(sid, []):
            attrs = group_attrs(store.query_dir(sid, q.query_id))
            if attrs is None or attrs.get("complete") is not True:
                continue
            diffs = query_changes(attrs, q, cfg)
            if diffs:
                changed.append(f"{sid}/{q.query_id}: {', '.join(diffs)}")
    if changed:
        shown = "; ".join(changed[:3]) + (f"; ... ({len(changed)} queries)" if len(changed) > 3 else "")
        raise BadInputError(
            f"{store.path}: the inputs changed since these query groups were written, a resume would mix them: "
            f"{shown}. Use a new --store, or rerun with the store's settings, or delete the named query groups "
            "to have them rewritten"
        )
