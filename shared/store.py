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
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import socket
import sys
import time
import uuid
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from zarr.codecs import BloscCodec, Crc32cCodec

from mllm3d.shared.errors import StoreError, UnknownSceneError
from mllm3d.shared.geometry import Correspondences, DepthTest
from mllm3d.shared.scene import Query
from mllm3d.shared.zarr_direct import read_array

SCHEMA_VERSION = 1
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


def compressor() -> BloscCodec:
    """blosc-zstd with bit shuffling: ~370x on smooth SAM-like masks (docs/store.md, "Size estimate")."""
    return BloscCodec(cname="zstd", clevel=5, shuffle="bitshuffle")


def config_hash(config: dict[str, Any]) -> str:
    """Stable short hash of a JSON-able config dict."""
    blob = json.dumps(config, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


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


@dataclass
class StoredScene:
    """Query-independent data of one scene, as read back from the store."""

    scene_id: str
    points: np.ndarray  # (N,3) float32
    colors: np.ndarray  # (N,3) uint8
    frame_ids: np.ndarray  # (V,) int32
    intrinsics: np.ndarray  # (V,3,3) float32, for the mask/depth resolution
    poses: np.ndarray  # (V,4,4) float64 camera-to-world
    image_size: tuple[int, int]  # (H, W) of masks and correspondences
    correspondences: Correspondences
    instance_ids: np.ndarray | None = None  # (N,) int32
    instance_labels: dict[int, str] = field(default_factory=dict)
    source: str = ""
    depth_test: dict[str, float] = field(default_factory=dict)

    @property
    def num_points(self) -> int:
        return int(self.points.shape[0])

    @property
    def num_views(self) -> int:
        return int(self.frame_ids.shape[0])


@dataclass
class QueryRecord:
    """Stage 1's output for one query on one scene (k views), as written to / read from the store."""

    query: Query
    view_index: np.ndarray  # (k,) int32: indices into the scene's frames
    masks: np.ndarray  # (k,H,W) bool at the scene's image_size
    seg_embeddings: np.ndarray  # (k,D) float (stored float16)
    confidence: np.ndarray  # (k,) float32, SAM predicted IoU
    attention: np.ndarray  # (k,) float32, view attention score
    has_seg: np.ndarray  # (k,) bool: False = the MLLM produced no [SEG] (mask meaningless)
    view_seed: int = 0
    segmenter: str = ""
    generated_text: list[str] = field(default_factory=list)
    attention_maps: np.ndarray | None = None  # (k,h,w) float16, optional
    image_features: np.ndarray | None = None  # (k,C,h,w) float16, optional (for L_spatial)
    view_sampling: dict[str, Any] = field(default_factory=dict)  # settings that drew the views (resume check)

    @property
    def num_views(self) -> int:
        return int(self.view_index.shape[0])

    def validate(self, image_size: tuple[int, int] | None = None) -> None:
        """Raise StoreError if shapes, dtypes or values are inconsistent."""
        k = self.num_views
        where = f"query {self.query.scene_id}/{self.query.query_id}"
        if self.masks.ndim != 3 or self.masks.shape[0] != k:
            raise StoreError(f"{where}: masks must be (k,H,W) with k={k}, got {self.masks.shape}")
        if image_size is not None and tuple(self.masks.shape[1:]) != tuple(image_size):
            raise StoreError(f"{where}: masks are {self.masks.shape[1:]}, the scene's image size is {image_size}")
        for name in ("confidence", "attention", "has_seg"):
            arr = getattr(self, name)
            if arr.shape != (k,):
                raise StoreError(f"{where}: {name} must have shape ({k},), got {arr.shape}")
        if self.seg_embeddings.ndim != 2 or self.seg_embeddings.shape[0] != k:
            raise StoreError(f"{where}: seg_embeddings must be (k,D), got {self.seg_embeddings.shape}")
        for name in ("seg_embeddings", "confidence", "attention"):
            if not np.all(np.isfinite(getattr(self, name))):
                raise StoreError(f"{where}: {name} has non-finite values")


def _write_array(group: zarr.Group, name: str, data: np.ndarray, chunks: tuple[int, ...] | None = None) -> None:
    data = np.ascontiguousarray(data)
    arr = group.create_array(
        name,
        shape=data.shape,
        dtype=data.dtype,
        chunks=chunks if chunks is not None else tuple(max(1, s) for s in data.shape),
        # crc32c of the compressed chunk, checked on every read (zarr and mllm3d.shared.zarr_direct): a flipped
        # byte anywhere in a chunk file is an error naming the chunk, not silently different data
        compressors=[compressor(), Crc32cCodec()],
        # store all-fill-value chunks too (an all-False mask chunk is ~40 bytes), so that a chunk file that is
        # missing is known to be lost: zarr would otherwise read it back silently as the fill value
        config={"write_empty_chunks": True},
    )
    if data.size:
        arr[...] = data


def _read_json(path: Path) -> dict[str, Any]:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def group_attrs(group_dir: Path) -> dict[str, Any] | None:
    """The attributes of the group at ``group_dir``, or None if its zarr.json is missing or unparseable."""
    try:
        meta = _read_json(group_dir / "zarr.json")
    except (OSError, ValueError):
        return None
    attrs = meta.get("attributes") if isinstance(meta, dict) else None
    return attrs if isinstance(attrs, dict) else None


def group_is_complete(group_dir: Path) -> bool:
    """True when the group's zarr.json parses and has ``complete: true`` (set last by the writer)."""
    attrs = group_attrs(group_dir)
    return attrs is not None and attrs.get("complete") is True


def _fsync_tree(path: Path) -> None:
    """Flush every file under ``path`` to disk so a rename never publishes unwritten data."""
    for dirpath, _, files in os.walk(path):
        for name in files:
            fd = os.open(os.path.join(dirpath, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)


class PseudoLabelStore:
    """Read/write access to a pseudo-label store on local disk. Use :func:`open_store`."""

    def __init__(self, path: Path, root_attrs: dict[str, Any], writable: bool) -> None:
        self.path = path
        self.attrs = root_attrs
        self.writable = writable

    # ------------------------------------------------------------------ layout helpers
    @property
    def scenes_dir(self) -> Path:
        return self.path / "scenes"

    def scene_dir(self, scene_id: str) -> Path:
        return _group_dir(self.scenes_dir, scene_id)

    def query_dir(self, scene_id: str, query_id: str) -> Path:
        return _group_dir(self.scene_dir(scene_id) / "queries", query_id)

    def _tmp_dir(self, final: Path) -> Path:
        tag = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        return final.parent / f"{TMP_PREFIX}{final.name}.{tag}"

    def _require_writable(self) -> None:
        if not self.writable:
            raise StoreError(f"{self.path}: store opened read-only")

    def _trash_dir(self, final: Path) -> Path:
        return final.parent / f"{TRASH_PREFIX}{final.name}.{uuid.uuid4().hex[:8]}"

    def _set_aside_incomplete(self, final: Path) -> Path | None:
        """Move an incomplete group at ``final`` to a ``.trash-*`` name; returns where it went.

        Returns None when nothing incomplete was moved: the folder vanished, or a concurrent writer
        published a complete group between our look and the rename (it is then put back untouched;
        if yet another writer published meanwhile, that copy is kept and the moved one dropped).
        """
        trash = self._trash_dir(final)
        try:
            os.rename(final, trash)
        except FileNotFoundError:
            return None
        if group_is_complete(trash):
            try:
                os.rename(trash, final)
            except OSError:
                shutil.rmtree(trash, ignore_errors=True)
            return None
        return trash

    def _publish(self, tmp: Path, final: Path, overwrite: bool) -> bool:
        """Rename a finished temporary group into place. Returns False if another writer won.

        Without ``overwrite`` an existing complete group is never touched (our copy is discarded); an
        existing incomplete one is moved aside and replaced. With ``overwrite`` any group is replaced.
        """
        _fsync_tree(tmp)
        trash: Path | None = None
        if final.exists():
            if overwrite:
                trash = self._trash_dir(final)
                os.rename(final, trash)
            elif group_is_complete(final):
                shutil.rmtree(tmp, ignore_errors=True)
                return False
            else:
                trash = self._set_aside_incomplete(final)
        try:
            os.rename(tmp, final)
        except OSError:  # a concurrent writer published first (ENOTEMPTY/EEXIST)
            shutil.rmtree(tmp, ignore_errors=True)
            if trash is not None:
                # the group we moved aside goes back unless the other writer's copy now stands there
                try:
                    os.rename(trash, final)
                except OSError:
                    shutil.rmtree(trash, ignore_errors=True)
            return False
        if trash is not None:
            shutil.rmtree(trash, ignore_errors=True)
        return True

    # ------------------------------------------------------------------ scenes
    def has_scene(self, scene_id: str) -> bool:
        """True when the scene group is complete (a folder without ``complete: true`` does not count)."""
        return group_is_complete(self.scene_dir(scene_id))

    def scene_ids(self) -> list[str]:
        """Ids of all complete scenes, sorted."""
        out = []
        for key, attrs in self._complete_children(self.scenes_dir, "scene_id"):
            out.append(str(attrs.get("scene_id", key)))
        return sorted(out)

    def write_scene(
        self,
        scene_id: str,
        points: np.ndarray,
        colors: np.ndarray,
        frame_ids: np.ndarray,
        intrinsics: np.ndarray,
        poses: np.ndarray,
        image_size: tuple[int, int],
        correspondences: Correspondences,
        instance_ids: np.ndarray | None = None,
        instance_labels: dict[int, str] | None = None,
        thumbnails: np.ndarray | None = None,
        source: str = "",
        depth_test: DepthTest | None = None,
        overwrite: bool = False,
    ) -> bool:
        """Write a scene group atomically. Returns False if it already existed (and overwrite is False).

        An incomplete folder under the scene's name (with whatever query groups it holds, which no
        reader can use without their scene) is moved aside and replaced.
        """
        self._require_writable()
        final = self.scene_dir(scene_id)
        if not overwrite and group_is_complete(final):
            return False
        v = int(len(frame_ids))
        n = int(points.shape[0])
        if points.shape != (n, 3) or colors.shape != (n, 3):
            raise StoreError(f"scene {scene_id}: points {points.shape} and colors {colors.shape} must both be (N,3)")
        if not np.all(np.isfinite(points)):
            raise StoreError(f"scene {scene_id}: points hold NaN or infinite coordinates; nothing was written")
        if intrinsics.shape != (v, 3, 3) or poses.shape != (v, 4, 4):
            raise StoreError(
                f"scene {scene_id}: {v} frames but intrinsics {intrinsics.shape} and poses {poses.shape}"
            )
        if correspondences.num_views != v:
            raise StoreError(f"scene {scene_id}: correspondences cover {correspondences.num_views} views, not {v}")
        self.scenes_dir.mkdir(parents=True, exist_ok=True)
        tmp = self._tmp_dir(final)
        try:
            g = zarr.open_group(str(tmp), mode="w")
            _write_array(g, "points", points.astype(np.float32), chunks=(min(max(n, 1), 262144), 3))
            _write_array(g, "colors", colors.astype(np.uint8), chunks=(min(max(n, 1), 262144), 3))
            if instance_ids is not None:
                _write_array(g, "instance_ids", instance_ids.astype(np.int32), chunks=(min(max(n, 1), 262144),))
            _write_array(g, "frame_ids", np.asarray(frame_ids, dtype=np.int32))
            _write_array(g, "intrinsics", intrinsics.astype(np.float32))
            _write_array(g, "poses", poses.astype(np.float64))
            corr = g.create_group("correspondences")
            m = max(1, int(correspondences.point_idx.shape[0]))
            chunk = (min(m, 1 << 20),)
            _write_array(corr, "point_idx", correspondences.point_idx.astype(np.int32), chunks=chunk)
            _write_array(corr, "rows", correspondences.rows.astype(np.int16), chunks=chunk)
            _write_array(corr, "cols", correspondences.cols.astype(np.int16), chunks=chunk)
            _write_array(corr, "offsets", correspondences.offsets.astype(np.int64))
            if thumbnails is not None:
                _write_array(g, "thumbnails", thumbnails.astype(np.uint8), chunks=(1, *thumbnails.shape[1:]))
            g.create_group("queries")
            dt = depth_test or DepthTest()
            g.attrs.update(
                {
                    "scene_id": str(scene_id),
                    "source": source,
                    "num_points": n,
                    "num_views": v,
                    "image_size": [int(image_size[0]), int(image_size[1])],
                    "instance_labels": {str(k): str(val) for k, val in (instance_labels or {}).items()},
                    "depth_test": {"abs_tol": dt.abs_tol, "rel_tol": dt.rel_tol, "border": dt.border},
                    "written_at": time.time(),
                    ALL_CHUNKS_ATTR: True,
                }
            )
            g.attrs["complete"] = True  # last: marks the group finished
            _fire("scene.before_publish", str(scene_id))
            return self._publish(tmp, final, overwrite)
        except OSError as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            raise StoreError(f"{final}: writing scene group {scene_id!r} failed, nothing was published: {exc}") from exc
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    def _complete_scene(self, scene_id: str) -> tuple[Path, dict[str, Any]]:
        """(folder, attributes) of a complete scene group; UnknownSceneError / StoreError otherwise."""
        d = self.scene_dir(scene_id)
        if not (d / "zarr.json").is_file():
            known = self.scene_ids()
            hint = f" (store has {len(known)} scenes, e.g. {known[:5]})" if known else " (store has no scenes)"
            raise UnknownSceneError(f"{self.path}: unknown scene {scene_id!r}{hint}")
        return d, _require_complete(d, "scene")

    def scene_attrs(self, scene_id: str) -> dict[str, Any]:
        """The attributes of a complete scene group (image_size, num_views, ...), without reading arrays."""
        return self._complete_scene(scene_id)[1]

    def scene_frame_ids(self, scene_id: str) -> np.ndarray:
        """(V,) int32 frame ids of a complete scene group (one small array; the rest is not read)."""
        d, _ = self._complete_scene(scene_id)
        try:
            return _load(d, "frame_ids")
        except (KeyError, ValueError, RuntimeError, OSError, StoreError) as exc:
            raise StoreError(f"{d}: scene group is corrupt: {exc}") from exc

    def _open_scene_group(self, scene_id: str) -> zarr.Group:
        d, _ = self._complete_scene(scene_id)
        try:
            return zarr.open_group(str(d), mode="r")
        except (KeyError, ValueError, RuntimeError, OSError) as exc:
            raise StoreError(f"{d}: scene group is corrupt: unreadable group metadata: {exc}") from exc

    def read_scene(self, scene_id: str) -> StoredScene:
        d, a = self._complete_scene(scene_id)
        full = a.get(ALL_CHUNKS_ATTR) is True
        try:
            stored = StoredScene(
                scene_id=str(a.get("scene_id", scene_id)),
                points=_load(d, "points", full),
                colors=_load(d, "colors", full),
                frame_ids=_load(d, "frame_ids", full),
                intrinsics=_load(d, "intrinsics", full),
                poses=_load(d, "poses", full),
                image_size=(int(a["image_size"][0]), int(a["image_size"][1])),
                correspondences=Correspondences(
                    _load(d, "correspondences/point_idx", full),
                    _load(d, "correspondences/rows", full).astype(np.int32),
                    _load(d, "correspondences/cols", full).astype(np.int32),
                    _load(d, "correspondences/offsets", full),
                ),
                instance_ids=_load(d, "instance_ids", full) if _has_array(d, "instance_ids") else None,
                instance_labels={int(k): v for k, v in a.get("instance_labels", {}).items()},
                source=str(a.get("source", "")),
                depth_test=dict(a.get("depth_test", {})),
            )
        except (KeyError, ValueError, RuntimeError, OSError, StoreError) as exc:
            raise StoreError(f"{d}: scene group is corrupt: {exc}") from exc
        return stored

    def read_thumbnails(self, scene_id: str, view_index: np.ndarray | None = None) -> np.ndarray | None:
        """RGB thumbnails (k,h,w,3) of the scene's frames, or None if Stage 1 stored none."""
        g = self._open_scene_group(scene_id)
        if "thumbnails" not in g:
            return None
        arr, where = g["thumbnails"], self.scene_dir(scene_id) / "thumbnails"
        if view_index is None:
            return _load(where.parent, "thumbnails")
        views = []
        for i in view_index:
            try:
                views.append(np.asarray(arr[int(i)]))
            except (ValueError, RuntimeError, OSError) as exc:  # zarr: a bad crc32c is a ValueError
                what = "crc32c checksum mismatch" if "checksum" in str(exc) else str(exc)
                raise StoreError(f"{where}/c/{int(i)}/0/0/0: corrupt chunk (thumbnail of view {int(i)}): {what}") from exc
        return np.stack(views) if views else None

    # ------------------------------------------------------------------ queries
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
            g = zarr.open_group(str(tmp), mode="w")
            k = record.num_views
            h, w = image_size
            _write_array(g, "view_index", record.view_index.astype(np.int32), chunks=(max(k, 1),))
            _write_array(g, "masks", record.masks.astype(bool), chunks=(1, h, w))
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
                    "scene_id": q.scene_id,
                    "query_id": q.query_id,
                    "text": q.text,
                    "target_ids": None if q.target_ids is None else [int(t) for t in q.target_ids],
                    "source": q.source,
                    "kind": q.kind,
                    "extra": q.extra,
                    "view_seed": int(record.view_seed),
                    **({"view_sampling": dict(record.view_sampling)} if record.view_sampling else {}),
                    "segmenter": record.segmenter,
                    "generated_text": list(record.generated_text),
                    "written_at": time.time(),
                    ALL_CHUNKS_ATTR: True,
                }
            )
            g.attrs["complete"] = True  # last
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
                masks=_load(d, "masks", full),
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

    def _complete_children(self, parent: Path, id_attr: str) -> Iterator[tuple[str, dict[str, Any]]]:
        """(folder name, attrs) of the complete groups under ``parent``. A group whose stored id
        (``id_attr``) does not belong to its folder name (a hand copy such as ``X.bak``) is skipped with a
        warning: it would list the id twice, and reading that id opens the other folder."""
        if not parent.is_dir():
            return
        for entry in sorted(os.scandir(parent), key=lambda e: e.name):
            if entry.name.startswith(".") or not entry.is_dir():
                continue
            meta = Path(entry.path) / "zarr.json"
            try:
                attrs = _read_json(meta).get("attributes", {})
            except (OSError, ValueError):
                continue
            if attrs.get("complete") is True:
                stored = attrs.get(id_attr)
                if stored is not None and not key_matches(entry.name, str(stored)):
                    warnings.warn(
                        f"{entry.path}: skipped, its {id_attr} {str(stored)[:80]!r} does not match the folder name "
                        f"(a copied or renamed group; expected folder {safe_key(str(stored))!r}); move it out of the store",
                        stacklevel=3,
                    )
                    continue
                yield entry.name, attrs

    # ------------------------------------------------------------------ maintenance
    def temporary_groups(self) -> list[Path]:
        """Leftover temporary groups of interrupted writes (never visible as complete)."""
        found: list[Path] = []
        if not self.scenes_dir.is_dir():
            return found
        for entry in os.scandir(self.scenes_dir):
            if entry.name.startswith((TMP_PREFIX, TRASH_PREFIX)):
                found.append(Path(entry.path))
            elif entry.is_dir():
                qdir = Path(entry.path) / "queries"
                if qdir.is_dir():
                    found.extend(
                        Path(e.path) for e in os.scandir(qdir) if e.name.startswith((TMP_PREFIX, TRASH_PREFIX))
                    )
        return sorted(found)

    def remove_temporary_groups(self, older_than_s: float = 0.0) -> list[Path]:
        """Delete leftover temporary groups older than ``older_than_s`` seconds; returns what was removed."""
        self._require_writable()
        now = time.time()
        removed = []
        for p in self.temporary_groups():
            try:
                if now - p.stat().st_mtime >= older_than_s:
                    shutil.rmtree(p, ignore_errors=True)
                    removed.append(p)
            except FileNotFoundError:
                continue
        return removed


