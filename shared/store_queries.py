"""Query groups of the store: write one (scene, query) group atomically, read it back, list them."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

from mllm3d.shared.annotations import query_to_dict
from mllm3d.shared.errors import StoreError, UnknownSceneError
from mllm3d.shared.scene import Query
from mllm3d.shared.store_base import StoreBase
from mllm3d.shared.store_io import (
    _read_json,
    _require_complete,
    compact_metadata,
    complete_group_doc,
    group_is_complete,
)
from mllm3d.shared.store_keys import ALL_CHUNKS_ATTR, _fire
from mllm3d.shared.store_query_layout import read_query_arrays, write_group_json, write_query_arrays
from mllm3d.shared.store_records import QueryRecord


class QueryGroups(StoreBase):
    """Query-group reads and writes of :class:`~mllm3d.shared.store.PseudoLabelStore`."""

    def has_query(self, scene_id: str, query_id: str) -> bool:
        """True when the query group and its scene group are both complete (what Stage 2 can read)."""
        return group_is_complete(self.query_dir(scene_id, query_id)) and self.has_scene(scene_id)

    def write_query(self, record: QueryRecord, overwrite: bool = False) -> bool:
        """Write one query group atomically. Returns False if it already existed (and overwrite is False)."""
        self._require_writable()
        q = record.query
        scene_dir = self.scene_dir(q.scene_id)
        if not (scene_dir / "zarr.json").is_file():
            raise UnknownSceneError(f"{self.path}: write the scene group {q.scene_id!r} before its queries")
        scene_attrs = _require_complete(scene_dir, "scene")
        image_size = tuple(scene_attrs["image_size"])
        record.validate(image_size)
        num_views = int(scene_attrs["num_views"])
        if record.num_views and (record.view_index.min() < 0 or record.view_index.max() >= num_views):
            raise StoreError(f"query {q.scene_id}/{q.query_id}: view_index out of range 0..{num_views - 1}")
        final = self.query_dir(q.scene_id, q.query_id)
        if not overwrite and group_is_complete(final):
            return False
        tmp = self._tmp_dir(final)
        try:
            with compact_metadata():
                _fill_query_group(tmp, record)
            _fire("query.before_publish", f"{q.scene_id}/{q.query_id}")
            return self._publish(tmp, final, overwrite)
        except OSError as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            raise StoreError(
                f"{final}: writing query group {q.scene_id}/{q.query_id} failed, nothing was published: {exc}"
            ) from exc
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    def read_query(self, scene_id: str, query_id: str, with_features: bool = True) -> QueryRecord:
        """One query group (any schema): its group zarr.json, then one chunk file per array (schema 3)."""
        d = self.query_dir(scene_id, query_id)
        doc = complete_group_doc(d, "query", f"{self.path}: no complete query {query_id!r} in scene {scene_id!r}")
        a = doc["attributes"]
        try:
            arrays = read_query_arrays(d, doc, a.get(ALL_CHUNKS_ATTR) is True, with_features)
            rec = QueryRecord(
                query=Query(
                    scene_id=str(a["scene_id"]),
                    query_id=str(a["query_id"]),
                    text=str(a["text"]),
                    target_ids=a.get("target_ids"),
                    source=str(a.get("source", "")),
                    kind=a.get("kind"),
                    extra=dict(a.get("extra") or {}),
                ),
                view_seed=int(a.get("view_seed", 0)),
                view_sampling=dict(a.get("view_sampling") or {}),
                segmenter=str(a.get("segmenter", "")),
                generated_text=list(a.get("generated_text", [])),
                **arrays,
            )
        except (KeyError, ValueError, RuntimeError, OSError, StoreError) as exc:
            raise StoreError(f"{d}: query group is corrupt: {exc}") from exc
        return rec

    def query_ids(self, scene_id: str) -> list[str]:
        """Ids of the complete queries of one scene, sorted."""
        return sorted(
            str(a.get("query_id", k)) for k, a in self._complete_children(self.scene_dir(scene_id) / "queries", "query_id")
        )

    def complete_pairs(self) -> list[tuple[str, str]]:
        """All complete (scene_id, query_id) pairs, read from the groups' small zarr.json files only."""
        pairs = []
        for skey, sattrs in self._complete_children(self.scenes_dir, "scene_id"):
            sid = str(sattrs.get("scene_id", skey))
            for qkey, qattrs in self._complete_children(self.scenes_dir / skey / "queries", "query_id"):
                pairs.append((sid, str(qattrs.get("query_id", qkey))))
        return sorted(pairs)

    def query_attrs(self, scene_id: str, query_id: str) -> dict[str, Any]:
        return _read_json(self.query_dir(scene_id, query_id) / "zarr.json")["attributes"]


def _fill_query_group(tmp: Path, record: QueryRecord) -> None:
    """Write the arrays and attributes of one query group into ``tmp`` (schema 3); ``complete`` last."""
    q = record.query
    write_query_arrays(tmp, record, lambda: _fire("query.mid_write", f"{q.scene_id}/{q.query_id}"))
    write_group_json(
        tmp,
        {
            **query_to_dict(record.query),
            "view_seed": int(record.view_seed),
            **({"view_sampling": dict(record.view_sampling)} if record.view_sampling else {}),
            "segmenter": record.segmenter,
            "generated_text": list(record.generated_text),
            "written_at": time.time(),
            ALL_CHUNKS_ATTR: True,
            "complete": True,  # in the group's last file, written after every array
        },
    )
