"""The pseudo-label store: the one contract between Stage 1 and Stage 2 (schema in docs/store.md).

A Zarr v3 directory store::

    <store>/zarr.json                         root attrs: format, schema_version, creator, segmenter
    <store>/scenes/<scene_key>/               one scene: geometry + correspondences (query independent)
    <store>/scenes/<scene_key>/queries/<query_key>/   one query: per-view masks, [SEG] embeddings, scores

Crash safety: every scene group and query group is written into a hidden temporary directory
(``.tmp-…``) beside its final place, its ``complete`` attribute is written last, and the directory
is then renamed into place (atomic on a local POSIX filesystem). A group is therefore either
absent or complete under its final name; readers never see a half-written group, and nothing
already complete is ever modified except by an explicit ``overwrite``.

"Complete" always means: the group's ``zarr.json`` parses and has ``attributes.complete is True``.
A folder under a final name without that marker (an older version, a hand copy, a crash on a
filesystem without atomic rename) counts as absent: ``has_scene``/``has_query`` say False, the
next write moves it aside (``.trash-…``) and publishes a fresh group, and reading it raises a
:class:`StoreError` that names it. Every chunk of every array is written, even one that holds only
the fill value, so a lost chunk file is detectable (``mllm3d inspect --check``).

The code is split by job: ``store_keys`` (names, keys, audit events), ``store_records`` (the dataclasses),
``store_io`` (array layout, markers, direct reads), ``store_base`` (publish, listing), ``store_scenes`` and
``store_queries`` (the two group kinds), ``store_query_layout`` (a query group's arrays in each schema); this
module joins them and opens stores. Every public name is
importable from here.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from pathlib import Path
from typing import Any

from mllm3d.shared.errors import StoreError
from mllm3d.shared.store_base import StoreBase
from mllm3d.shared.store_io import (
    _fsync_tree,
    _has_array,
    _load,
    _read_json,
    _require_complete,
    _write_array,
    compressor,
    group_attrs,
    group_is_complete,
    replace_json,
)
from mllm3d.shared.store_keys import (
    ALL_CHUNKS_ATTR,
    AUDIT_EVENT,
    MAX_KEY_LEN,
    SCHEMA_VERSION,
    STORE_FORMAT,
    TMP_PREFIX,
    TRASH_PREFIX,
    _fire,
    _group_dir,
    _unbounded_key,
    config_hash,
    key_matches,
    safe_key,
    segmenter_attr,
)
from mllm3d.shared.store_queries import QueryGroups
from mllm3d.shared.store_records import QueryRecord, StoredScene
from mllm3d.shared.store_scenes import SceneGroups

__all__ = [
    "ALL_CHUNKS_ATTR", "AUDIT_EVENT", "MAX_KEY_LEN", "SCHEMA_VERSION", "STORE_FORMAT", "TMP_PREFIX", "TRASH_PREFIX",
    "PseudoLabelStore", "QueryRecord", "StoreBase", "StoredScene", "_fire", "_fsync_tree", "_group_dir", "_has_array",
    "_load", "_read_json", "_require_complete", "_unbounded_key", "_write_array", "compressor", "config_hash",
    "group_attrs", "group_is_complete", "key_matches", "open_store", "safe_key",
]


class PseudoLabelStore(SceneGroups, QueryGroups):
    """Read/write access to a pseudo-label store on local disk. Use :func:`open_store`."""


def _group_meta(meta: Path, what: str) -> dict[str, Any]:
    """The parsed ``meta`` of a Zarr v3 group; a StoreError naming the file if it is unreadable or no group."""
    try:
        doc = _read_json(meta)
    except (OSError, ValueError) as exc:
        raise StoreError(f"{meta}: unreadable {what} metadata: {exc}") from exc
    if not isinstance(doc, dict):
        raise StoreError(f"{meta}: {what} metadata is a JSON {type(doc).__name__}, expected a Zarr group object")
    if doc.get("node_type") != "group":
        raise StoreError(f"{meta}: {what} metadata says node_type {doc.get('node_type')!r}, expected 'group' "
                         "(not a pseudo-label store group)")
    return doc


def _root_attrs(meta: Path) -> dict[str, Any]:
    """The root group's attributes (the file must parse and describe a group)."""
    attrs = _group_meta(meta, "store").get("attributes", {})
    if not isinstance(attrs, dict):
        raise StoreError(f"{meta}: store attributes are a JSON {type(attrs).__name__}, expected an object")
    return attrs


def _check_scenes_group(meta: Path) -> None:
    """The ``scenes`` group's zarr.json, when present, must parse and describe a group (one small read).

    A missing one is left to ``inspect --check``, which reports it; readers do not need it."""
    if meta.exists():
        _group_meta(meta, "scenes group")


def _check_root(path: Path, attrs: dict[str, Any]) -> None:
    if attrs.get("format") != STORE_FORMAT:
        raise StoreError(
            f"{path}: not an mllm3d pseudo-label store (root zarr.json has no format={STORE_FORMAT!r}); "
            "refusing to read or write a foreign Zarr store"
        )
    version = attrs.get("schema_version")
    if not isinstance(version, int) or version > SCHEMA_VERSION or version < 1:
        raise StoreError(
            f"{path}: store schema_version {version!r} is not supported by this version of mllm3d "
            f"(it reads schema_version 1..{SCHEMA_VERSION}); upgrade mllm3d or use a matching store"
        )


