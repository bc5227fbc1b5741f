"""Evaluation of point-mask predictions on a pseudo-label store (Reason3D / SegPoint protocol, docs/evaluation.md).

Every *method* turns one stored (scene, query) pair into a binary point mask:

- :class:`ProjectionBaseline` — ablation row (a) "2D projection only": unproject the cached masks and
  take the fused vote (``fused.seen & fused.prob >= vote_threshold``), no 3D training;
- :class:`NetworkMethod` — a trained 3D network (:class:`mllm3d.stage2_train3d.predictor.Predictor`):
  ``probability >= predictor.threshold``.

:func:`evaluate` scores all methods on the same pairs, side by side; the GT of a query is the union of
its target instances' points (instance ids from the stored scene).

Besides the query's own ``kind``, each score carries secondary breakdowns (:func:`query_groups`):
``uniqueness`` (ScanRefer's unique / multiple: the target's class occurs once / more than once among
the scene's instance labels), and, where the annotation has them, Nr3D's ``difficulty`` (easy / hard)
and ``view`` (view-dependent / view-independent).
"""

from __future__ import annotations

import csv
import json
import math
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from mllm3d.shared.errors import BadInputError, StoreError, UnknownSceneError
from mllm3d.shared.metrics import (
    QueryScore,
    breakdown_by_group,
    breakdown_by_kind,
    gt_mask,
    score_query,
    seen_split,
    subset_iou,
    summarize_scores,
)
from mllm3d.shared.scene import Query
from mllm3d.shared.store import PseudoLabelStore, QueryRecord, StoredScene
from mllm3d.stage2_train3d.fusion import FusionConfig, fuse_query

BASELINE_NAME = "2D projection (no 3D training)"


class Method(Protocol):
    """Something that predicts a binary point mask for a stored query."""

    name: str

    def predict_mask(self, scene: StoredScene, record: QueryRecord) -> np.ndarray:
        """(N,) bool mask over the scene's points."""
        ...


@dataclass
class ProjectionBaseline:
    """The fused multi-view vote of the cached 2D masks (paper Table 4 row a)."""

    fusion: FusionConfig = field(default_factory=FusionConfig)
    name: str = BASELINE_NAME

    def predict_mask(self, scene: StoredScene, record: QueryRecord) -> np.ndarray:
        fused = fuse_query(scene, record, self.fusion)
        return fused.seen & (fused.prob >= self.fusion.vote_threshold)


@dataclass
class NetworkMethod:
    """A trained 3D network; ``predictor`` has ``predict(scene, record) -> (N,) probabilities`` and ``threshold``."""

    name: str
    predictor: Any
    checkpoint: str = ""

    @classmethod
    def from_checkpoint(cls, name: str, path: str | Path, device: str = "cpu") -> NetworkMethod:
        from mllm3d.stage2_train3d.predictor import Predictor, resolve_checkpoint

        p = resolve_checkpoint(path)
        if not p.is_file():
            raise BadInputError(f"checkpoint {p} (for row {name!r}) not found")
        return cls(name=name, predictor=Predictor.from_checkpoint(p, device=device), checkpoint=str(p))

    def predict_mask(self, scene: StoredScene, record: QueryRecord) -> np.ndarray:
        prob = np.asarray(self.predictor.predict(scene, record))
        return prob >= float(self.predictor.threshold)


@dataclass
class EvalRow:
    """One method's scores on all evaluated queries."""

    name: str
    scores: list[QueryScore]
    seconds: float = 0.0
    checkpoint: str = ""

    @property
    def summary(self) -> dict[str, float]:
        return summarize_scores(self.scores)

    @property
    def by_kind(self) -> dict[str, dict[str, float]]:
        return breakdown_by_kind(self.scores)

    @property
    def seen_split(self) -> dict[str, float]:
        """mIoU on the points the views see / do not see, and the target's seen share."""
        return seen_split(self.scores)

    @property
    def by_group(self) -> dict[str, dict[str, dict[str, float]]]:
        """Secondary breakdowns (uniqueness, difficulty, view) -> label -> summary."""
        return breakdown_by_group(self.scores)


@dataclass
class EvalResult:
    """All rows, on the same (scene, query) pairs."""

    rows: list[EvalRow]
    pairs: list[tuple[str, str]]  # evaluated pairs
    skipped: list[tuple[str, str, str]] = field(default_factory=list)  # (scene, query, why)
    split: str = ""

    def row(self, name: str) -> EvalRow:
        for r in self.rows:
            if r.name == name:
                return r
        raise KeyError(f"no evaluation row named {name!r}; rows: {[r.name for r in self.rows]}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "split": self.split,
            "num_pairs": len(self.pairs),
            "skipped": [{"scene_id": s, "query_id": q, "why": w} for s, q, w in self.skipped],
            "rows": [
                {
                    "name": r.name,
                    "checkpoint": r.checkpoint,
                    "seconds": r.seconds,
                    "summary": _clean(r.summary),
                    "by_kind": {k: _clean(v) for k, v in r.by_kind.items()},
                    "by_group": {g: {k: _clean(v) for k, v in d.items()} for g, d in r.by_group.items()},
                    "seen_split": _clean(r.seen_split),
                    "queries": [s.as_dict() for s in r.scores],
                }
                for r in self.rows
            ],
        }


