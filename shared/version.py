"""Package version and the creator string recorded in stores and checkpoints."""

from __future__ import annotations

import platform

__version__ = "0.1.0"


def creator() -> str:
    return f"mllm-for3d {__version__} (python {platform.python_version()})"