def open_store(
    path: str | os.PathLike[str],
    mode: str = "r",
    segmenter: dict[str, Any] | None = None,
    allow_mixed_segmenters: bool = False,
) -> PseudoLabelStore:
    """Open (mode 'r') or open-or-create (mode 'a') a store.

    ``segmenter`` = {"name": ..., "config": {...}} is recorded at creation; opening an existing
    store for writing with a different segmenter config raises unless ``allow_mixed_segmenters``.
    """
    p = Path(path)
    if mode not in ("r", "a"):
        raise ValueError(f"mode must be 'r' or 'a', got {mode!r}")
    if p.exists() and not p.is_dir():
        raise StoreError(f"{p}: store path exists and is a file, not a store directory")
    meta = p / "zarr.json"
    if not meta.is_file():
        if mode == "r" or (p.exists() and any(p.iterdir())):
            what = "does not exist" if not p.exists() else "is a non-empty directory without a zarr.json"
            raise StoreError(f"{p}: not a pseudo-label store ({what})")
        _create_root(p, segmenter)
    attrs = _root_attrs(meta)
    _check_root(p, attrs)
    _check_scenes_group(p / "scenes" / "zarr.json")
    if mode == "a" and segmenter is not None:
        stored = attrs.get("segmenter") or {}
        want = config_hash(segmenter.get("config", {}))
        if stored and (stored.get("name"), stored.get("config_hash")) != (segmenter.get("name"), want):
            if not allow_mixed_segmenters:
                raise StoreError(
                    f"{p}: store was written by segmenter {stored.get('name')!r} (config hash "
                    f"{stored.get('config_hash')}), this run uses {segmenter.get('name')!r} (config hash {want}); "
                    "use another store, or pass --allow-mixed-segmenters"
                )
    if mode == "a" and attrs.get("schema_version", SCHEMA_VERSION) < SCHEMA_VERSION:
        attrs = _upgrade_root(p, meta)
    return PseudoLabelStore(p, attrs, writable=(mode == "a"))


def _upgrade_root(path: Path, meta: Path) -> dict[str, Any]:
    """Raise an older store's root ``schema_version`` before new groups go in (atomic replace of its zarr.json).

    Groups of every older version stay readable as they are; the bump makes an mllm3d that reads only the
    older version refuse the store with its "upgrade mllm3d" message instead of misreading new groups."""
    try:
        doc = _read_json(meta)
        old = doc["attributes"]["schema_version"]
        doc["attributes"].update({"schema_version": SCHEMA_VERSION, "upgraded_from_schema": old})
        replace_json(meta, doc)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise StoreError(f"{meta}: could not raise the store's schema_version to {SCHEMA_VERSION}: {exc}") from exc
    return dict(doc["attributes"])


def _write_group_json(path: Path, attrs: dict[str, Any]) -> None:
    """A Zarr v3 group's zarr.json, as zarr writes it (``attributes``, ``zarr_format``, ``node_type``)."""
    with open(path, "xb") as f:
        f.write(json.dumps({"attributes": attrs, "zarr_format": 3, "node_type": "group"}, indent=2).encode())
        f.flush()
        os.fsync(f.fileno())


def _create_root(path: Path, segmenter: dict[str, Any] | None) -> None:
    """Create an empty store atomically (temp dir + rename) so concurrent creators cannot collide."""
    from mllm3d.shared.version import creator

    blocker = next((a for a in path.parents if a.exists() and not a.is_dir()), None)
    if blocker is not None:
        raise StoreError(f"{path}: cannot create the store: {blocker} is a file, not a directory")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(f"{path}: cannot create the store's parent folder: {exc.strerror or exc}") from exc
    tmp = path.parent / f"{TMP_PREFIX}{path.name}.{uuid.uuid4().hex[:8]}"
    attrs: dict[str, Any] = {
        "format": STORE_FORMAT,
        "schema_version": SCHEMA_VERSION,
        "creator": creator(),
        "created_at": time.time(),
    }
    if segmenter is not None:
        attrs["segmenter"] = segmenter_attr(segmenter)
    # The two group documents are written by hand, one synchronous write each (the layout zarr itself writes):
    # zarr's own writes run concurrently on its I/O loop, so after one failed (disk full) another could still
    # land in the temporary after it was removed
    try:
        (tmp / "scenes").mkdir(parents=True)
        _write_group_json(tmp / "scenes" / "zarr.json", {})
        _write_group_json(tmp / "zarr.json", attrs)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise StoreError(f"{path}: cannot create the store in {path.parent}: {exc.strerror or exc}") from exc
    try:
        if path.exists():  # an empty directory made by the user
            path.rmdir()
        os.rename(tmp, path)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if not (path / "zarr.json").is_file():
            raise StoreError(f"{path}: cannot create the store: {exc.strerror or exc}") from exc
