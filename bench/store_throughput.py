"""Benchmark 3's speed part: one (scene, query) group written/read by the store vs the same arrays as .npy files.

The baseline writes each array with ``np.save`` (+ fsync, as the store fsyncs before publishing) and an
attributes JSON, and reads them with ``np.load``; both reads hit the page cache.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import measure, measure_interleaved
from mllm3d.shared.store import PseudoLabelStore, QueryRecord
from mllm3d.shared.store_query_layout import VIEWS

NPY_ARRAYS = ("view_index", "masks", "seg_embeddings", "confidence", "attention", "has_seg")


def _record_arrays(rec: QueryRecord) -> dict[str, np.ndarray]:
    return {
        "view_index": rec.view_index.astype(np.int32),
        "masks": rec.masks.astype(bool),
        "seg_embeddings": rec.seg_embeddings.astype(np.float16),
        "confidence": rec.confidence.astype(np.float32),
        "attention": rec.attention.astype(np.float32),
        "has_seg": rec.has_seg.astype(bool),
    }


def npy_write(rec: QueryRecord, d: Path, fsync: bool = True) -> None:
    """Baseline writer: one .npy per array + a JSON of the attributes, each fsynced (unless ``fsync`` is False)."""
    d.mkdir(parents=True, exist_ok=True)
    for name, arr in _record_arrays(rec).items():
        with open(d / f"{name}.npy", "wb") as f:
            np.save(f, arr)
            f.flush()
            if fsync:
                os.fsync(f.fileno())
    with open(d / "attrs.json", "w", encoding="utf-8") as f:
        json.dump({"scene_id": rec.query.scene_id, "query_id": rec.query.query_id, "text": rec.query.text}, f)
        f.flush()
        if fsync:
            os.fsync(f.fileno())


def npy_read(d: Path) -> dict[str, np.ndarray]:
    """Baseline reader: np.load of every array + the attributes JSON."""
    out = {name: np.load(d / f"{name}.npy") for name in NPY_ARRAYS}
    with open(d / "attrs.json", encoding="utf-8") as f:
        json.load(f)
    return out


def throughput(store: PseudoLabelStore, rec: QueryRecord, work: Path, repeat: int) -> dict[str, Any]:
    """Write/read timings of one query group in the store vs .npy files."""
    nbytes = sum(a.nbytes for a in _record_arrays(rec).values())
    qdir = store.query_dir(rec.query.scene_id, rec.query.query_id)
    npy_dir = work / "npy" / rec.query.query_id

    def clear_store() -> None:
        shutil.rmtree(qdir, ignore_errors=True)

    def clear_npy() -> None:
        shutil.rmtree(npy_dir, ignore_errors=True)

    t_zw = measure(lambda: store.write_query(rec), repeat=repeat, setup=clear_store)
    t_nw = measure(lambda: npy_write(rec, npy_dir), repeat=repeat, setup=clear_npy)
    if not qdir.exists():
        store.write_query(rec)
    if not npy_dir.exists():
        npy_write(rec, npy_dir)
    back = store.read_query(rec.query.scene_id, rec.query.query_id)
    assert np.array_equal(back.masks, rec.masks), "store round trip changed the masks"
    # alternated (store, npy, npy, store, ...) so that a drift of a shared machine's load hits both alike
    reads = measure_interleaved({"store": lambda: store.read_query(rec.query.scene_id, rec.query.query_id),
                                 "npy": lambda: npy_read(npy_dir)}, repeat=repeat)
    t_zr, t_nr = reads["store"], reads["npy"]
    return {
        "bytes": nbytes,
        "store_write": t_zw.as_dict(),
        "npy_write": t_nw.as_dict(),
        "store_read": t_zr.as_dict(),
        "npy_read": t_nr.as_dict(),
        "write_ratio": t_nw.median / t_zw.median,
        "read_ratio": t_nr.median / t_zr.median,
    }


def read_diagnostics(store: PseudoLabelStore, rec: QueryRecord, npy_dir: Path, repeat: int) -> dict[str, Any]:
    """Where read time goes: the masks array alone and the smallest array alone, through the store's read
    path (mllm3d.shared.zarr_direct), through zarr's API (the reference reader), and with np.load."""
    import zarr

    from mllm3d.shared.zarr_direct import read_array

    if not npy_dir.exists():
        npy_write(rec, npy_dir)
    qdir = store.query_dir(rec.query.scene_id, rec.query.query_id)
    if not qdir.exists():
        store.write_query(rec)
    out: dict[str, Any] = {"mask_bytes": int(rec.masks.nbytes)}
    # the smallest array: the store's (k, 4) views table against the .npy baseline's (k,) confidence
    for name, npy_name, key in (("masks", "masks", "masks"), (VIEWS, "confidence", "small")):
        out[f"direct_{key}_s"] = measure(lambda n=name: read_array(qdir / n), repeat=repeat).median
        out[f"zarr_{key}_s"] = measure(lambda n=name: zarr.open_array(str(qdir / n), mode="r")[...],
                                       repeat=repeat).median
        out[f"npy_{key}_s"] = measure(lambda n=npy_name: np.load(npy_dir / f"{n}.npy"), repeat=repeat).median
    return out