def _has_array(group_dir: Path, name: str) -> bool:
    return (group_dir / name / "zarr.json").is_file()


def _load(group_dir: Path, name: str, all_chunks: bool = False) -> np.ndarray:
    """One whole array of a group: decoded directly when it has the store's own layout (mllm3d.shared.zarr_direct,
    ~10x less overhead than zarr for small arrays), else through zarr. A missing array is a KeyError; with
    ``all_chunks`` (the group's ALL_CHUNKS_ATTR) a missing chunk file is a StoreError naming it."""
    path = group_dir / name
    if path.parent != group_dir:  # a sub-group's array (correspondences/...): its group metadata must parse
        try:
            if _read_json(path.parent / "zarr.json").get("node_type") != "group":
                raise ValueError("not a group")
        except (OSError, ValueError) as exc:
            raise StoreError(f"{path.parent}: unreadable group metadata: {exc}") from exc
    if not _has_array(group_dir, name):
        raise KeyError(f"array {name!r} missing")
    data = read_array(path, all_chunks)
    if data is None:
        try:
            data = np.asarray(zarr.open_array(str(path), mode="r")[...])
        except Exception as exc:  # noqa: BLE001 - zarr reports a bad checksum/codec as ValueError/RuntimeError
            raise StoreError(f"{path}: corrupt array (zarr could not decode it): {type(exc).__name__}: {exc}") from exc
    return data


