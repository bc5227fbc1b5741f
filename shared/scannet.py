"""Reader for ScanNet exports: ``color/N.jpg|png``, ``depth/N.png`` (uint16 mm), ``pose/N.txt``, ``intrinsic/``.

The point cloud comes from ``<scene>_vh_clean_2.ply`` (instances from ``<scene>.aggregation.json``
and ``<scene>_vh_clean_2.0.010000.segs.json`` when present), otherwise from back-projecting every
view's depth, merged and voxel-downsampled. Views are lazy: ``Scene.views`` loads one frame per
``__getitem__``; what can be checked cheaply (files present, poses, image sizes, empty depth) is
checked when the scene is loaded.

Frames are subsampled at discovery: ``frame_stride`` keeps every N-th frame *file* of the export
(sorted numerically; an export already written every 20th frame has ids 0, 20, 40, ... and stride 1
keeps them all) and ``max_frames`` caps the count. Discovery decodes each kept depth map once (empty
check) and remembers its share of valid pixels, so view sampling needs no further decode
(:meth:`LazyViews.valid_depth_fraction`, :meth:`LazyViews.pose_at`, :meth:`LazyViews.depth_at`).
"""

from __future__ import annotations

import json
import os
import re
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from mllm3d.shared.errors import BadInputError, UnknownSceneError
from mllm3d.shared.geometry import backproject_depth, check_intrinsic, pose_problem, voxel_downsample
from mllm3d.shared.ply import ply_points_colors, read_ply
from mllm3d.shared.scene import Query, Scene, View

DEPTH_SHIFT = 1000.0  # ScanNet depth PNGs are millimetres
# Depth beyond this (metres) is invalid, read as 0: Kinect / 7-Scenes exports mark invalid pixels 65535 mm
DEFAULT_MAX_DEPTH = 10.0
COLOR_EXTS = (".jpg", ".jpeg", ".png")
SCENE_PREFIX = "scannet_"
_MERGE_EVERY = 2_000_000  # voxel-downsample the back-projected cloud whenever it grows past this


@dataclass(frozen=True)
class Frame:
    """Paths and pose of one validated frame."""

    frame_id: int
    color_path: Path
    depth_path: Path
    pose: np.ndarray  # (4,4) camera-to-world
    valid_depth: float | None = None  # share of valid (> 0) depth pixels, when measured at discovery


def scene_id_from_dir(scene_dir: Path) -> str:
    """The scene id of a directory: its name without a leading ``scannet_`` prefix."""
    name = Path(scene_dir).name
    return name[len(SCENE_PREFIX) :] if name.startswith(SCENE_PREFIX) else name


def _numbered(folder: Path, exts: tuple[str, ...]) -> dict[int, Path]:
    """Files ``<int><ext>`` of a folder by frame number; other names raise."""
    out: dict[int, Path] = {}
    if not folder.is_dir():
        return out
    for p in folder.iterdir():
        if p.name.startswith(".") or p.suffix.lower() not in exts:
            continue
        if not re.fullmatch(r"\d+", p.stem):
            raise BadInputError(f"{p}: frame file name is not a frame number")
        fid = int(p.stem)
        if fid in out:
            raise BadInputError(f"{p}: frame {fid} appears twice (also {out[fid].name})")
        out[fid] = p
    return out


def read_matrix(path: Path, what: str) -> np.ndarray:
    """A whitespace-separated text matrix (ScanNet pose/intrinsic files)."""
    try:
        return np.loadtxt(path, dtype=np.float64, ndmin=2)
    except (OSError, ValueError) as exc:
        raise BadInputError(f"{path}: cannot read the {what} matrix: {exc}") from None


def _image_size(path: Path) -> tuple[tuple[int, int], str]:
    """((height, width), PIL mode) from the image header only."""
    try:
        with Image.open(path) as im:
            return (im.height, im.width), im.mode
    except OSError as exc:
        raise BadInputError(f"{path}: unreadable image: {exc}") from None


#: PIL modes of a 16-bit single-channel PNG ("I" is how some Pillow versions open them)
DEPTH_MODES = ("I;16", "I;16B", "I;16L", "I")


