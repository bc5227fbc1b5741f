"""Open a scene source from a short spec string (what ``--source`` on the command line takes)."""

from __future__ import annotations

from pathlib import Path

from shared.errors import BadInputError
from shared.scene import SceneSource

DEFAULT_SYNTHETIC = (6, 0)  # "synthetic" = 6 scenes, seed 0

SPEC_HELP = (
    "'synthetic' (= synthetic:6:0), 'synthetic:N', 'synthetic:N:SEED', 'scannet:PATH', "
    "or a directory in the ScanNet export layout"
)


def _int(text: str, what: str, spec: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise BadInputError(f"source spec {spec!r}: {what} must be an integer, got {text!r}") from None


def open_source(spec: str) -> SceneSource:
    """A SceneSource for ``spec``: synthetic[:N[:SEED]], scannet:PATH, or an existing ScanNet directory."""
    spec = str(spec).strip()
    head, _, rest = spec.partition(":")
    if head == "synthetic":
        from shared.synthetic import SyntheticSource

        parts = rest.split(":") if rest else []
        if len(parts) > 2:
            raise BadInputError(f"source spec {spec!r}: expected synthetic[:N[:SEED]]")
        n = _int(parts[0], "N (number of scenes)", spec) if parts else DEFAULT_SYNTHETIC[0]
        seed = _int(parts[1], "SEED", spec) if len(parts) > 1 else DEFAULT_SYNTHETIC[1]
        if n <= 0:
            raise BadInputError(f"source spec {spec!r}: the number of scenes must be positive, got {n}")
        return SyntheticSource(n, seed=seed)
    if head == "scannet":
        path = Path(rest)
        if not rest or not path.is_dir():
            raise BadInputError(f"source spec {spec!r}: {path} is not a directory")
        from shared.scannet import ScanNetSource

        return ScanNetSource(path)
    if spec and Path(spec).is_dir():
        from shared.scannet import ScanNetSource

        return ScanNetSource(Path(spec))
    raise BadInputError(f"unknown scene source {spec!r}: expected {SPEC_HELP}")
