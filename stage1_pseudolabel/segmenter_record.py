"""Which segmenter a store's pseudo-labels come from: checked when a run opens the store, recorded just
before the run writes its first query group.

The store's root attributes name one segmenter (name, config hash, config), and a run with another one
is refused unless ``allow_mixed_segmenters``. The record binds the store only once it labels something:
a run that wrote scene groups and then failed before any query group (e.g. the synthetic backend on a
real scene) leaves no record, and a record without any query group in the store (left by an earlier
version) is replaced by the next run's segmenter before that run writes its first query group. (Recording before
the write is safe: a crash in between leaves a record without query groups, which binds nothing.)
"""

from __future__ import annotations

from typing import Any

from mllm3d.shared.errors import StoreError
from mllm3d.shared.store import PseudoLabelStore, _read_json, config_hash, open_store
from mllm3d.shared.store_io import replace_json
from mllm3d.shared.store_keys import segmenter_attr
from mllm3d.stage1_pseudolabel.segmenter import Segmenter


def segmenter_identity(seg: Segmenter) -> dict[str, Any]:
    """What the store records about a segmenter: its name and config."""
    return {"name": seg.name, "config": seg.config_dict()}


def _same(stored: dict[str, Any], identity: dict[str, Any]) -> bool:
    return (stored.get("name"), stored.get("config_hash")) == (identity.get("name"),
                                                               config_hash(identity.get("config", {})))


class SegmenterRecord:
    """Records the run's segmenter in the store once, before the first query group is written."""

    def __init__(self, store: PseudoLabelStore, identity: dict[str, Any], pending: bool) -> None:
        self.store = store
        self.identity = identity
        self.pending = pending

    def before_query_write(self) -> None:
        if self.pending:
            record_segmenter(self.store, self.identity)
            self.pending = False


def open_for_run(path: str, identity: dict[str, Any], allow_mixed: bool) -> tuple[PseudoLabelStore, bool]:
    """Open or create the store for writing: (store, whether the segmenter still has to be recorded).

    A recorded segmenter other than ``identity`` refuses the run (unless ``allow_mixed``) only when the
    store holds a query group; a new store is created without a record.
    """
    store = open_store(path, "a")
    stored = store.attrs.get("segmenter") or {}
    if not stored:
        return store, True
    if _same(stored, identity):
        return store, False
    if store.complete_pairs():
        # the record labels query groups: the store's own check and message
        return open_store(path, "a", segmenter=identity, allow_mixed_segmenters=allow_mixed), False
    return store, True  # a record that labels nothing (a run that failed before its first query group)


def record_segmenter(store: PseudoLabelStore, identity: dict[str, Any]) -> None:
    """Write ``identity`` as the store's segmenter (atomic replace of the root zarr.json)."""
    meta = store.path / "zarr.json"
    try:
        doc = _read_json(meta)
        doc.setdefault("attributes", {})["segmenter"] = segmenter_attr(identity)
        replace_json(meta, doc)
    except (OSError, ValueError, TypeError) as exc:
        raise StoreError(f"{meta}: could not record the store's segmenter: {exc}") from exc
    store.attrs["segmenter"] = doc["attributes"]["segmenter"]
