"""Readers for 3D grounding / reasoning benchmark annotations; every reader returns ``list[Query]``.

Formats (``fmt``; "auto" detects from the extension and the first record's keys):

===============  =====================================================================  =======================
fmt              record keys (scene / targets / text)                                   query_id
===============  =====================================================================  =======================
own              scene_id / target_ids / text (+ query_id, source, kind, extra)         as stored
scanrefer        scene_id / object_id / description (+ object_name, ann_id, token)      {scene}_{object}_{ann}
referit          scan_id / target_id / caption (+ obj_name; the fixtures' json)         {source}_{scene}_{target}_{i:04d}
nr3d (csv)       scan_id / target_id / utterance (+ instance_type, ...)                 {source}_{scene}_{target}_{row:04d}
multi3drefer     scene_id / object_ids (list, may be empty) / description, eval_type    {scene}_{ann_id}
intent3d         scan_id|scene_id / target_id (list) / utterance|description            {scene}_{ann_id|i:05d}
instruct3d       scene_id / object_id (list, empty = zero-target) / description         {scene}_{ann_id|i:05d}
reason3d         scene_id / object_id (int or list) / question, type                    {scene}_{ann_id|id|hash}
===============  =====================================================================  =======================

A zero-target record (``object_id`` / ``target_id`` ``[]``) is allowed in every format; in the ids
that name the target, ``none`` stands for it (``{scene}_none_{ann}``). Reason3D records carry no id:
their id is ``{scene}_{h}`` with ``h`` a hash of scene, question and object ids, so it does not
depend on the record's position in the file.

``extra`` keeps every other field of the record. ``kind`` is Multi3DRefer's ``eval_type``,
"implicit" for the intention / reasoning benchmarks (Intent3D, Instruct3D, Reason3D) and None for the
referring ones. A json object whose values are lists of records is read list by list; a key that
is a known benchmark name (the per-scene fixture file ``{"scanrefer": [...], "nr3d": [...]}``) becomes
the records' ``source``, any other key (e.g. an Intent3D samples dict keyed by scene id) does not.

Auto-detection: a file named like a benchmark's release file is read in that format whatever its keys
say (``*_samples_dict_vg_format*.json`` -> intent3d, ``reason3d_*.json`` -> reason3d), unless its
records are in the own format; otherwise the first record's keys decide (:func:`detect_format`).

Policy: a record without text, or with empty / whitespace-only text, is an error
(BadInputError naming the file and the record index), never a silent skip. Duplicate query ids
within one file get a ``~2``, ``~3`` ... suffix.
"""

from __future__ import annotations

import csv
import fnmatch
import hashlib
import json
import os
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from mllm3d.shared.errors import BadInputError
from mllm3d.shared.scene import Query

FORMATS = ("own", "scanrefer", "referit", "nr3d", "multi3drefer", "intent3d", "instruct3d", "reason3d")
_KNOWN_SOURCES = ("multi3drefer", "scanrefer", "nr3d", "sr3d", "intent3d", "instruct3d", "reason3d")
# release file names that say the format (checked before the record keys; lower-case glob -> fmt)
FILE_PATTERNS: tuple[tuple[str, str], ...] = (
    ("*_samples_dict_vg_format*.json", "intent3d"),
    ("reason3d_*.json", "reason3d"),
)


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


def format_from_name(path: Path) -> str | None:
    """The format a benchmark's release file name says (:data:`FILE_PATTERNS`), or None."""
    name = path.name.lower()
    return next((fmt for pattern, fmt in FILE_PATTERNS if fnmatch.fnmatchcase(name, pattern)), None)


def _source_name(path: Path, fmt: str) -> str:
    name = path.name.lower()
    for s in _KNOWN_SOURCES:
        if s in name:
            return s
    return format_from_name(path) or fmt


# -------------------------------------------------------------------------------- files


