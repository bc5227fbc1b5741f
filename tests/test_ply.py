"""PLY writer/reader round trips and ScanNet-style files (ascii, binary with a face element)."""

from __future__ import annotations

import numpy as np
import pytest
from mllm3d.shared.errors import BadInputError
from mllm3d.shared.ply import ply_points_colors, read_ply, write_ply


def test_binary_round_trip_with_scalars(tmp_path):
    rng = np.random.default_rng(0)
    pts = rng.normal(size=(50, 3))
    col = rng.integers(0, 256, (50, 3)).astype(np.uint8)
    score = rng.random(50).astype(np.float32)
    label = np.arange(50, dtype=np.int64) * 1000  # beyond int8/int16 on purpose
    path = write_ply(tmp_path / "sub" / "a.ply", pts, col, score=score, label=label, mask=np.arange(50) % 2 == 0)
    head = path.read_bytes()[:400]
    assert b"format binary_little_endian 1.0" in head and b"property int label" in head
    assert b"property float score" in head and b"property uchar mask" in head
    data = read_ply(path)
    assert list(data) == ["x", "y", "z", "red", "green", "blue", "score", "label", "mask"]
    got_pts, got_col = ply_points_colors(data)
    np.testing.assert_allclose(got_pts, pts.astype(np.float32))
    np.testing.assert_array_equal(got_col, col)
    np.testing.assert_array_equal(data["score"], score)
    assert data["label"].dtype == np.int32 and data["label"][-1] == 49_000
    assert data["mask"].tolist() == [1, 0] * 25


def test_float_colors_and_no_colors(tmp_path):
    write_ply(tmp_path / "f.ply", np.zeros((2, 3)), np.array([[1.0, 0.5, 0.0], [0.0, 0.0, 1.0]]))
    assert ply_points_colors(read_ply(tmp_path / "f.ply"))[1].tolist() == [[255, 128, 0], [0, 0, 255]]
    write_ply(tmp_path / "n.ply", np.ones((3, 3)))
    pts, col = ply_points_colors(read_ply(tmp_path / "n.ply"))
    assert col is None and pts.shape == (3, 3)


def _scannet_like_header(fmt: str, n: int, faces: int) -> bytes:
    return (
        f"ply\nformat {fmt} 1.0\ncomment VCGLIB generated\nelement vertex {n}\nproperty float x\n"
        "property float y\nproperty float z\nproperty uchar red\nproperty uchar green\nproperty uchar blue\n"
        f"property uchar alpha\nelement face {faces}\nproperty list uchar int vertex_indices\nend_header\n"
    ).encode()


def test_scannet_binary_with_faces(tmp_path):
    vert = np.zeros(3, dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("r", "u1"), ("g", "u1"), ("b", "u1"), ("a", "u1")])
    vert["x"] = [0.5, 1.5, 2.5]
    vert["g"] = [10, 20, 30]
    vert["a"] = 255
    face = np.array([3], dtype="u1").tobytes() + np.array([0, 1, 2], dtype="<i4").tobytes()
    path = tmp_path / "scene_vh_clean_2.ply"
    path.write_bytes(_scannet_like_header("binary_little_endian", 3, 1) + vert.tobytes() + face)
    data = read_ply(path)
    assert data["x"].tolist() == [0.5, 1.5, 2.5] and data["green"].tolist() == [10, 20, 30]
    assert data["alpha"].tolist() == [255] * 3 and data["red"].dtype == np.uint8


def test_ascii(tmp_path):
    path = tmp_path / "a.ply"
    body = "0 0 0 255 0 0 255\n1 2 3 0 255 0 255\n3 0 1 2\n"
    path.write_bytes(_scannet_like_header("ascii", 2, 1) + body.encode())
    data = read_ply(path)
    assert data["z"].tolist() == [0.0, 3.0] and data["red"].tolist() == [255, 0]
    assert data["x"].dtype == np.float32


def test_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.ply"
    bad.write_bytes(b"hello\n")
    with pytest.raises(BadInputError, match="bad.ply: not a PLY"):
        read_ply(bad)
    trunc = tmp_path / "trunc.ply"
    trunc.write_bytes(_scannet_like_header("binary_little_endian", 10, 0) + b"\0" * 20)
    with pytest.raises(BadInputError, match="trunc.ply: truncated"):
        read_ply(trunc)
    with pytest.raises(BadInputError, match="missing.ply: PLY file not found"):
        read_ply(tmp_path / "missing.ply")
    with pytest.raises(BadInputError, match="score"):
        write_ply(tmp_path / "w.ply", np.zeros((4, 3)), score=np.zeros(3))


def test_integer_colours_outside_uchar_raise_naming_the_column(tmp_path):
    col = np.array([[10, 20, 30], [40, 300, 60]], dtype=np.int64)  # 300 would wrap to 44
    with pytest.raises(ValueError, match=r"'green'.*20\.\.300"):
        write_ply(tmp_path / "c.ply", np.zeros((2, 3)), col)
    with pytest.raises(ValueError, match="'blue'"):
        write_ply(tmp_path / "c.ply", np.zeros((1, 3)), np.array([[0, 0, -1]]))
    assert not (tmp_path / "c.ply").exists() and list(tmp_path.iterdir()) == []
    write_ply(tmp_path / "ok.ply", np.zeros((2, 3)), np.array([[0, 255, 7], [1, 2, 3]], dtype=np.int32))
    assert ply_points_colors(read_ply(tmp_path / "ok.ply"))[1].tolist() == [[0, 255, 7], [1, 2, 3]]
    with pytest.raises(ValueError, match="'label'.*int32"):
        write_ply(tmp_path / "l.ply", np.zeros((1, 3)), label=np.array([2**40]))


def test_write_is_atomic(tmp_path, monkeypatch):
    import os

    path = write_ply(tmp_path / "a.ply", np.zeros((3, 3)))
    before = path.read_bytes()
    replaced = []
    real_replace = os.replace

    def spy(src, dst):
        src, dst = str(src), str(dst)
        assert os.path.dirname(src) == os.path.dirname(dst) and src != dst  # temp file in the same directory
        assert dst == str(path) and path.read_bytes() == before  # the old file is intact until the rename
        replaced.append(src)
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", spy)
    write_ply(path, np.ones((5, 3)))
    assert len(replaced) == 1 and read_ply(path)["x"].tolist() == [1.0] * 5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.ply"]

    def boom(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        write_ply(path, np.full((7, 3), 2.0))
    assert read_ply(path)["x"].tolist() == [1.0] * 5  # unchanged, and no temp file left behind
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.ply"]