def _require_complete(group_dir: Path, kind: str) -> dict[str, Any]:
    """The attributes of a complete group; StoreError naming the folder if it is unreadable or incomplete."""
    try:
        meta = _read_json(group_dir / "zarr.json")
        attrs = meta["attributes"]
        if not isinstance(attrs, dict):
            raise ValueError("attributes is not a JSON object")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise StoreError(f"{group_dir}: {kind} group is corrupt: unreadable group metadata: {exc}") from exc
    if attrs.get("complete") is not True:
        raise StoreError(
            f"{group_dir}: incomplete group ({kind} group without complete=true: written by an older version, "
            "copied by hand or interrupted on a filesystem without atomic rename); rerun Stage 1 to rewrite it"
        )
    return attrs


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
    try:
        attrs = _read_json(meta).get("attributes", {})
    except (OSError, ValueError) as exc:
        raise StoreError(f"{meta}: unreadable store metadata: {exc}") from exc
    _check_root(p, attrs)
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
    return PseudoLabelStore(p, attrs, writable=(mode == "a"))


def _create_root(path: Path, segmenter: dict[str, Any] | None) -> None:
    """Create an empty store atomically (temp dir + rename) so concurrent creators cannot collide."""
    from mllm3d.shared.version import creator

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f"{TMP_PREFIX}{path.name}.{uuid.uuid4().hex[:8]}"
    g = zarr.open_group(str(tmp), mode="w")
    g.create_group("scenes")
    attrs: dict[str, Any] = {
        "format": STORE_FORMAT,
        "schema_version": SCHEMA_VERSION,
        "creator": creator(),
        "created_at": time.time(),
    }
    if segmenter is not None:
        attrs["segmenter"] = {
            "name": segmenter.get("name"),
            "config_hash": config_hash(segmenter.get("config", {})),
            "config": segmenter.get("config", {}),
        }
    g.attrs.update(attrs)
    try:
        if path.exists():  # an empty directory made by the user
            path.rmdir()
        os.rename(tmp, path)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if not (path / "zarr.json").is_file():
            raise
