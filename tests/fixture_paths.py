"""Where the real-data fixtures live (never inside the repo: ScanNet forbids redistribution)."""

from __future__ import annotations

import os
from pathlib import Path

ENV_VAR = "MLLM3D_FIXTURES"
SCANNET_FIXTURE_SCENE = "scannet_scene0378_00"


def fixtures_dir() -> Path | None:
    """``$MLLM3D_FIXTURES`` or ``../shared/fixtures`` beside the repo, if it exists."""
    env = os.environ.get(ENV_VAR)
    candidates = [Path(env)] if env else []
    candidates.append(Path(__file__).resolve().parents[2] / "shared" / "fixtures")
    for c in candidates:
        if c.is_dir():
            return c
    return None
