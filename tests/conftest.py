"""Shared pytest fixtures. Real ScanNet data is read from ../shared/fixtures or $MLLM3D_FIXTURES."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.fixture_paths import ENV_VAR, SCANNET_FIXTURE_SCENE, fixtures_dir

# Every subprocess a test starts loads tests/fault_injection/sitecustomize.py (idle unless a test sets
# one of its MLLM3D_TEST_* variables): the crash/resume tests' kill points live there, not in the package.
FAULT_INJECTION_DIR = Path(__file__).parent / "fault_injection"
os.environ["PYTHONPATH"] = os.pathsep.join(
    [str(FAULT_INJECTION_DIR), *[p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]]
)


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
