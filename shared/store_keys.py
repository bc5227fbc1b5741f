"""Names in a pseudo-label store: format constants, group keys of scene/query ids, write-stage audit events."""

from __future__ import annotations

import hashlib
import json
import re
import sys
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 3  # 3: views table + consolidated query metadata; 2: bit-packed masks; 1: bool masks (docs/store.md)
STORE_FORMAT = "mllm3d-pseudolabel-store"
TMP_PREFIX = ".tmp-"
TRASH_PREFIX = ".trash-"
# Group attribute (written with ``complete``): every chunk of the group's arrays exists on disk, so a
# missing chunk file is a lost one (not an all-fill-value chunk that zarr skipped). Groups written
# before this was done lack it; inspect --check then only warns about missing chunks.
ALL_CHUNKS_ATTR = "all_chunks_written"


# Group writes announce their stages as Python audit events (``sys.audit``; no cost without a hook):
# ``mllm3d.store.write`` with (stage, key), stage in "scene.before_publish", "query.mid_write",
# "query.before_publish". The crash/resume tests kill the process at these points from a hook they
# install (tests/fault_injection/); nothing in the package listens.
AUDIT_EVENT = "mllm3d.store.write"


def _fire(stage: str, key: str) -> None:
    sys.audit(AUDIT_EVENT, stage, key)


def config_hash(config: dict[str, Any]) -> str:
    """Stable short hash of a JSON-able config dict."""
    blob = json.dumps(config, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def segmenter_attr(identity: dict[str, Any]) -> dict[str, Any]:
    """The root's ``segmenter`` record of a segmenter identity ``{"name", "config"}``."""
    config = identity.get("config", {})
    return {"name": identity.get("name"), "config_hash": config_hash(config), "config": config}


_SAFE = re.compile(r"[^A-Za-z0-9_.\-]")


# Longest group key: room for the ``.tmp-<key>.<host>-<pid>-<uuid>`` / ``.lease-<key>`` names beside it
# within the 255-byte file name limit. Longer keys are cut and get a hash of the full id.
MAX_KEY_LEN = 100


def _unbounded_key(name: str) -> str:
    key = _SAFE.sub("_", str(name))
    if key != str(name) or key.startswith("."):
        key = f"{key.lstrip('.')}~{hashlib.sha1(str(name).encode()).hexdigest()[:8]}"
    return key


def safe_key(name: str) -> str:
    """A filesystem- and zarr-safe key for a scene or query id (reversible via the group's attrs).

    At most :data:`MAX_KEY_LEN` characters: a longer one is truncated and ends in ``~`` + 16 hex digits of
    a hash of the id; shorter keys are what they always were, so existing stores keep their names.
    """
    key = _unbounded_key(name)
    if len(key) > MAX_KEY_LEN:
        key = f"{key[:MAX_KEY_LEN - 17]}~{hashlib.sha1(str(name).encode()).hexdigest()[:16]}"
    return key


def key_matches(folder_name: str, name: str) -> bool:
    """True when ``folder_name`` is the group key of id ``name`` (also the pre-bound key of a long id)."""
    return folder_name in (safe_key(name), _unbounded_key(name))


def _group_dir(parent: Path, name: str) -> Path:
    """``parent/<safe_key(name)>``, or the unbounded key's folder of a long id written before keys were bounded."""
    key = safe_key(name)
    legacy = _unbounded_key(name)
    if legacy != key and len(legacy) < 256 and not (parent / key).exists() and (parent / legacy).is_dir():
        return parent / legacy
    return parent / key

