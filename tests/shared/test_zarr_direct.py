"""The direct decoder of the store's arrays agrees with zarr, and hands anything else back to zarr."""

from __future__ import annotations

import numpy as np
import pytest
import zarr
from zarr.codecs import ZstdCodec

from mllm3d.shared.errors import StoreError
from mllm3d.shared.store import _load, _write_array
from mllm3d.shared.zarr_direct import read_array


@pytest.mark.parametrize(
    "data, chunks",
    [
        (np.random.default_rng(0).random((5, 7, 9)) > 0.6, (1, 7, 9)),
        (np.random.default_rng(1).normal(size=(1000, 3)).astype(np.float32), (300, 3)),  # partial last chunk
        (np.random.default_rng(2).normal(size=(4, 16)).astype(np.float16), None),
        (np.arange(-50, 50, dtype=np.int32), (33,)),
        (np.arange(12, dtype=np.int16).reshape(3, 4), None),
        (np.random.default_rng(3).normal(size=(2, 4, 4)), None),
        (np.random.default_rng(4).integers(0, 255, size=(3, 5, 8, 3)).astype(np.uint8), (1, 5, 8, 3)),
        (np.arange(5, dtype=np.int64), None),
    ],
    ids=["bool", "float32-partial", "float16", "int32", "int16", "float64", "uint8", "int64"],
)
def test_direct_read_equals_zarr(tmp_path, data, chunks):
    g = zarr.open_group(str(tmp_path / "g"), mode="w")
    _write_array(g, "a", data, chunks=chunks)
    direct = read_array(tmp_path / "g" / "a")
    ref = np.asarray(zarr.open_array(str(tmp_path / "g" / "a"), mode="r")[...])
    assert direct is not None and direct.dtype == ref.dtype and np.array_equal(direct, ref)


def test_missing_chunk_is_the_fill_value_and_corrupt_chunk_names_the_file(tmp_path):
    g = zarr.open_group(str(tmp_path / "g"), mode="w")
    _write_array(g, "m", np.ones((3, 4, 4), bool), chunks=(1, 4, 4))
    (tmp_path / "g" / "m" / "c" / "1" / "0" / "0").unlink()
    out = read_array(tmp_path / "g" / "m")
    assert out[0].all() and not out[1].any() and out[2].all()
    bad = tmp_path / "g" / "m" / "c" / "2" / "0" / "0"
    bad.write_bytes(b"not blosc")
    with pytest.raises(StoreError, match=f"{bad}: corrupt chunk"):
        read_array(tmp_path / "g" / "m")


def test_other_layouts_are_left_to_zarr(tmp_path):
    g = zarr.open_group(str(tmp_path / "g"), mode="w")
    data = np.arange(20, dtype=np.float32).reshape(4, 5)
    arr = g.create_array("z", shape=data.shape, dtype=data.dtype, chunks=(2, 5), compressors=[ZstdCodec()])
    arr[...] = data
    assert read_array(tmp_path / "g" / "z") is None  # not the store's bytes + blosc layout
    assert np.array_equal(_load(tmp_path / "g", "z"), data)  # the store still reads it, through zarr
    with pytest.raises(KeyError):
        _load(tmp_path / "g", "absent")
