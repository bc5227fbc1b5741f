"""Hostile catalogue, part 1: scene files and query files, read in-process.

Every case either loads correctly (checked against the values written) or raises one
``BadInputError`` whose single-line message names the offending file; the input folder is hashed
before and after, so no reader changes what it reads. The table in docs/reliability.md lists each case.
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mllm3d.shared.annotations import load_queries
from mllm3d.shared.errors import BadInputError
from mllm3d.shared.ply import ply_points_colors, read_ply, write_ply
from mllm3d.shared.scannet import load_scannet_scene
from tests.shared.test_scannet import fake_scene

SCENE = "scene0007_00"


def tree_digest(root: Path) -> dict[str, bytes | str]:
    """Every entry under ``root``: file bytes, symlink targets (not followed, so loops are fine)."""
    out: dict[str, bytes | str] = {}
    for dirpath, _, files in os.walk(root):
        for name in files:
            p = Path(dirpath) / name
            out[str(p.relative_to(root))] = os.readlink(p) if p.is_symlink() else p.read_bytes()
    return out


def one_line_error(exc: BaseException, names: str | Path) -> str:
    """The message of a refused input: one line that names ``names``."""
    msg = str(exc)
    assert "\n" not in msg and "Traceback" not in msg, msg
    assert str(names) in msg, msg
    return msg


# ---------------------------------------------------------------------------------------------- PLY files
def _ply_header(count: int, props: str = "property float x\nproperty float y\nproperty float z\n",
                fmt: str = "binary_little_endian", extra: str = "") -> bytes:
    return f"ply\nformat {fmt} 1.0\nelement vertex {count}\n{props}{extra}end_header\n".encode()


def _three_vertices() -> bytes:
    return struct.pack("<9f", *range(9))


PLY_CASES = [
    pytest.param(_ply_header(99_999_999_999) + _three_vertices(), r"announces 99,999,999,999 vertex items",
                 id="ply-99-billion-vertices"),
    pytest.param(_ply_header(3) + _three_vertices()[:20], r"truncated", id="ply-truncated-binary"),
    pytest.param(_ply_header(3), r"truncated", id="ply-header-only"),
    pytest.param(b"ply\nformat binary_little_endian 1.0\nelement vertex 3\n", r"no end_header", id="ply-no-end-header"),
    pytest.param(b"\x89PNG\r\n\x1a\n" + bytes(64), r"not a PLY file", id="ply-is-a-png"),
    pytest.param(b"", r"not a PLY file", id="ply-empty-file"),
    pytest.param(_ply_header(3, fmt="binary_middle_endian"), r"malformed PLY header", id="ply-unknown-format"),
    pytest.param(_ply_header(3, props="property quaternion x\n"), r"malformed PLY header", id="ply-unknown-type"),
    pytest.param(_ply_header(-4), r"malformed PLY header|negative count", id="ply-negative-count"),
    pytest.param(b"ply\nformat ascii 1.0\nelement face 1\nproperty list uchar int vertex_indices\nend_header\n3 0 1 2\n",
                 r"has no vertex element", id="ply-faces-only"),
    pytest.param(_ply_header(1, props="property float y\nproperty float z\n") + struct.pack("<2f", 1, 2),
                 r"lacks \['x'\]", id="ply-no-x-property"),
    pytest.param(_ply_header(1, props="property list uchar float x\nproperty float y\nproperty float z\n")
                 + b"\x01" + struct.pack("<3f", 1, 2, 3), r"list properties", id="ply-x-is-a-list"),
    pytest.param(b"ply\nformat ascii 1.0\nelement vertex 2\nproperty float x\nproperty float y\nproperty float z\n"
                 b"end_header\n1 2 3\n4 five 6\n", r"malformed PLY data|truncated", id="ply-ascii-word-in-data"),
]


@pytest.mark.parametrize(("content", "message"), PLY_CASES)
def test_a_broken_ply_is_one_line_naming_it(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "mesh.ply"
    path.write_bytes(content)
    with pytest.raises(BadInputError, match=message) as err:
        ply_points_colors(read_ply(path), path)
    one_line_error(err.value, path)
    assert path.read_bytes() == content


def test_a_ply_with_integer_and_double_coordinates_reads_the_values(tmp_path: Path) -> None:
    """Other vertex property types than float32 (int16 x, double y, uchar z) are converted, not refused."""
    path = tmp_path / "typed.ply"
    head = _ply_header(2, props="property short x\nproperty double y\nproperty uchar z\n")
    path.write_bytes(head + struct.pack("<hdB", -3, 0.25, 7) + struct.pack("<hdB", 5, -1.5, 255))
    pts, colors = ply_points_colors(read_ply(path), path)
    assert colors is None
    np.testing.assert_array_equal(pts, np.array([[-3, 0.25, 7], [5, -1.5, 255]], np.float32))


def test_a_ply_with_trailing_bytes_after_the_vertices_still_reads_them(tmp_path: Path) -> None:
    path = tmp_path / "trailing.ply"
    path.write_bytes(_ply_header(3) + _three_vertices() + b"garbage")
    pts, _ = ply_points_colors(read_ply(path), path)
    np.testing.assert_array_equal(pts, np.arange(9, dtype=np.float32).reshape(3, 3))


# ---------------------------------------------------------------------------------------------- scene folders
def _write(rel: str, data: bytes | str) -> Callable[[Path], None]:
    def go(d: Path) -> None:
        (d / rel).parent.mkdir(parents=True, exist_ok=True)
        (d / rel).write_bytes(data.encode() if isinstance(data, str) else data)
    return go


def _pose(matrix: np.ndarray) -> Callable[[Path], None]:
    return lambda d: np.savetxt(d / "pose" / "10.txt", matrix)


def _intrinsic(fx: float) -> Callable[[Path], None]:
    def go(d: Path) -> None:
        for name in ("intrinsic_depth.txt", "intrinsic_color.txt"):
            k = np.loadtxt(d / "intrinsic" / name)
            k[0, 0] = fx
            np.savetxt(d / "intrinsic" / name, k)
    return go


def _depth_8bit_gray(d: Path) -> None:
    Image.fromarray(np.full((48, 64), 200, np.uint8)).save(d / "depth" / "10.png")


def _symlink_loop(d: Path) -> None:
    (d / "color" / "10.png").unlink()
    os.symlink("10.png", d / "color" / "10.png")


def _empty_folder(d: Path) -> None:
    for sub in ("color", "depth", "pose", "intrinsic"):
        for f in (d / sub).iterdir():
            f.unlink()


def _mesh(d: Path) -> None:
    write_ply(d / f"{SCENE}_vh_clean_2.ply", np.random.default_rng(0).random((6, 3)).astype(np.float32),
              np.full((6, 3), 9, np.uint8))


def _instances(agg: object, segs: object, raw_agg: bytes | None = None) -> Callable[[Path], None]:
    def go(d: Path) -> None:
        _mesh(d)
        a = d / f"{SCENE}.aggregation.json"
        a.write_bytes(raw_agg if raw_agg is not None else json.dumps(agg).encode())
        (d / f"{SCENE}_vh_clean_2.0.010000.segs.json").write_text(json.dumps(segs))
    return go


SEGS6 = {"segIndices": [0, 0, 1, 1, 2, 2]}
AGG = {"segGroups": [{"objectId": 0, "label": "chair", "segments": [0]},
                     {"objectId": 1, "label": "table", "segments": [1, 2]}]}

SCENE_CASES = [
    pytest.param(_pose(np.zeros((4, 4))), r"pose/10\.txt", id="pose-all-zero-singular"),
    pytest.param(_pose(np.eye(3)), r"pose/10\.txt", id="pose-3x3"),
    pytest.param(_write("pose/10.txt", ""), r"pose/10\.txt", id="pose-empty-file"),
    pytest.param(_intrinsic(0.0), r"intrinsic_(depth|color)\.txt", id="intrinsics-zero-focal"),
    pytest.param(_intrinsic(float("nan")), r"intrinsic_(depth|color)\.txt", id="intrinsics-nan"),
    pytest.param(_intrinsic(-500.0), r"intrinsic_(depth|color)\.txt", id="intrinsics-negative-focal"),
    pytest.param(_write("intrinsic/intrinsic_depth.txt", "1 2\n3 4\n"), r"intrinsic_depth\.txt", id="intrinsics-2x2"),
    pytest.param(_depth_8bit_gray, r"depth/10\.png: depth must be a 16-bit PNG", id="depth-8bit-gray"),
    pytest.param(_write("depth/10.png", b"\x89PNG\r\n\x1a\n" + bytes(30)), r"depth/10\.png", id="depth-corrupt-png"),
    pytest.param(_write("color/10.jpg", b"\xff\xd8\xff\xe0" + bytes(40)), r"color/10\.(jpg|png)",
                 id="color-jpeg-corrupt"),
    pytest.param(_symlink_loop, r"color/10\.png", id="color-symlink-loop"),
    pytest.param(_empty_folder, SCENE, id="empty-scene-folder"),
    pytest.param(_write(f"{SCENE}_vh_clean_2.ply", _ply_header(12_000_000_000)), rf"{SCENE}_vh_clean_2\.ply",
                 id="scene-mesh-huge-count"),
    pytest.param(_instances({"segGroups": [{"objectId": 0, "label": "a", "segments": [0]},
                                           {"objectId": 0, "label": "b", "segments": [1]}]}, SEGS6),
                 r"aggregation\.json", id="aggregation-duplicate-object-id"),
    pytest.param(_instances(AGG, {"segIndices": [0, 0, 1]}), r"segs\.json|aggregation\.json",
                 id="segs-fewer-indices-than-vertices"),
    pytest.param(_instances(AGG, {"segIndices": "0 0 1 1 2 2"}), r"segs\.json", id="segs-indices-a-string"),
    pytest.param(_instances(AGG, {}), r"segs\.json", id="segs-without-segIndices"),
    pytest.param(_instances(None, SEGS6, raw_agg=b'{"segGroups": [{"objectId": 0, '), r"aggregation\.json",
                 id="aggregation-truncated-json"),
    pytest.param(_instances([1, 2], SEGS6), r"aggregation\.json", id="aggregation-is-a-list"),
    pytest.param(_instances({"segGroups": [{"objectId": -3, "label": "a", "segments": [0]}]}, SEGS6),
                 r"aggregation\.json", id="aggregation-negative-object-id"),
    pytest.param(_instances({"segGroups": [{"objectId": 0, "label": "a", "segments": "0"}]}, SEGS6),
                 r"aggregation\.json", id="aggregation-segments-a-string"),
]


def _touch_every_view(d: Path) -> None:
    scene = load_scannet_scene(d)
    for view in scene.views:
        assert view.depth.shape == (48, 64)


@pytest.mark.parametrize(("break_scene", "message"), SCENE_CASES)
def test_a_broken_scene_file_is_one_line_naming_it(tmp_path: Path, break_scene, message: str) -> None:
    d = fake_scene(tmp_path, SCENE)
    break_scene(d)
    before = tree_digest(tmp_path)
    with pytest.raises(BadInputError, match=message) as err:
        _touch_every_view(d)
    one_line_error(err.value, d)
    assert tree_digest(tmp_path) == before


def test_instances_with_a_utf8_bom_in_the_aggregation_are_read(tmp_path: Path) -> None:
    d = fake_scene(tmp_path, SCENE)
    _instances(None, SEGS6, raw_agg=b"\xef\xbb\xbf" + json.dumps(AGG).encode())(d)
    scene = load_scannet_scene(d)
    assert scene.instance_ids.tolist() == [0, 0, 1, 1, 1, 1]
    assert scene.instance_labels == {0: "chair", 1: "table"}


# ---------------------------------------------------------------------------------------------- query files
def _rec(**kw: object) -> dict:
    return {"scene_id": SCENE, "query_id": "q0", "text": "the chair", "target_ids": [1], **kw}


QUERY_CASES = [
    pytest.param("queries.json", b"", r"invalid JSON|empty|no quer", id="queries-empty-file"),
    pytest.param("queries.json", b"42", r"queries\.json", id="queries-json-a-number"),
    pytest.param("queries.json", b"null", r"queries\.json", id="queries-json-null"),
    pytest.param("queries.json", json.dumps([_rec(target_ids=["a"])]).encode(), r"record 0.*integer",
                 id="targets-not-ints"),
    pytest.param("queries.json", json.dumps([_rec(target_ids=[True])]).encode(), r"record 0.*integer",
                 id="target-a-boolean"),
    pytest.param("queries.json", json.dumps([_rec(target_ids=[-2])]).encode(), r"record 0.*outside",
                 id="target-negative"),
    pytest.param("queries.json", json.dumps([_rec(target_ids=[2**40])]).encode(), r"record 0.*outside",
                 id="target-beyond-int32"),
    pytest.param("queries.json", json.dumps([_rec(target_ids=[1.5])]).encode(), r"record 0.*integer",
                 id="target-a-fraction"),
    pytest.param("queries.json", json.dumps([_rec(text=None)]).encode(), r"record 0", id="text-null"),
    pytest.param("queries.json", json.dumps([_rec(text="   ")]).encode(), r"record 0.*empty", id="text-blank"),
    pytest.param("queries.json", json.dumps([_rec()]).encode("utf-16"), r"queries\.json", id="json-utf16"),
    pytest.param("queries.csv", "scene_id,query_id,text,target_ids\nscene0007_00,q0,la chaise près,1\n"
                 .encode("latin-1"), r"queries\.csv", id="csv-latin1"),
    pytest.param("queries.jsonl", (json.dumps(_rec()) + "\n{oops\n").encode(), r"queries\.jsonl.*line 2",
                 id="jsonl-broken-line"),
    pytest.param("queries.json", json.dumps([_rec(), "a string record"]).encode(), r"record 1",
                 id="record-not-an-object"),
]


@pytest.mark.parametrize(("name", "content", "message"), QUERY_CASES)
def test_a_bad_query_file_is_one_line_naming_it(tmp_path: Path, name: str, content: bytes, message: str) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(BadInputError, match=message) as err:
        load_queries(path)
    one_line_error(err.value, path)
    assert path.read_bytes() == content


def test_a_query_path_that_is_a_directory_or_missing_is_named(tmp_path: Path) -> None:
    for path in (tmp_path, tmp_path / "absent.json"):
        with pytest.raises(BadInputError) as err:
            load_queries(path)
        one_line_error(err.value, path)


def test_a_100k_character_text_is_kept_whole(tmp_path: Path) -> None:
    text = "the chair " * 10_000
    path = tmp_path / "queries.json"
    path.write_text(json.dumps([_rec(text=text)]))
    (q,) = load_queries(path)
    assert q.text == text.strip() and q.target_ids == [1]


@pytest.mark.parametrize("bom", [b"\xef\xbb\xbf"], ids=["utf8-bom"])
@pytest.mark.parametrize("name", ["queries.json", "queries.jsonl", "queries.csv"])
def test_a_utf8_bom_in_a_query_file_is_read(tmp_path: Path, name: str, bom: bytes) -> None:
    body = {"queries.json": json.dumps([_rec()]), "queries.jsonl": json.dumps(_rec()) + "\n",
            "queries.csv": "scan_id,target_id,utterance\nscene0007_00,1,the chair\n"}[name]
    path = tmp_path / name
    path.write_bytes(bom + body.encode())
    (q,) = load_queries(path)
    assert (q.scene_id, q.text, q.target_ids) == (SCENE, "the chair", [1])


def test_duplicate_query_ids_with_other_texts_are_kept_apart(tmp_path: Path) -> None:
    """Two records sharing a query id in one scene are not merged into one (the second would be lost)."""
    path = tmp_path / "queries.json"
    path.write_text(json.dumps([_rec(text="the chair"), _rec(text="the lamp", target_ids=[2])]))
    qs = load_queries(path)
    assert sorted(q.text for q in qs) == ["the chair", "the lamp"]
    assert len({q.query_id for q in qs}) == 2
