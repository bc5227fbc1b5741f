"""One reader per annotation format (record dict -> Query) and format detection from a record's keys.

The formats are described in :mod:`mllm3d.shared.annotations`; every reader raises BadInputError
naming the file and the record index on a bad record.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from mllm3d.shared.errors import BadInputError
from mllm3d.shared.scene import Query

FORMATS = ("own", "scanrefer", "referit", "nr3d", "multi3drefer", "intent3d", "instruct3d", "reason3d")
MAX_OBJECT_ID = 2**31 - 1  # instance ids are stored as int32


class _Ctx:
    """Where a record came from, for error messages."""

    def __init__(self, path: Path, source: str) -> None:
        self.path = path
        self.source = source

    def fail(self, index: int, what: str) -> BadInputError:
        return BadInputError(f"{self.path}: record {index}: {what}")


def _first(rec: dict, keys: Iterable[str]) -> Any:
    for k in keys:
        if k in rec:
            return rec[k]
    return None


def _text(rec: dict, keys: tuple[str, ...], ctx: _Ctx, i: int) -> str:
    value = _first(rec, keys)
    if value is None:
        raise ctx.fail(i, f"no text field (expected one of {list(keys)})")
    if not isinstance(value, str):
        field_name = next(k for k in keys if k in rec)
        raise ctx.fail(i, f"text field {field_name!r} must be a string, got {type(value).__name__} {str(value)[:60]}")
    text = value.strip()
    if not text:
        raise ctx.fail(i, f"empty text in field {next(k for k in keys if k in rec)!r}")
    return text


def _scene(rec: dict, keys: tuple[str, ...], ctx: _Ctx, i: int) -> str:
    value = _first(rec, keys)
    if value is None or not str(value).strip():
        raise ctx.fail(i, f"no scene id (expected one of {list(keys)})")
    return str(value).strip()


def _int(value: Any, ctx: _Ctx, i: int, field: str) -> int:
    """An object id: an int (or integral float / numeric string) in 0..2**31-1; booleans are refused."""
    try:
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise ValueError
        out = int(str(value).strip()) if not isinstance(value, (int, float)) else int(value)
    except (TypeError, ValueError, OverflowError):
        raise ctx.fail(i, f"{field} must be an integer object id, got {value!r}") from None
    if not 0 <= out <= MAX_OBJECT_ID:
        raise ctx.fail(i, f"{field}: object id {value!r} is outside 0..{MAX_OBJECT_ID}")
    return out


def _targets(rec: dict, keys: tuple[str, ...], ctx: _Ctx, i: int, allow_scalar: bool = True) -> list[int]:
    """Target ids from the first present key: an int, a numeric string, or a list of them ([] allowed)."""
    key = next((k for k in keys if k in rec), None)
    if key is None:
        raise ctx.fail(i, f"no target field (expected one of {list(keys)})")
    value = rec[key]
    if isinstance(value, str) and value.strip().startswith("["):
        try:
            value = json.loads(value)
        except ValueError:
            raise ctx.fail(i, f"{key} is not a valid list: {value!r}") from None
    if isinstance(value, (list, tuple)):
        return [_int(v, ctx, i, key) for v in value]
    if not allow_scalar:
        raise ctx.fail(i, f"{key} must be a list, got {value!r}")
    return [_int(value, ctx, i, key)]


def _extra(rec: dict, used: Iterable[str]) -> dict:
    skip = set(used)
    return {k: v for k, v in rec.items() if k not in skip}


# -------------------------------------------------------------------------------- one reader per format


def _own(rec: dict, i: int, ctx: _Ctx) -> Query:
    targets = rec.get("target_ids")
    return Query(
        scene_id=_scene(rec, ("scene_id",), ctx, i),
        query_id=str(rec.get("query_id") or f"{rec.get('scene_id')}_{i:05d}"),
        text=_text(rec, ("text",), ctx, i),
        target_ids=None if targets is None else _targets(rec, ("target_ids",), ctx, i, allow_scalar=False),
        source=str(rec.get("source") or "own"),
        kind=rec.get("kind"),
        extra=dict(rec.get("extra") or {}),
    )


def _target_part(targets: list[int]) -> str:
    """The target's part of a query id: the first target, ``none`` for a zero-target record."""
    return str(targets[0]) if targets else "none"


def _scanrefer(rec: dict, i: int, ctx: _Ctx) -> Query:
    scene = _scene(rec, ("scene_id",), ctx, i)
    targets = _targets(rec, ("object_id",), ctx, i)
    return Query(scene, f"{scene}_{_target_part(targets)}_{rec.get('ann_id', i)}",
                 _text(rec, ("description",), ctx, i),
                 targets, ctx.source, None, _extra(rec, ("scene_id", "object_id", "description")))


