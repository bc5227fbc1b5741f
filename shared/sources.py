"""Open a scene source from a short spec string (what ``--source`` on the command line takes).

ScanNet specs take reader options after a ``?``: ``scannet:data/scans?frame_stride=20&max_frames=200``
(keys :data:`SCANNET_OPTIONS`). The same options can come from the caller (``open_source(spec,
frame_stride=20)``, i.e. the run config / ``--frame-stride``); given both ways they must agree.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mllm3d.shared.errors import BadInputError
from mllm3d.shared.scene import SceneSource

DEFAULT_SYNTHETIC = (6, 0)  # "synthetic" = 6 scenes, seed 0

#: reader options of a ScanNet spec -> their type (mllm3d.shared.scannet.ScanNetSource keyword arguments)
SCANNET_OPTIONS: dict[str, type] = {"frame_stride": int, "max_frames": int, "point_stride": int, "voxel": float}

#: prefixes of sources whose views are ray-cast from meshes (extra 'mesh') -> their SceneSource class
MESH_SOURCES: dict[str, str] = {"mesh": "mllm3d.shared.mesh_source.MeshSource",
                                "scannetpp": "mllm3d.shared.scannetpp.ScanNetPPSource",
                                "matterport": "mllm3d.shared.matterport.MatterportSource"}

SPEC_HELP = (
    "'synthetic' (= synthetic:6:0), 'synthetic:N', 'synthetic:N:SEED', 'scannet:PATH' "
    "(optionally 'scannet:PATH?frame_stride=N&max_frames=M'), 'mesh:PATH', 'scannetpp:PATH', 'matterport:PATH' (same options), or a directory in the ScanNet export layout"
)


def _int(text: str, what: str, spec: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise BadInputError(f"source spec {spec!r}: {what} must be an integer, got {text!r}") from None


def _split_options(rest: str, spec: str) -> tuple[str, dict[str, Any]]:
    """``PATH?k=v&k=v`` -> (PATH, {k: v}); a path without ``?`` has no options."""
    path, sep, query = rest.rpartition("?")
    if not sep:
        return rest, {}
    out: dict[str, Any] = {}
    for item in filter(None, query.split("&")):
        key, eq, value = item.partition("=")
        key = key.strip()
        if not eq or key not in SCANNET_OPTIONS:
            raise BadInputError(
                f"source spec {spec!r}: unknown option {item!r}; expected KEY=VALUE with KEY in {sorted(SCANNET_OPTIONS)}"
            )
        if key in out:
            raise BadInputError(f"source spec {spec!r}: option {key!r} given twice")
        kind = SCANNET_OPTIONS[key]
        try:
            out[key] = kind(value.strip())
        except ValueError:
            raise BadInputError(
                f"source spec {spec!r}: {key} must be {'an integer' if kind is int else 'a number'}, got {value!r}"
            ) from None
    return path, out


def _merge_options(spec: str, from_spec: dict[str, Any], given: dict[str, Any]) -> dict[str, Any]:
    out = dict(from_spec)
    for key, value in given.items():
        if value is None:
            continue
        if key not in SCANNET_OPTIONS:
            raise BadInputError(f"source option {key!r} is not a ScanNet reader option {sorted(SCANNET_OPTIONS)}")
        if key in out and out[key] != value:
            raise BadInputError(
                f"source spec {spec!r} sets {key}={out[key]} but the run config / command line says {key}={value}; "
                "give it in one place"
            )
        out[key] = value
    return out


def open_source(spec: str, **options: Any) -> SceneSource:
    """A SceneSource for ``spec``: synthetic[:N[:SEED]], scannet:PATH[?opts], or an existing ScanNet directory.

    ``options`` (None values ignored) are ScanNet reader options (:data:`SCANNET_OPTIONS`); a synthetic
    source accepts none of them except the no-op ``frame_stride=1``.
    """
    spec = str(spec).strip()
    head, _, rest = spec.partition(":")
    if head == "synthetic":
        from mllm3d.shared.synthetic import SyntheticSource

        given = {k: v for k, v in options.items() if v is not None and not (k == "frame_stride" and v == 1)}
        if given:
            raise BadInputError(
                f"source {spec!r}: {sorted(given)} only apply to ScanNet sources (synthetic scenes have few "
                "views); leave them unset or use frame_stride 1"
            )
        parts = rest.split(":") if rest else []
        if len(parts) > 2:
            raise BadInputError(f"source spec {spec!r}: expected synthetic[:N[:SEED]]")
        n = _int(parts[0], "N (number of scenes)", spec) if parts else DEFAULT_SYNTHETIC[0]
        seed = _int(parts[1], "SEED", spec) if len(parts) > 1 else DEFAULT_SYNTHETIC[1]
        if n <= 0:
            raise BadInputError(f"source spec {spec!r}: the number of scenes must be positive, got {n}")
        return SyntheticSource(n, seed=seed)
    if head == "scannet":
        rest, from_spec = _split_options(rest, spec)
        path = Path(rest)
        if not rest or not path.is_dir():
            raise BadInputError(f"source spec {spec!r}: {path} is not a directory")
        from mllm3d.shared.scannet import ScanNetSource

        return ScanNetSource(path, **_merge_options(spec, from_spec, options))
    if head in MESH_SOURCES:
        rest, from_spec = _split_options(rest, spec)
        if not rest or not Path(rest).is_dir():
            raise BadInputError(f"source spec {spec!r}: {Path(rest)} is not a directory")
        module, cls = MESH_SOURCES[head].rsplit(".", 1)
        import importlib

        return getattr(importlib.import_module(module), cls)(Path(rest), **_merge_options(spec, from_spec, options))
    plain, from_spec = _split_options(spec, spec) if "?" in spec and not Path(spec).is_dir() else (spec, {})
    if plain and Path(plain).is_dir():
        from mllm3d.shared.scannet import ScanNetSource

        return ScanNetSource(Path(plain), **_merge_options(spec, from_spec, options))
    if plain and ("/" in plain or Path(plain).exists()):
        what = "is not a directory" if Path(plain).exists() else "does not exist"
        raise BadInputError(f"scene source {plain}: {what} (expected a folder of scenes, or {SPEC_HELP})")
    raise BadInputError(f"unknown scene source {spec!r}: expected {SPEC_HELP}")