def _load_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as exc:
        raise BadInputError(f"{path}: invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInputError(f"{path}: cannot read: {exc}") from None


def _load_jsonl(path: Path) -> list[Any]:
    out = []
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInputError(f"{path}: cannot read: {exc}") from None
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise BadInputError(f"{path}: invalid JSON at line {n}, column {exc.colno}: {exc.msg}") from None
    return out


def _load_csv(path: Path) -> list[dict]:
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = list(csv.DictReader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise BadInputError(f"{path}: cannot read CSV: {exc}") from None
    if rows and None in rows[0]:
        raise BadInputError(f"{path}: CSV row 1 has more fields than the header")
    return rows


def _known_source(key: Any) -> str | None:
    name = str(key).strip().lower()
    return name if name in _KNOWN_SOURCES else None


def _groups(data: Any, path: Path) -> list[tuple[str | None, list]]:
    """(source override, records) lists of a parsed json document."""
    if isinstance(data, list):
        return [(None, data)]
    if isinstance(data, dict):
        if isinstance(data.get("queries"), list):
            return [(None, data["queries"])]
        if data and all(isinstance(v, list) for v in data.values()):
            # a benchmark name as key says the source; other keys (scene ids, splits ...) do not
            return [(_known_source(k), v) for k, v in data.items()]
        if data and all(isinstance(v, dict) for v in data.values()):
            return [(None, list(data.values()))]
    raise BadInputError(f"{path}: expected a JSON list of records (or an object of lists), got {type(data).__name__}")


def _parse(records: list, fmt: str, ctx: _Ctx) -> list[Query]:
    if fmt == "auto":
        first = next((r for r in records if isinstance(r, dict)), None)
        if first is None:
            return []
        detected = detect_format(first)
        named = format_from_name(ctx.path)
        if named is not None and detected != "own":
            detected = named  # the release file name wins over the keys (scalar target ids, ...)
        if detected is None:
            raise BadInputError(f"{ctx.path}: cannot tell the annotation format from the keys {sorted(first)}")
        fmt = detected
        if ctx.source == "auto":
            ctx.source = "own" if fmt == "own" else _source_name(ctx.path, fmt)
    if fmt not in READERS:
        raise BadInputError(f"{ctx.path}: unknown annotation format {fmt!r} (known: {', '.join(FORMATS)})")
    if ctx.source == "auto":
        ctx.source = _source_name(ctx.path, fmt)
    reader = READERS[fmt]
    out = []
    for i, rec in enumerate(records):
        if not isinstance(rec, dict):
            raise ctx.fail(i, f"expected a JSON object, got {type(rec).__name__}")
        q = reader(rec, i, ctx)
        if fmt != "own" and "dataset" in rec and str(rec["dataset"]).strip():
            q.source = str(rec["dataset"]).strip()
        out.append(q)
    return out


def _dedupe_ids(queries: list[Query]) -> list[Query]:
    seen: dict[tuple[str, str], int] = {}
    for q in queries:
        key = (q.scene_id, q.query_id)
        n = seen.get(key, 0) + 1
        seen[key] = n
        if n > 1:
            q.query_id = f"{q.query_id}~{n}"
    return queries


def load_queries(path: str | os.PathLike[str], fmt: str = "auto") -> list[Query]:
    """Read benchmark annotations (json, jsonl or Nr3D-style csv) as Query objects; see the module doc."""
    p = Path(path)
    if not p.is_file():
        raise BadInputError(f"{p}: annotation file not found")
    if fmt != "auto" and fmt not in FORMATS:
        raise BadInputError(f"{p}: unknown annotation format {fmt!r} (known: auto, {', '.join(FORMATS)})")
    suffix = p.suffix.lower()
    if suffix == ".csv":
        rows = _load_csv(p)
        ctx = _Ctx(p, _source_name(p, "nr3d"))
        return _dedupe_ids(_parse(rows, "nr3d" if fmt == "auto" else fmt, ctx))
    if suffix == ".jsonl":
        return _dedupe_ids(_parse(_load_jsonl(p), "own" if fmt == "auto" else fmt, _Ctx(p, "auto")))
    out: list[Query] = []
    for source, records in _groups(_load_json(p), p):
        out.extend(_parse(records, fmt, _Ctx(p, source or "auto")))
    return _dedupe_ids(out)


def query_to_dict(q: Query) -> dict[str, Any]:
    """The own-format record of a query."""
    return {
        "scene_id": q.scene_id,
        "query_id": q.query_id,
        "text": q.text,
        "target_ids": None if q.target_ids is None else [int(t) for t in q.target_ids],
        "source": q.source,
        "kind": q.kind,
        "extra": q.extra,
    }


def _json_default(o: Any) -> Any:
    if hasattr(o, "tolist"):
        return o.tolist()
    if hasattr(o, "item"):
        return o.item()
    raise TypeError(f"{type(o).__name__} is not JSON serialisable")


def save_queries(path: str | os.PathLike[str], queries: Iterable[Query]) -> Path:
    """Write queries in the own format: a json list, or one object per line for ``.jsonl``."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    records = [query_to_dict(q) for q in queries]
    if p.suffix.lower() == ".jsonl":
        text = "".join(json.dumps(r, default=_json_default) + "\n" for r in records)
    else:
        text = json.dumps(records, indent=1, default=_json_default) + "\n"
    tmp = p.with_name(f".{p.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, p)
    return p