def _referit(rec: dict, i: int, ctx: _Ctx) -> Query:
    scene = _scene(rec, ("scan_id", "scene_id"), ctx, i)
    targets = _targets(rec, ("target_id", "object_id"), ctx, i)
    text = _text(rec, ("caption", "utterance", "description"), ctx, i)
    qid = f"{ctx.source}_{scene}_{_target_part(targets)}_{i:04d}"
    return Query(scene, qid, text, targets, ctx.source, None,
                 _extra(rec, ("scan_id", "scene_id", "target_id", "object_id", "caption", "utterance", "description")))


def _multi3drefer(rec: dict, i: int, ctx: _Ctx) -> Query:
    scene = _scene(rec, ("scene_id", "scan_id"), ctx, i)
    targets = _targets(rec, ("object_ids",), ctx, i, allow_scalar=False)
    kind = rec.get("eval_type")
    return Query(scene, f"{scene}_{rec.get('ann_id', i)}", _text(rec, ("description",), ctx, i), targets,
                 ctx.source, None if kind is None else str(kind),
                 _extra(rec, ("scene_id", "scan_id", "object_ids", "description")))


def _intent3d(rec: dict, i: int, ctx: _Ctx) -> Query:
    scene = _scene(rec, ("scan_id", "scene_id"), ctx, i)
    targets = _targets(rec, ("target_id", "target_ids", "object_id"), ctx, i)
    ann = rec.get("ann_id", rec.get("id", f"{i:05d}"))
    return Query(scene, f"{scene}_{ann}", _text(rec, ("utterance", "description", "intention"), ctx, i), targets,
                 ctx.source, "implicit",
                 _extra(rec, ("scan_id", "scene_id", "target_id", "target_ids", "object_id", "utterance",
                              "description", "intention")))


def _instruct3d(rec: dict, i: int, ctx: _Ctx) -> Query:
    scene = _scene(rec, ("scene_id", "scan_id"), ctx, i)
    targets = _targets(rec, ("object_id", "object_ids"), ctx, i)
    ann = rec.get("ann_id", rec.get("id", f"{i:05d}"))
    return Query(scene, f"{scene}_{ann}", _text(rec, ("description", "instruction", "question"), ctx, i), targets,
                 ctx.source, "implicit",
                 _extra(rec, ("scene_id", "scan_id", "object_id", "object_ids", "description", "instruction",
                              "question")))


def content_id(scene: str, text: str, targets: list[int]) -> str:
    """A position-free id part: 12 hex digits of a hash of scene, text and sorted target ids."""
    key = json.dumps([scene, text, sorted(int(t) for t in targets)], ensure_ascii=False)
    return hashlib.sha1(key.encode("utf-8")).hexdigest()[:12]


def _reason3d(rec: dict, i: int, ctx: _Ctx) -> Query:
    scene = _scene(rec, ("scene_id", "scan_id"), ctx, i)
    targets = _targets(rec, ("object_id", "object_ids"), ctx, i)
    text = _text(rec, ("question",), ctx, i)
    ann = _first(rec, ("ann_id", "id", "question_id"))
    if ann is None or not str(ann).strip():
        ann = content_id(scene, text, targets)
    return Query(scene, f"{scene}_{str(ann).strip()}", text, targets, ctx.source, "implicit",
                 _extra(rec, ("scene_id", "scan_id", "object_id", "object_ids", "question")))


READERS: dict[str, Callable[[dict, int, _Ctx], Query]] = {
    "own": _own, "scanrefer": _scanrefer, "referit": _referit, "nr3d": _referit, "multi3drefer": _multi3drefer,
    "intent3d": _intent3d, "instruct3d": _instruct3d, "reason3d": _reason3d,
}


def detect_format(rec: dict) -> str | None:
    """The format of one record from its keys (None if unrecognised)."""
    keys = set(rec)
    if {"text", "scene_id"} <= keys and ("query_id" in keys or "target_ids" in keys):
        return "own"
    if "question" in keys:
        return "reason3d"
    if "object_ids" in keys:
        return "multi3drefer"
    if "caption" in keys:
        return "referit"
    if "target_id" in keys and ("utterance" in keys or "description" in keys):
        return "intent3d" if isinstance(rec["target_id"], list) else "referit"
    if "description" in keys and "object_id" in keys:
        if isinstance(rec["object_id"], list) or "image" in keys or "images" in keys:
            return "instruct3d"
        return "scanrefer"
    return None
