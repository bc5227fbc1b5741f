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

The per-format readers and :func:`detect_format` are in :mod:`mllm3d.shared.annotation_formats`.
"""

from __future__ import annotations

import csv
import fnmatch
import json
import os
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from mllm3d.shared.annotation_formats import FORMATS, MAX_OBJECT_ID, READERS, _Ctx, content_id, detect_format
from mllm3d.shared.errors import BadInputError
from mllm3d.shared.scene import Query

__all__ = [
    "FILE_PATTERNS", "FORMATS", "MAX_OBJECT_ID", "READERS", "content_id", "detect_format", "format_from_name",
    "load_queries", "query_to_dict", "save_queries",
]

_KNOWN_SOURCES = ("multi3drefer", "scanrefer", "nr3d", "sr3d", "intent3d", "instruct3d", "reason3d")
# release file names that say the format (checked before the record keys; lower-case glob -> fmt)
FILE_PATTERNS: tuple[tuple[str, str], ...] = (
    ("*_samples_dict_vg_format*.json", "intent3d"),
    ("reason3d_*.json", "reason3d"),
)


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
