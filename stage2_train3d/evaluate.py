"""Evaluation of point-mask predictions on a pseudo-label store (Reason3D / SegPoint protocol, data.md).

Every *method* turns one stored (scene, query) pair into a binary point mask:

- :class:`ProjectionBaseline` — ablation row (a) "2D projection only": unproject the cached masks and
  take the fused vote (``fused.seen & fused.prob >= vote_threshold``), no 3D training;
- :class:`NetworkMethod` — a trained 3D network (:class:`stage2_train3d.predictor.Predictor`):
  ``probability >= predictor.threshold``.

:func:`evaluate` scores all methods on the same pairs, side by side; the GT of a query is the union of
its target instances' points (instance ids from the stored scene).
"""

from __future__ import annotations

import csv
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from shared.errors import BadInputError
from shared.metrics import QueryScore, breakdown_by_kind, score_query, summarize_scores
from shared.store import PseudoLabelStore, QueryRecord, StoredScene
from stage2_train3d.fusion import FusionConfig, fuse_query

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
        from stage2_train3d.predictor import Predictor

        p = Path(path)
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
                    "queries": [s.as_dict() for s in r.scores],
                }
                for r in self.rows
            ],
        }


def _clean(d: dict[str, float]) -> dict[str, float | None]:
    """NaN -> None so the JSON is standard."""
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in d.items()}


Progress = Callable[[int, int], None]


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
    """Score every method on every pair. Each scene is read once; queries with unknown targets, and
    scenes without instance ids, are skipped and listed in ``EvalResult.skipped``."""
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
        scene = store.read_scene(sid)
        for qid in qids:
            n += 1
            record = store.read_query(sid, qid, with_features=False)
            tids = record.query.target_ids
            if scene.instance_ids is None:
                skipped.append((sid, qid, "scene has no instance ids"))
            elif tids is None:
                skipped.append((sid, qid, "target ids unknown"))
            else:
                for m, row in zip(methods, rows, strict=True):
                    t0 = time.perf_counter()
                    pred = m.predict_mask(scene, record)
                    row.seconds += time.perf_counter() - t0
                    row.scores.append(score_query(pred, scene.instance_ids, tids, sid, qid, record.query.kind))
                done.append((sid, qid))
            if progress is not None:
                progress(n, len(pairs))
    return EvalResult(rows=rows, pairs=done, skipped=skipped, split=split)


# ---------------------------------------------------------------------------------------------- output
SUMMARY_COLUMNS = [
    ("n", "queries"),
    ("acc25", "Acc@0.25"),
    ("acc50", "Acc@0.5"),
    ("miou", "mIoU"),
    ("miou_grounded", "mIoU grounded (IoU>0.25)"),
    ("n_grounded", "grounded"),
    ("miou_targeted", "mIoU targeted"),
    ("n_zero_target", "zero-target"),
    ("zero_target_acc", "zero-target acc"),
]
PERCENT = {"acc25", "acc50", "miou", "miou_grounded", "miou_targeted", "zero_target_acc"}


def fmt_value(key: str, value: float) -> str:
    """Percent with 2 decimals for rates/IoUs, integers for counts, '-' for NaN."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{100 * value:.2f}" if key in PERCENT else f"{int(value)}"


def csv_rows(result: EvalResult) -> list[dict[str, Any]]:
    """One CSV line per (row, subset): subset 'all' then each query kind."""
    out = []
    for r in result.rows:
        subsets = {"all": r.summary, **r.by_kind}
        for subset, s in subsets.items():
            line: dict[str, Any] = {"method": r.name, "subset": subset}
            line.update({k: s.get(k, float("nan")) for k, _ in SUMMARY_COLUMNS})
            out.append(line)
    return out


def write_csv(result: EvalResult, path: str | Path) -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    lines = csv_rows(result)
    with open(p, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=["method", "subset", *[k for k, _ in SUMMARY_COLUMNS]])
        w.writeheader()
        w.writerows(lines)
    return p


def write_json(result: EvalResult, path: str | Path, extra: dict[str, Any] | None = None) -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    data = {**(extra or {}), **result.to_dict()}
    p.write_text(json.dumps(data, indent=2), encoding="utf-8")
    return p
