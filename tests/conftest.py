"""Shared pytest fixtures. Real ScanNet data is read from ../shared/fixtures or $MLLM3D_FIXTURES."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fixture_paths import ENV_VAR, SCANNET_FIXTURE_SCENE, fixtures_dir


@pytest.fixture(scope="session")
def fixtures_root() -> Path:
    root = fixtures_dir()
    if root is None:
        pytest.skip(f"real-data fixtures not found: set ${ENV_VAR} or place them at ../shared/fixtures")
    return root


@pytest.fixture(scope="session")
def scannet_scene_dir(fixtures_root: Path) -> Path:
    d = fixtures_root / SCANNET_FIXTURE_SCENE
    if not d.is_dir():
        pytest.skip(f"ScanNet fixture scene {SCANNET_FIXTURE_SCENE} not found under {fixtures_root}")
    return d


@pytest.fixture(scope="session")
def query_annotations_dir(fixtures_root: Path) -> Path:
    d = fixtures_root / "query_annotations"
    if not d.is_dir():
        pytest.skip(f"query annotation fixtures not found under {fixtures_root}")
    return d
