"""Query groups of the store: write one (scene, query) group atomically, read it back, list them."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from mllm3d.shared.annotations import query_to_dict
from mllm3d.shared.errors import StoreError, UnknownSceneError
from mllm3d.shared.scene import Query
from mllm3d.shared.store_base import StoreBase
from mllm3d.shared.store_io import (
    _has_array,
    _load,
    _load_masks,
    _read_json,
    _require_complete,
    _write_array,
    compact_metadata,
    group_is_complete,
    pack_masks,
)
from mllm3d.shared.store_keys import ALL_CHUNKS_ATTR, _fire
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
                _fill_query_group(tmp, record, image_size)
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
        d = self.query_dir(scene_id, query_id)
        if not (d / "zarr.json").is_file():
            raise StoreError(f"{self.path}: no complete query {query_id!r} in scene {scene_id!r}")
        a = _require_complete(d, "query")
        full = a.get(ALL_CHUNKS_ATTR) is True
        try:
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
                view_index=_load(d, "view_index", full),
                masks=_load_masks(d, full),
                seg_embeddings=_load(d, "seg_embeddings", full).astype(np.float32),
                confidence=_load(d, "confidence", full),
                attention=_load(d, "attention", full),
                has_seg=_load(d, "has_seg", full),
                view_seed=int(a.get("view_seed", 0)),
                view_sampling=dict(a.get("view_sampling") or {}),
                segmenter=str(a.get("segmenter", "")),
                generated_text=list(a.get("generated_text", [])),
                attention_maps=_load(d, "attention_maps", full) if _has_array(d, "attention_maps") else None,
                image_features=(
                    _load(d, "image_features", full) if with_features and _has_array(d, "image_features") else None
                ),
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


def _fill_query_group(tmp: Path, record: QueryRecord, image_size: tuple[int, ...]) -> None:
    """Write the arrays and attributes of one query group into ``tmp``; ``complete`` last."""
    q = record.query
    g = zarr.open_group(str(tmp), mode="w")
    k = record.num_views
    h, w = image_size
    _write_array(g, "view_index", record.view_index.astype(np.int32), chunks=(max(k, 1),))
    packed, packing = pack_masks(record.masks)
    _write_array(g, "masks", packed, chunks=(1, h, packed.shape[2]), shuffle="noshuffle", attributes=packing)
    _fire("query.mid_write", f"{q.scene_id}/{q.query_id}")
    _write_array(g, "seg_embeddings", record.seg_embeddings.astype(np.float16))
    _write_array(g, "confidence", record.confidence.astype(np.float32), chunks=(max(k, 1),))
    _write_array(g, "attention", record.attention.astype(np.float32), chunks=(max(k, 1),))
    _write_array(g, "has_seg", record.has_seg.astype(bool), chunks=(max(k, 1),))
    if record.attention_maps is not None:
        am = record.attention_maps.astype(np.float16)
        _write_array(g, "attention_maps", am, chunks=(1, *am.shape[1:]))
    if record.image_features is not None:
        f = record.image_features.astype(np.float16)
        _write_array(g, "image_features", f, chunks=(1, *f.shape[1:]))
    g.attrs.update(
        {
            **query_to_dict(q),
            "view_seed": int(record.view_seed),
            **({"view_sampling": dict(record.view_sampling)} if record.view_sampling else {}),
            "segmenter": record.segmenter,
            "generated_text": list(record.generated_text),
            "written_at": time.time(),
            ALL_CHUNKS_ATTR: True,
        }
    )
    g.attrs["complete"] = True  # last