def _clean(d: dict[str, float]) -> dict[str, float | None]:
    """NaN -> None so the JSON is standard."""
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in d.items()}


Progress = Callable[[int, int], None]

# annotation fields naming the target's class: ScanRefer / Reason3D, the referit-style json, Nr3D csv
CLASS_FIELDS = ("object_name", "obj_name", "instance_type")
# (breakdown, annotation fields, label if true, label if false): Nr3D's json / csv flags
FLAG_GROUPS = (
    ("difficulty", ("easy", "is_easy_referit3d"), "easy", "hard"),
    ("view", ("view_dep", "is_vd_referit3d"), "view-dependent", "view-independent"),
)


def normalize_label(name: object) -> str:
    """Class names compared case-, underscore- and whitespace-insensitively ('Office_chair' = 'office chair')."""
    return " ".join(str(name).replace("_", " ").lower().split())


def _flag(value: object) -> bool | None:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    return True if text in ("true", "1", "yes") else False if text in ("false", "0", "no") else None


def uniqueness(query: Query, instance_labels: Mapping[int, str], counts: Counter | None = None) -> str | None:
    """ScanRefer's unique / multiple split: ``"unique"`` when the target's class occurs once among the
    scene's instances, ``"multiple"`` otherwise; None when it cannot be told.

    A query whose ``kind`` already is unique / multiple keeps it. The class is the annotation's
    ``object_name`` / ``obj_name`` / ``instance_type`` when some instance of the scene has it (after
    :func:`normalize_label`), else the label of the single target instance itself. Zero-target
    queries and scenes without instance labels give None.
    """
    if query.kind in ("unique", "multiple"):
        return query.kind
    if not query.target_ids or not instance_labels:
        return None
    counts = counts if counts is not None else Counter(normalize_label(v) for v in instance_labels.values())
    name = next((query.extra[k] for k in CLASS_FIELDS if str(query.extra.get(k) or "").strip()), None)
    cls = normalize_label(name) if name is not None else ""
    if not counts.get(cls):
        only = query.target_ids[0] if len(query.target_ids) == 1 else None
        if only is None or only not in instance_labels:
            return None
        cls = normalize_label(instance_labels[only])
    return "unique" if counts[cls] == 1 else "multiple"


def query_groups(query: Query, instance_labels: Mapping[int, str], counts: Counter | None = None) -> dict[str, str]:
    """The secondary breakdown labels of one query (see the module doc); absent ones are left out."""
    out: dict[str, str] = {}
    u = uniqueness(query, instance_labels, counts)
    if u is not None:
        out["uniqueness"] = u
    for group, keys, yes, no in FLAG_GROUPS:
        value = next((query.extra[k] for k in keys if k in query.extra), None)
        flag = None if value is None else _flag(value)
        if flag is not None:
            out[group] = yes if flag else no
    return out


def select_pairs(
    store: PseudoLabelStore, scenes: Sequence[str] | None = None
) -> tuple[list[tuple[str, str]], list[str]]:
    """The complete (scene, query) pairs of the given scenes (all scenes when None).

    Returns (pairs, unknown scene ids that the store does not have).
    """
    pairs = store.complete_pairs()
    if scenes is None:
        return pairs, []
    wanted = set(scenes)
    have = set(store.scene_ids())
    return [p for p in pairs if p[0] in wanted], sorted(wanted - have)


def evaluate(
    store: PseudoLabelStore,
    pairs: Sequence[tuple[str, str]],
    methods: Sequence[Method],
    progress: Progress | None = None,
    split: str = "",
) -> EvalResult:
    """Score every method on every pair. Each scene is read once; queries with unknown targets,
    scenes without instance ids, and pairs whose scene or query the store cannot read (StoreError) are
    skipped and listed in ``EvalResult.skipped`` with the reason."""
    if not methods:
        raise BadInputError("evaluate: no method to evaluate")
    names = [m.name for m in methods]
    if len(set(names)) != len(names):
        raise BadInputError(f"evaluate: row names must be unique, got {names}")
    rows = [EvalRow(name=m.name, scores=[], checkpoint=getattr(m, "checkpoint", "")) for m in methods]
    done: list[tuple[str, str]] = []
    skipped: list[tuple[str, str, str]] = []
    by_scene: dict[str, list[str]] = {}
    for sid, qid in pairs:
        by_scene.setdefault(sid, []).append(qid)
    n = 0
    for sid, qids in by_scene.items():
        try:
            scene = store.read_scene(sid)
        except (StoreError, UnknownSceneError) as exc:
            for qid in qids:
                n += 1
                skipped.append((sid, qid, f"store error: {exc}"))
                if progress is not None:
                    progress(n, len(pairs))
            continue
        counts = Counter(normalize_label(v) for v in scene.instance_labels.values())
        for qid in qids:
            n += 1
            try:
                why = _score_pair(store, scene, qid, methods, rows, counts)
            except StoreError as exc:
                why = f"store error: {exc}"
            if why is None:
                done.append((sid, qid))
            else:
                skipped.append((sid, qid, why))
            if progress is not None:
                progress(n, len(pairs))
    return EvalResult(rows=rows, pairs=done, skipped=skipped, split=split)


