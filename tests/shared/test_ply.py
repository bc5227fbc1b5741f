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


def _xyz_header(fmt: str, n: int, extra: str = "") -> bytes:
    return (f"ply\nformat {fmt} 1.0\nelement vertex {n}\nproperty float x\nproperty float y\nproperty float z\n"
            f"{extra}end_header\n").encode()


@pytest.mark.parametrize("fmt", ["binary_little_endian", "ascii"])
def test_absurd_vertex_count_fails_in_one_line_before_allocating(tmp_path, fmt):
    import tracemalloc

    from mllm3d.shared.mesh_ply import read_mesh_ply

    path = tmp_path / "absurd.ply"
    path.write_bytes(_xyz_header(fmt, 99_999_999_999, "element face 1\nproperty list uchar int vertex_indices\n")
                     + b"0 0 0\n" * 4)
    size = path.stat().st_size - len(_xyz_header(fmt, 99_999_999_999, "element face 1\nproperty list uchar int "
                                                                          "vertex_indices\n"))
    for read in (read_ply, read_mesh_ply):
        tracemalloc.start()
        try:
            with pytest.raises(BadInputError) as err:
                read(path)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        msg = str(err.value)
        assert msg.startswith(f"{path}: truncated or corrupt PLY: the header announces 99,999,999,999 vertex items")
        assert f"only {size:,} bytes follow the header" in msg and "\n" not in msg
        assert peak < 2**23, f"{peak} bytes allocated"  # the 1 MiB header read, nothing near the 1.2 TB asked


def test_negative_count_and_header_errors_name_the_file(tmp_path):
    cases = {
        "neg.ply": (_xyz_header("ascii", -3), "negative count for element 'vertex'"),
        "noend.ply": (b"ply\nformat ascii 1.0\nelement vertex 1\n", "no end_header"),
        "type.ply": (b"ply\nformat ascii 1.0\nelement vertex 1\nproperty floot x\nend_header\n1\n",
                     r"malformed PLY header: line 4: field type 'floot'"),
        "empty.ply": (b"", "not a PLY file"),
        "rows.ply": (_xyz_header("ascii", 2) + b"0 0 0\n1 a 2\n", "malformed PLY data: element 'vertex': row 1"),
    }
    for name, (data, message) in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(BadInputError, match=f"{name}: .*{message}"):
            read_ply(tmp_path / name)


def test_big_endian_and_faces_before_and_after_the_vertices(tmp_path):
    vert = np.array([(1.5, -2.0, 3.25), (0.0, 1.0, 2.0)], dtype=[("x", ">f4"), ("y", ">f4"), ("z", ">f4")])
    path = tmp_path / "be.ply"
    path.write_bytes(_xyz_header("binary_big_endian", 2) + vert.tobytes())
    data = read_ply(path)
    assert data["x"].tolist() == [1.5, 0.0] and data["z"].tolist() == [3.25, 2.0]
    assert data["x"].dtype == np.dtype("float32")  # native order
    # quads after the vertices: a point cloud reader skips them, the mesh reader refuses them
    from mllm3d.shared.mesh_ply import read_mesh_ply

    quad = np.array([4], "u1").tobytes() + np.array([0, 1, 1, 0], "<i4").tobytes()
    head = _xyz_header("binary_little_endian", 2, "element face 1\nproperty list uchar int vertex_indices\n")
    path.write_bytes(head + vert.astype([("x", "<f4"), ("y", "<f4"), ("z", "<f4")]).tobytes() + quad)
    assert read_ply(path)["y"].tolist() == [-2.0, 1.0]
    with pytest.raises(BadInputError, match="be.ply: only triangle faces"):
        read_mesh_ply(path)


def test_mesh_by_hand_triangles_face_scalars_and_index_range(tmp_path):
    from mllm3d.shared.mesh_ply import read_mesh_ply

    vert = np.zeros(3, dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4")])
    vert["x"] = [0, 1, 0]
    head = _xyz_header("binary_little_endian", 3, "element face 2\nproperty list uchar int vertex_indices\n"
                                                   "property int segment_id\n")
    faces = b"".join(np.array([3], "u1").tobytes() + np.array([*tri, seg], "<i4").tobytes()
                     for tri, seg in (((0, 1, 2), 7), ((2, 1, 0), -1)))
    path = tmp_path / "m.ply"
    path.write_bytes(head + vert.tobytes() + faces)
    mesh = read_mesh_ply(path)
    assert mesh.faces.tolist() == [[0, 1, 2], [2, 1, 0]] and mesh.faces.dtype == np.int64
    assert mesh.face_fields["segment_id"].tolist() == [7, -1] and mesh.vertices[:, 0].tolist() == [0, 1, 0]
    path.write_bytes(head + vert.tobytes() + faces.replace(np.array([2], "<i4").tobytes()
                                                           + np.array([1], "<i4").tobytes(),
                                                           np.array([5], "<i4").tobytes()
                                                           + np.array([1], "<i4").tobytes(), 1))
    with pytest.raises(BadInputError, match=r"m.ply: face vertex index out of range 0\.\.2"):
        read_mesh_ply(path)
    path.write_bytes(head + vert.tobytes() + faces[:-4])
    with pytest.raises(BadInputError, match="m.ply: truncated PLY: 2 face items announced"):
        read_mesh_ply(path)
