"""Store overview, one-query inspection and the read-only integrity check."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from stage2_train3d.fusion import FusionConfig
from stage2_train3d.inspect_cli import inspect_cmd, query_sheet
from stage2_train3d.inspect_store import check_store, inspect_query, store_overview
from tests.toy_store import SCENE, THUMB_HW, build_toy_store


@pytest.fixture
def store(tmp_path: Path):
    return build_toy_store(tmp_path / "toy.zarr")


def tree_hash(root: Path) -> str:
    """Hash of every file's relative path, bytes and mtime under ``root``."""
    h = hashlib.sha256()
    for dirpath, dirs, files in sorted(os.walk(root)):
        dirs.sort()
        for name in sorted(files):
            p = Path(dirpath) / name
            h.update(str(p.relative_to(root)).encode())
            h.update(p.read_bytes())
            h.update(str(p.stat().st_mtime_ns).encode())
    return h.hexdigest()


def test_overview_numbers(store) -> None:
    ov = store_overview(store)
    assert ov.num_scenes == 1 and ov.num_queries == 4
    assert ov.views_per_query == (3, 3.0, 3)
    assert ov.has_seg_rate == pytest.approx(9 / 12)
    assert ov.mean_confidence == pytest.approx((0.9 * 7 + 0.8 + 0.1) / 9, abs=1e-6)
    # [SEG] views: chair 3 x 0.25, table 0.375, 0.375, 1.0, nothing 3 x 0
    assert ov.mask_area["mean"] == pytest.approx((0.75 + 1.75) / 9)
    assert ov.mask_area["empty"] == pytest.approx(3 / 9)
    assert ov.mask_raw_bytes == 4 * 3 * 24 * 32
    assert 0 < ov.mask_stored_bytes < ov.mask_raw_bytes and ov.compression_ratio > 1
    assert ov.kinds == {"explicit": 1, "implicit": 2, "spatial": 1}
    assert ov.temporary_groups == []


def test_inspect_query_rows_and_sheet(store) -> None:
    ins = inspect_query(store, SCENE, "table", FusionConfig())
    assert [r.kept for r in ins.rows] == [True, True, False]
    assert ins.rows[2].reason.startswith("confidence 0.10")
    assert [r.frame_id for r in ins.rows] == [0, 10, 20]
    assert ins.rows[0].area == pytest.approx(12 / 32)
    assert sum(r.weight for r in ins.rows) == pytest.approx(1.0)
    label = ins.fused.seen & (ins.fused.prob >= 0.5)
    assert label.sum() == 12 * 24  # columns 8..19 of the 24x32 plane
    sheet = query_sheet(ins)
    assert ins.thumbnails is not None and ins.thumbnails.shape == (3, *THUMB_HW, 3)
    assert sheet.ndim == 3 and sheet.shape[2] == 3
    off = inspect_query(store, SCENE, "table", FusionConfig(view_filter=False))
    assert all(r.kept for r in off.rows)


def test_check_passes_on_a_valid_store_and_cli_overview(store) -> None:
    assert check_store(store.path) == []
    res = CliRunner().invoke(inspect_cmd, ["--store", str(store.path)])
    assert res.exit_code == 0, res.output
    assert "queries" in res.output and "75.0%" in res.output


def test_check_detects_corrupt_chunk_without_modifying_anything(store, tmp_path: Path) -> None:
    chunk_dir = store.query_dir(SCENE, "chair") / "masks" / "c"
    chunks = sorted(p for p in chunk_dir.rglob("*") if p.is_file())
    assert chunks, "the mask array has chunk files"
    chunks[0].write_bytes(b"\x00garbage, not a blosc frame\xff" * 3)
    before = tree_hash(store.path)
    problems = check_store(store.path)
    assert tree_hash(store.path) == before
    errors = [p for p in problems if p.severity == "error"]
    assert len(errors) == 1
    assert "masks" in errors[0].where and "chair" in errors[0].where and "decode" in errors[0].message
    res = CliRunner().invoke(inspect_cmd, ["--store", str(store.path), "--check"])
    assert res.exit_code == 1
    assert tree_hash(store.path) == before


def test_check_reports_missing_arrays_bad_ranges_and_leftovers(store) -> None:
    import shutil

    shutil.rmtree(store.query_dir(SCENE, "table") / "confidence")
    (store.scenes_dir / ".tmp-toy0002_00.host-1-abcd").mkdir()
    problems = check_store(store.path)
    errors = [p for p in problems if p.severity == "error"]
    warnings = [p for p in problems if p.severity == "warning"]
    assert len(errors) == 1 and "confidence" in errors[0].where and "missing" in errors[0].message
    assert len(warnings) == 1 and ".tmp-toy0002_00" in warnings[0].where


def test_check_on_a_non_store(tmp_path: Path) -> None:
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "file.txt").write_text("x")
    problems = check_store(tmp_path / "junk")
    assert len(problems) == 1 and "not a pseudo-label store" in problems[0].message


def test_cli_query_writes_sheet(store, tmp_path: Path) -> None:
    out = tmp_path / "sheet.png"
    res = CliRunner(env={"COLUMNS": "200"}).invoke(
        inspect_cmd, ["--store", str(store.path), "--scene", SCENE, "--query", "table", "--sheet", str(out)]
    )
    assert res.exit_code == 0, res.output
    assert out.is_file() and "filtered: confidence 0.10 < 0.5" in res.output
    assert "288 of 768" in res.output
    res = CliRunner().invoke(inspect_cmd, ["--store", str(store.path), "--scene", SCENE, "--query", "nope"])
    assert res.exit_code != 0 and "nope" in res.output


def test_fused_ply_export_reads_back(store, tmp_path: Path) -> None:
    from shared.ply import read_ply
    from stage2_train3d.inspect_cli import export_fused_ply

    ins = inspect_query(store, SCENE, "table", FusionConfig())
    path = export_fused_ply(ins, tmp_path / "out" / "table.ply", vote_threshold=0.5)
    data = read_ply(path)
    assert data["x"].shape == (768,)
    label = data["label"].astype(bool)
    assert label.sum() == 12 * 24
    assert (data["red"][label] == 255).all() and (data["green"][label] == 0).all()
    assert (data["green"][~label] == round(200 * 0.35)).all()  # the scene's green, dimmed
    assert data["prob"].max() == 1.0 and data["gt"].sum() == 8 * 24
