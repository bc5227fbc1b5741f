"""Scene folders shared by every folder source (ScanNet, mesh, ScanNet++, Matterport): ids, listing, options."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from mllm3d.shared.errors import BadInputError

SCENE_PREFIX = "scannet_"


def scene_id_from_dir(scene_dir: Path) -> str:
    """The scene id of a directory: its name without a leading ``scannet_`` prefix."""
    name = Path(scene_dir).name
    return name[len(SCENE_PREFIX) :] if name.startswith(SCENE_PREFIX) else name


def find_scene_dirs(root: Path, is_scene: Callable[[Path], bool], none_found: str) -> dict[str, Path]:
    """Scene id -> directory: ``root`` itself when it is a scene, else its scene subdirectories (sorted).

    Every source of scene folders (ScanNet, mesh, ScanNet++) lists them this way; ``none_found`` is the
    error when there are none, two folders with one scene id are an error naming both.
    """
    if not root.is_dir():
        raise BadInputError(f"{root}: not a directory")
    dirs = [root] if is_scene(root) else sorted(p for p in root.iterdir() if is_scene(p))
    if not dirs:
        raise BadInputError(f"{root}: {none_found}")
    found: dict[str, Path] = {}
    for p in dirs:
        sid = scene_id_from_dir(p)
        if sid in found:
            raise BadInputError(f"{p}: scene id {sid} also used by {found[sid]}")
        found[sid] = p
    return found


def refuse_options(source: str, root: object, unsupported: dict[str, object], supported: str) -> None:
    """One error naming the spec options (``?key=value``) a source was given but does not read."""
    given = sorted(k for k, v in unsupported.items() if v is not None)
    if given:
        raise BadInputError(f"{source} source {root}: options {given} do not apply (only {supported})")