def _eight_bit_depth(path: Path, what: str) -> BadInputError:
    return BadInputError(
        f"{path}: depth must be a 16-bit PNG (uint16 millimetres), got an 8-bit image ({what}); "
        "8-bit values cannot hold millimetre depth (max 255 mm) - re-export the depth maps as 16-bit"
    )


def read_depth(path: Path, max_depth: float = DEFAULT_MAX_DEPTH, dropped: list[int] | None = None) -> np.ndarray:
    """Depth PNG (uint16 millimetres) -> float32 metres, 0 = invalid (also every pixel beyond ``max_depth`` m).

    The number of pixels dropped for lying beyond ``max_depth`` is appended to ``dropped`` when given.
    """
    try:
        with Image.open(path) as im:
            d = np.asarray(im)
    except OSError as exc:
        raise BadInputError(f"{path}: unreadable depth image: {exc}") from None
    if d.ndim == 2 and d.dtype in (np.uint8, np.int8, np.bool_):
        raise _eight_bit_depth(path, f"dtype {d.dtype}")
    if d.ndim != 2 or not np.issubdtype(d.dtype, np.integer):
        raise BadInputError(f"{path}: depth must be a single-channel 16-bit PNG, got {d.dtype} {d.shape}")
    depth = (d.astype(np.float32) / DEPTH_SHIFT).astype(np.float32)
    far = depth > max_depth
    n_far = int(np.count_nonzero(far))
    if n_far:
        depth[far] = 0.0
    if dropped is not None:
        dropped.append(n_far)
    return depth


def valid_depth_fraction(depth: np.ndarray) -> float:
    """Share of valid depth pixels (finite and > 0), as view sampling's ``min_valid_depth`` counts them."""
    d = np.asarray(depth)
    return float(np.mean(np.isfinite(d) & (d > 0)))


def read_color(path: Path) -> np.ndarray:
    """Color image -> (H,W,3) uint8 RGB."""
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except OSError as exc:
        raise BadInputError(f"{path}: unreadable color image: {exc}") from None


class LazyViews(Sequence[View]):
    """Views of a ScanNet scene, each loaded from disk when indexed.

    Indexing decodes colour and depth; :meth:`pose_at`, :meth:`depth_at` and
    :meth:`valid_depth_fraction` give the cheaper per-frame facts without decoding the colour image.
    """

    def __init__(self, frames: list[Frame], intrinsic: np.ndarray, color_intrinsic: np.ndarray,
                 max_depth: float = DEFAULT_MAX_DEPTH) -> None:
        self.frames = frames
        self.max_depth = max_depth
        self.intrinsic = intrinsic
        self.color_intrinsic = color_intrinsic
        self._valid: dict[int, float] = {}

    def __len__(self) -> int:
        return len(self.frames)

    def __getitem__(self, index):  # type: ignore[override]
        """Load view ``index`` (a slice gives a list of views)."""
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        f = self.frames[index]
        return View(
            frame_id=f.frame_id,
            color=read_color(f.color_path),
            depth=read_depth(f.depth_path, self.max_depth),
            intrinsic=self.intrinsic.copy(),
            pose=f.pose.copy(),
            color_intrinsic=self.color_intrinsic.copy(),
        )

    def frame_ids(self) -> list[int]:
        """Frame numbers in order, without loading anything."""
        return [f.frame_id for f in self.frames]

    def pose_at(self, index: int) -> np.ndarray:
        """The (4,4) camera-to-world pose of view ``index`` (read at discovery; nothing decoded)."""
        return self.frames[index].pose.copy()

    def depth_at(self, index: int) -> np.ndarray:
        """The depth map of view ``index`` (float32 metres) without decoding its colour image."""
        return read_depth(self.frames[index].depth_path, self.max_depth)

    def valid_depth_fraction(self, index: int) -> float:
        """Share of valid depth pixels of view ``index``: measured at discovery, else read (depth only) once."""
        f = self.frames[index]
        if f.valid_depth is not None:
            return f.valid_depth
        if index not in self._valid:
            self._valid[index] = valid_depth_fraction(self.depth_at(index))
        return self._valid[index]