def _score_pair(
    store: PseudoLabelStore, scene: StoredScene, qid: str, methods: Sequence[Method], rows: list[EvalRow],
    counts: Counter,
) -> str | None:
    """Score one pair with every method (all rows or none get a score); the reason when it is skipped."""
    sid = scene.scene_id
    record = store.read_query(sid, qid, with_features=False)
    tids = record.query.target_ids
    if scene.instance_ids is None:
        return "scene has no instance ids"
    if tids is None:
        return "target ids unknown"
    preds, seconds = [], []
    for m in methods:
        t0 = time.perf_counter()
        preds.append(m.predict_mask(scene, record))
        seconds.append(time.perf_counter() - t0)
    groups = query_groups(record.query, scene.instance_labels, counts)
    seen = views_see(scene, record)
    gt = gt_mask(scene.instance_ids, tids)
    share = float(seen[gt].mean()) if gt.any() else None
    for row, pred, sec in zip(rows, preds, seconds, strict=True):
        row.seconds += sec
        score = score_query(pred, scene.instance_ids, tids, sid, qid, record.query.kind, groups)
        score.seen_iou, score.unseen_iou = subset_iou(pred, gt, seen), subset_iou(pred, gt, ~seen)
        score.target_seen_share = share
        row.scores.append(score)
    return None


def views_see(scene: StoredScene, record: QueryRecord) -> np.ndarray:
    """(N,) bool: the points that at least one of the query's k views sees (filtered or not)."""
    seen = np.zeros(scene.num_points, bool)
    seen[scene.correspondences.subset(record.view_index).point_idx] = True
    return seen


# ---------------------------------------------------------------------------------------------- output
SUMMARY_COLUMNS = [
    ("n", "queries"),
    ("acc25", "Acc@0.25"),
    ("acc50", "Acc@0.5"),
    ("miou", "mIoU"),
    ("miou_targeted", "mIoU targeted"),
    ("miou_grounded", "mIoU (targeted, IoU>0.25)"),
    ("n_grounded", "targeted IoU>0.25"),
    ("n_zero_target", "zero-target"),
    ("zero_target_acc", "zero-target acc"),
]
# the CSV has every table column plus these counts
CSV_COLUMNS = [*SUMMARY_COLUMNS, ("n_targeted", "targeted"), ("n_missing_targets", "missing-target")]
PERCENT = {"acc25", "acc50", "miou", "miou_grounded", "miou_targeted", "zero_target_acc"}
GROUP_TITLES = {"uniqueness": "unique / multiple", "difficulty": "easy / hard", "view": "view-dependent"}


def fmt_value(key: str, value: float) -> str:
    """Percent with 2 decimals for rates/IoUs, integers for counts, '-' for NaN."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{100 * value:.2f}" if key in PERCENT else f"{int(value)}"


def csv_rows(result: EvalResult) -> list[dict[str, Any]]:
    """One CSV line per (row, breakdown, subset): ``all``/``all``, then ``kind``/each query kind, then
    each secondary breakdown (``uniqueness``/unique, multiple ...)."""
    out = []
    for r in result.rows:
        subsets: list[tuple[str, str, dict[str, float]]] = [("all", "all", r.summary)]
        subsets += [("kind", k, v) for k, v in r.by_kind.items()]
        subsets += [(g, k, v) for g, d in r.by_group.items() for k, v in d.items()]
        for breakdown, subset, s in subsets:
            line: dict[str, Any] = {"method": r.name, "breakdown": breakdown, "subset": subset}
            line.update({k: s.get(k, float("nan")) for k, _ in CSV_COLUMNS})
            out.append(line)
    return out


def write_csv(result: EvalResult, path: str | Path) -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    lines = csv_rows(result)
    with open(p, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=["method", "breakdown", "subset", *[k for k, _ in CSV_COLUMNS]])
        w.writeheader()
        w.writerows(lines)
    return p


def write_json(result: EvalResult, path: str | Path, extra: dict[str, Any] | None = None) -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    data = {**(extra or {}), **result.to_dict()}
    p.write_text(json.dumps(data, indent=2), encoding="utf-8")
    return p
