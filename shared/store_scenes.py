"""Scene groups of the store: write one atomically, read it back (geometry, correspondences, thumbnails)."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from mllm3d.shared.errors import StoreError, UnknownSceneError
from mllm3d.shared.geometry import Correspondences, DepthTest
from mllm3d.shared.store_base import StoreBase
from mllm3d.shared.store_io import _has_array, _load, _require_complete, _write_array, group_is_complete
from mllm3d.shared.store_keys import ALL_CHUNKS_ATTR, _fire
from mllm3d.shared.store_records import StoredScene


class SceneGroups(StoreBase):
    """Scene-group reads and writes of :class:`~mllm3d.shared.store.PseudoLabelStore`."""

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