def _intrinsics(scene_dir: Path, depth_hw: tuple[int, int], color_hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """(depth 3x3, color 3x3); a missing one is replaced by the other only when the sizes match."""
    files = {k: scene_dir / "intrinsic" / f"intrinsic_{k}.txt" for k in ("depth", "color")}
    try:
        mats = {
            k: check_intrinsic(read_matrix(p, f"{k} intrinsic"), str(p)) for k, p in files.items() if p.is_file()
        }
    except BadInputError as exc:  # one line: the matrix in the message is printed over several
        raise BadInputError(" ".join(str(exc).split())) from None
    if not mats:
        raise BadInputError(f"{files['depth']}: missing (and {files['color'].name} too): no camera intrinsics")
    for k, other in (("depth", "color"), ("color", "depth")):
        if k not in mats:
            if depth_hw != color_hw:
                raise BadInputError(
                    f"{files[k]}: missing, and the {k} images ({depth_hw if k == 'depth' else color_hw}) differ in "
                    f"size from the {other} images, so intrinsic_{other}.txt cannot be reused"
                )
            mats[k] = mats[other]
    return mats["depth"], mats["color"]


def check_frame_options(where: Path, frame_stride: object, max_frames: object) -> None:
    """BadInputError naming ``where`` unless frame_stride is an integer >= 1 and max_frames is one or None."""
    for key, value, optional in (("frame_stride", frame_stride, False), ("max_frames", max_frames, True)):
        if optional and value is None:
            continue
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise BadInputError(f"{where}: {key} must be an integer >= 1{' (or None)' if optional else ''}, got {value!r}")


def discover_frames(
    scene_dir: Path, frame_stride: int = 1, max_frames: int | None = None, check_depth: bool = True,
    max_depth: float = DEFAULT_MAX_DEPTH,
) -> tuple[list[Frame], tuple[int, int], tuple[int, int]]:
    """Validated frames (sorted numerically, every ``frame_stride``-th, at most ``max_frames``), depth and color sizes.

    Frames with a non-finite pose or an all-zero depth map are skipped with one warning each that
    counts them; a missing file, a non-rigid pose, an 8-bit depth map or an image of another size raises
    BadInputError. With ``check_depth`` each kept frame's depth is decoded once here and its share of
    valid pixels is kept in :attr:`Frame.valid_depth`; depth beyond ``max_depth`` metres (Kinect's
    65535 mm "invalid") is dropped (read as 0) and the dropped pixels are counted in one warning.
    """
    check_frame_options(scene_dir, frame_stride, max_frames)
    if not isinstance(max_depth, (int, float)) or isinstance(max_depth, bool) or not max_depth > 0:
        raise BadInputError(f"{scene_dir}: max_depth must be a number of metres > 0, got {max_depth!r}")
    far_pixels: dict[int, int] = {}
    colors = _numbered(scene_dir / "color", COLOR_EXTS)
    depths = _numbered(scene_dir / "depth", (".png",))
    poses = _numbered(scene_dir / "pose", (".txt",))
    ids = sorted(set(colors) | set(depths) | set(poses))
    if not ids:
        raise BadInputError(f"{scene_dir}: no frames (expected color/N.jpg, depth/N.png, pose/N.txt)")
    frames: list[Frame] = []
    bad_pose: list[int] = []
    empty: list[int] = []
    depth_hw = color_hw = None
    first_depth = first_color = None
    for fid in ids[::frame_stride]:
        if max_frames is not None and len(frames) >= max_frames:
            break
        for table, what, example in ((colors, "color", "color/N.jpg|png"), (depths, "depth", "depth/N.png"),
                                     (poses, "pose", "pose/N.txt")):
            if fid not in table:
                raise BadInputError(
                    f"{scene_dir}: frame {fid} has no {what} file ({example.replace('N', str(fid))} missing)"
                )
        pose = read_matrix(poses[fid], "pose")
        if pose.shape != (4, 4):
            raise BadInputError(f"{poses[fid]}: pose must be a 4x4 matrix, got shape {pose.shape}")
        if not np.all(np.isfinite(pose)):
            bad_pose.append(fid)
            continue
        problem = pose_problem(pose)
        if problem is not None:
            raise BadInputError(f"{poses[fid]}: invalid camera-to-world pose: {problem}")
        dhw, mode = _image_size(depths[fid])
        if mode in ("L", "P", "1", "LA", "PA"):
            raise _eight_bit_depth(depths[fid], f"PIL mode {mode}")
        if mode not in DEPTH_MODES:
            raise BadInputError(f"{depths[fid]}: depth must be a 16-bit PNG, got PIL mode {mode}")
        chw, _ = _image_size(colors[fid])
        if depth_hw is None:
            depth_hw, color_hw, first_depth, first_color = dhw, chw, depths[fid], colors[fid]
        elif dhw != depth_hw:
            raise BadInputError(f"{depths[fid]}: depth size {dhw} differs from {depth_hw} of {first_depth}")
        elif chw != color_hw:
            raise BadInputError(f"{colors[fid]}: color size {chw} differs from {color_hw} of {first_color}")
        valid = None
        if check_depth:
            far: list[int] = []
            valid = valid_depth_fraction(read_depth(depths[fid], max_depth, far))
            if far and far[0]:
                far_pixels[fid] = far[0]
        if valid == 0.0:
            empty.append(fid)
            continue
        frames.append(Frame(fid, colors[fid], depths[fid], pose, valid))
    if bad_pose:
        warnings.warn(
            f"{scene_dir}: skipped {len(bad_pose)} frame(s) with non-finite poses (frames {bad_pose[:10]}"
            f"{' ...' if len(bad_pose) > 10 else ''})",
            stacklevel=2,
        )
    if empty:
        warnings.warn(
            f"{scene_dir}: skipped {len(empty)} frame(s) whose depth is all zero (frames {empty[:10]}"
            f"{' ...' if len(empty) > 10 else ''})",
            stacklevel=2,
        )
    if far_pixels:
        warnings.warn(
            f"{scene_dir}: dropped {sum(far_pixels.values())} depth pixel(s) beyond max_depth={max_depth:g} m "
            f"(read as invalid; Kinect exports mark invalid depth 65535 mm) in {len(far_pixels)} frame(s) "
            f"(frames {sorted(far_pixels)[:10]}{' ...' if len(far_pixels) > 10 else ''})",
            stacklevel=2,
        )
    if not frames:
        raise BadInputError(f"{scene_dir}: no usable frames after skipping invalid poses and empty depth maps")
    assert depth_hw is not None and color_hw is not None
    return frames, depth_hw, color_hw


def _find(scene_dir: Path, scene_id: str, suffix: str) -> Path | None:
    """``<scene_id><suffix>`` in the directory, else the single ``*<suffix>`` file there."""
    exact = scene_dir / f"{scene_id}{suffix}"
    try:
        if exact.is_file():
            return exact
    except OSError:  # the name is too long for the filesystem (a very long scene id): no such file
        pass
    found = sorted(scene_dir.glob(f"*{suffix}"))
    if len(found) > 1:  # which one belongs to the scene is a guess: instances would be dropped or wrong
        raise BadInputError(
            f"{scene_dir}: no {exact.name}, and {len(found)} files match *{suffix} "
            f"({', '.join(p.name for p in found[:4])}); rename the scene's own one to {exact.name}"
        )
    return found[0] if found else None


def load_instances(
    aggregation: Path, segs: Path, num_vertices: int
) -> tuple[np.ndarray, dict[int, str]]:
    """Per-vertex instance ids (int32, -1 = none) and labels from ScanNet aggregation + segs files."""
    try:
        agg = json.loads(aggregation.read_text(encoding="utf-8-sig"))
        seg_indices = np.asarray(json.loads(segs.read_text(encoding="utf-8-sig"))["segIndices"], dtype=np.int64)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise BadInputError(f"{aggregation} / {segs}: cannot read instances: {exc}") from None
    if not isinstance(agg, dict):
        raise BadInputError(f"{aggregation}: expected a JSON object with segGroups, got {type(agg).__name__}")
    if seg_indices.shape != (num_vertices,):
        raise BadInputError(f"{segs}: {seg_indices.shape[0]} segIndices for a mesh of {num_vertices} vertices")
    groups = agg.get("segGroups")
    if not isinstance(groups, list):
        raise BadInputError(f"{aggregation}: no segGroups list")
    seg_to_obj: dict[int, int] = {}
    labels: dict[int, str] = {}
    shared: set[int] = set()
    for n, g in enumerate(groups):
        try:
            raw = g.get("objectId", g.get("id"))
            if isinstance(raw, bool):
                raise ValueError(f"objectId {raw!r}")
            oid = int(raw)
            raw_segments = g.get("segments", [])
            if not isinstance(raw_segments, list):  # a string would be read digit by digit
                raise TypeError(f"segments {raw_segments!r} is not a list")
            segments = [int(s) for s in raw_segments]
        except (TypeError, ValueError, AttributeError) as exc:
            raise BadInputError(f"{aggregation}: segGroups[{n}]: objectId and segments must be integers ({exc})") from None
        if not 0 <= oid <= 2**31 - 1:
            raise BadInputError(f"{aggregation}: segGroups[{n}]: objectId {oid} is outside 0..2**31-1 (-1 means none)")
        if oid in labels:
            raise BadInputError(f"{aggregation}: segGroups[{n}]: objectId {oid} appears twice")
        labels[oid] = str(g.get("label", ""))
        for s in segments:
            if seg_to_obj.setdefault(s, oid) != oid:
                shared.add(s)
    if shared:
        warnings.warn(f"{aggregation}: {len(shared)} segments belong to two objects (e.g. {sorted(shared)[:5]}); "
                      "the first object keeps them", stacklevel=2)
    uniq, inverse = np.unique(seg_indices, return_inverse=True)
    lut = np.array([seg_to_obj.get(int(s), -1) for s in uniq], dtype=np.int32)
    unknown = sorted(set(seg_to_obj) - {int(s) for s in uniq})
    if unknown:
        warnings.warn(f"{aggregation}: {len(unknown)} segments not in {segs.name} (e.g. {unknown[:5]}): ignored",
                      stacklevel=2)
    empty = sorted(set(labels) - {int(o) for o in lut})
    if empty:
        warnings.warn(f"{aggregation}: objects {empty[:10]} have no points (none of their segments is in "
                      f"{segs.name}); queries that target them have an empty ground truth", stacklevel=2)
    return lut[inverse].astype(np.int32), labels


def _backprojected_cloud(
    views: LazyViews, depth_hw: tuple[int, int], color_hw: tuple[int, int], point_stride: int, voxel: float,
    scene_dir: Path,
) -> tuple[np.ndarray, np.ndarray]:
    """Merge the back-projected depth of every view, voxel-downsampled; colors from the color images."""
    from rich.progress import track

    pts_all: list[np.ndarray] = []
    col_all: list[np.ndarray] = []
    held = 0
    sy, sx = color_hw[0] / depth_hw[0], color_hw[1] / depth_hw[1]
    for i in track(range(len(views)), description=f"back-projecting {views.frame_ids()[0]}..",
                   disable=len(views) < 50, transient=True):
        v = views[i]
        pts, rows, cols = backproject_depth(v.depth, v.intrinsic, v.pose, stride=point_stride)
        cr = np.clip(np.rint((rows + 0.5) * sy - 0.5), 0, color_hw[0] - 1).astype(np.intp)
        cc = np.clip(np.rint((cols + 0.5) * sx - 0.5), 0, color_hw[1] - 1).astype(np.intp)
        pts_all.append(pts)
        col_all.append(v.color[cr, cc])
        held += len(pts)
        if held > _MERGE_EVERY:
            pts_all, col_all = _merge(pts_all, col_all, voxel)
            held = len(pts_all[0])
    pts_m, col_m = _merge(pts_all, col_all, voxel)
    if len(pts_m[0]) == 0:
        raise BadInputError(f"{scene_dir}: empty point cloud: no valid depth pixel in any view")
    return pts_m[0].astype(np.float32), col_m[0].astype(np.uint8)


def _merge(pts: list[np.ndarray], cols: list[np.ndarray], voxel: float) -> tuple[list[np.ndarray], list[np.ndarray]]:
    p = np.concatenate(pts) if pts else np.zeros((0, 3))
    c = np.concatenate(cols) if cols else np.zeros((0, 3), dtype=np.uint8)
    if voxel > 0 and len(p):
        keep = voxel_downsample(p, voxel)
        p, c = p[keep], c[keep]
    return [p], [c]


def load_scannet_scene(
    scene_dir: str | os.PathLike[str],
    frame_stride: int = 1,
    max_frames: int | None = None,
    point_stride: int = 4,
    voxel: float = 0.02,
    max_depth: float = DEFAULT_MAX_DEPTH,
) -> Scene:
    """Load one ScanNet export directory as a Scene with lazy views (see the module docstring)."""
    d = Path(scene_dir)
    if not d.is_dir():
        raise BadInputError(f"{d}: not a ScanNet scene directory")
    scene_id = scene_id_from_dir(d)
    frames, depth_hw, color_hw = discover_frames(d, frame_stride, max_frames, max_depth=max_depth)
    k_depth, k_color = _intrinsics(d, depth_hw, color_hw)
    views = LazyViews(frames, k_depth, k_color, max_depth)
    mesh = _find(d, scene_id, "_vh_clean_2.ply")
    instance_ids = None
    labels: dict[int, str] = {}
    if mesh is not None:
        points, colors = ply_points_colors(read_ply(mesh), mesh)
        if colors is None:
            colors = np.full((len(points), 3), 128, dtype=np.uint8)
        if len(points) == 0:
            raise BadInputError(f"{mesh}: empty point cloud")
        agg = _find(d, scene_id, ".aggregation.json")
        segs = _find(d, scene_id, "_vh_clean_2.0.010000.segs.json")
        if agg is not None and segs is not None:
            instance_ids, labels = load_instances(agg, segs, len(points))
    else:
        points, colors = _backprojected_cloud(views, depth_hw, color_hw, point_stride, voxel, d)
    return Scene(
        scene_id=scene_id,
        points=points,
        colors=colors,
        views=views,
        instance_ids=instance_ids,
        instance_labels=labels,
        source="scannet",
    )


def is_scene_dir(path: Path) -> bool:
    """True for a directory in the ScanNet export layout (has depth/ and pose/)."""
    return (path / "depth").is_dir() and (path / "pose").is_dir()


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


class ScanNetSource:
    """ScanNet scenes under ``root`` (a directory of scene dirs, or one scene dir); a mllm3d.shared.scene.SceneSource.

    ``queries()`` returns the queries of any ``queries_*.json`` file found in the scene directories
    (as in the fixtures), read with mllm3d.shared.annotations.load_queries. ``frame_stride`` / ``max_frames``
    subsample every scene's frames (see :func:`discover_frames`); ``options`` records what was used.
    """

    name = "scannet"

    def __init__(
        self,
        root: str | os.PathLike[str],
        frame_stride: int = 1,
        max_frames: int | None = None,
        point_stride: int = 4,
        voxel: float = 0.02,
        max_depth: float = DEFAULT_MAX_DEPTH,
    ) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise BadInputError(f"{self.root}: ScanNet root is not a directory")
        check_frame_options(self.root, frame_stride, max_frames)
        self.options = {"frame_stride": frame_stride, "max_frames": max_frames, "point_stride": point_stride,
                        "voxel": voxel, "max_depth": max_depth}
        self._dirs = find_scene_dirs(self.root, is_scene_dir, "no ScanNet scene directories (with depth/ and pose/) found")

    def scene_ids(self) -> list[str]:
        """Scene ids (directory names without the ``scannet_`` prefix), sorted."""
        return sorted(self._dirs)

    def scene_dir(self, scene_id: str) -> Path:
        """The directory of ``scene_id``."""
        if scene_id not in self._dirs:
            raise UnknownSceneError(f"{self.root}: no ScanNet scene {scene_id!r} (have {len(self._dirs)} scenes)")
        return self._dirs[scene_id]

    def load(self, scene_id: str) -> Scene:
        """Load one scene (lazy views)."""
        return load_scannet_scene(self.scene_dir(scene_id), **self.options)

    def queries(self) -> list[Query]:
        """Queries shipped beside the scenes (``queries_*.json``), [] when none."""
        from mllm3d.shared.annotations import load_queries

        out: list[Query] = []
        for sid in self.scene_ids():
            for f in sorted(self._dirs[sid].glob("queries_*.json")):
                out.extend(load_queries(f))
        return out
