"""What may sit in a pseudo-label store's folders (``mllm3d inspect --check``): anything else is reported.

The writer (``mllm3d.shared.store``) only ever creates: the root ``zarr.json`` and ``scenes/``; in
``scenes/`` its ``zarr.json``, scene groups, ``.lease-*`` files of running workers and ``.tmp-*`` /
``.trash-*`` groups (reported separately as leftovers); in a scene group its ``zarr.json``, the known
arrays, ``correspondences/`` and ``queries/``; in ``queries/`` its ``zarr.json``, query groups and
temporaries; in a query group its ``zarr.json`` and the known arrays; in an array its ``zarr.json`` and
the chunk files of its chunk grid under ``c/``. A stray file or folder (a hand copy, an editor's backup,
a chunk outside the grid) is an error naming it: the store is not what Stage 1 wrote.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Iterable
from pathlib import Path

from mllm3d.shared.store import TMP_PREFIX, TRASH_PREFIX

LEASE_PREFIX = ".lease-"  # mllm3d.stage1_pseudolabel.leases.LEASE_PREFIX (pipeline may not import it here)


def _chunk_keys(array_dir: Path) -> set[str] | None:
    """The chunk files (relative paths) of the array's regular grid, or None if its metadata is unusable."""
    try:
        meta = json.loads((array_dir / "zarr.json").read_text(encoding="utf-8"))
        shape = [int(s) for s in meta["shape"]]
        chunks = [int(c) for c in meta["chunk_grid"]["configuration"]["chunk_shape"]]
        if meta["chunk_key_encoding"].get("name") != "default" or any(c <= 0 for c in chunks):
            return None
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    grid = [range(max(1, -(-s // c))) if s else range(0) for s, c in zip(shape, chunks, strict=False)]
    return {"/".join(("c", *map(str, idx))) for idx in itertools.product(*grid)}


def _array_extras(array_dir: Path) -> Iterable[Path]:
    for p in array_dir.iterdir():
        if p.name not in ("zarr.json", "c"):
            yield p
    keys = _chunk_keys(array_dir)
    c_dir = array_dir / "c"
    if keys is None or not c_dir.is_dir():
        return
    for p in c_dir.rglob("*"):
        rel = p.relative_to(array_dir).as_posix()
        if p.is_file() and rel not in keys:
            yield p
        elif p.is_dir() and not any(k.startswith(rel + "/") for k in keys):
            yield p


def _group_extras(group_dir: Path, arrays: set[str], subgroups: set[str]) -> Iterable[Path]:
    for p in group_dir.iterdir():
        if p.name == "zarr.json" or p.name in subgroups:
            continue
        if p.name in arrays and p.is_dir():
            yield from _array_extras(p)
        else:
            yield p


def unexpected_entries(
    root: Path, scene_arrays: Iterable[str], query_arrays: Callable[[Path], Iterable[str]]
) -> list[Path]:
    """Every file or folder under the store ``root`` that Stage 1 does not write (see the module docstring);
    ``query_arrays`` gives the arrays a query group may hold (they depend on the schema it was written with)."""
    scene_top = {n for n in scene_arrays if "/" not in n}
    corr = {n.split("/", 1)[1] for n in scene_arrays if n.startswith("correspondences/")}
    found: list[Path] = [p for p in root.iterdir() if p.name not in ("zarr.json", "scenes")]
    scenes = root / "scenes"
    if not scenes.is_dir():
        return found
    hidden = (TMP_PREFIX, TRASH_PREFIX)
    for sdir in scenes.iterdir():
        if sdir.name == "zarr.json" or sdir.name.startswith(hidden) or (
            sdir.name.startswith(LEASE_PREFIX) and sdir.is_file()
        ):
            continue
        if not sdir.is_dir():
            found.append(sdir)
            continue
        found.extend(_group_extras(sdir, scene_top, {"correspondences", "queries"}))
        if (sdir / "correspondences").is_dir():
            found.extend(_group_extras(sdir / "correspondences", corr, set()))
        qroot = sdir / "queries"
        if not qroot.is_dir():
            continue
        for qdir in qroot.iterdir():
            if qdir.name == "zarr.json" or qdir.name.startswith(hidden):
                continue
            if not qdir.is_dir():
                found.append(qdir)
                continue
            found.extend(_group_extras(qdir, set(query_arrays(qdir)), set()))
    return sorted(found)
