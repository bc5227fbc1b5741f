"""Same seeds -> byte-identical store (all chunk files; zarr.json up to the timestamp attributes)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mllm3d.shared.store import open_store
from mllm3d.stage1_pseudolabel.runner import run_pseudolabels
from tests.stage1_helpers import run_config, snapshot, tiny_source

BACKEND = {"image_features": True, "attention_maps": True}


def fill(path: Path, num_scenes: int = 3, **kw) -> dict:
    kw.setdefault("backend_config", BACKEND)
    assert run_pseudolabels(run_config(path, **kw), source=tiny_source(num_scenes)).ok
    return snapshot(path)


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("base") / "store.zarr"
    fill(path)
    return path


def test_same_seeds_give_byte_identical_stores(tmp_path: Path, base: Path) -> None:
    a = snapshot(base)
    b = fill(tmp_path / "b.zarr")
    assert a.keys() == b.keys()
    chunks = [k for k in a if not k.endswith("zarr.json")]
    assert len(chunks) > 100
    assert all(a[k] == b[k] for k in chunks)
    assert a == b


def test_sharding_does_not_change_outputs(tmp_path: Path, base: Path) -> None:
    for i in (1, 0):  # any order of shards, any split
        fill(tmp_path / "sharded.zarr", shard=f"{i}/2")
    assert snapshot(tmp_path / "sharded.zarr") == snapshot(base)


def test_other_seeds_change_views_and_masks(tmp_path: Path, base: Path) -> None:
    fill(tmp_path / "views.zarr", max_scenes=1, seed=1)
    fill(tmp_path / "backend.zarr", max_scenes=1, backend_config={**BACKEND, "seed": 1})
    a, views, backend = (open_store(p) for p in (base, tmp_path / "views.zarr", tmp_path / "backend.zarr"))
    pairs = views.complete_pairs()
    assert pairs == backend.complete_pairs() == [p for p in a.complete_pairs() if p[0] == "synth_0000"]
    ra, rv, rb = ([s.read_query(*p) for p in pairs] for s in (a, views, backend))
    assert (
        sum(not np.array_equal(x.view_index, y.view_index) for x, y in zip(ra, rv, strict=True))
        >= len(pairs) // 2
    )
    assert all(np.array_equal(x.view_index, y.view_index) for x, y in zip(ra, rb, strict=True))
    assert all(not np.array_equal(x.seg_embeddings, y.seg_embeddings) for x, y in zip(ra, rb, strict=True))
