"""Frame discovery of a ScanNet export (``color/``, ``depth/``, ``pose/``, ``intrinsic/``) and its lazy views.

:func:`discover_frames` validates and subsamples the frames (see :mod:`mllm3d.shared.scannet`),
:func:`intrinsics` reads the camera matrices and :class:`LazyViews` loads one view per index.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mllm3d.shared.errors import BadInputError
from mllm3d.shared.geometry import check_intrinsic, pose_problem
from mllm3d.shared.scannet_images import (
    DEFAULT_MAX_DEPTH,
    DEPTH_MODES,
    eight_bit_depth_error,
    image_size,
    read_color,
    read_depth,
    read_matrix,
    valid_depth_fraction,
)
from mllm3d.shared.scene import View

COLOR_EXTS = (".jpg", ".jpeg", ".png")


@dataclass(frozen=True)
class Frame:
    """Paths and pose of one validated frame."""

    frame_id: int
    color_path: Path
    depth_path: Path
    pose: np.ndarray  # (4,4) camera-to-world
    valid_depth: float | None = None  # share of valid (> 0) depth pixels, when measured at discovery


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
        dhw, mode = image_size(depths[fid])
        if mode in ("L", "P", "1", "LA", "PA"):
            raise eight_bit_depth_error(depths[fid], f"PIL mode {mode}")
        if mode not in DEPTH_MODES:
            raise BadInputError(f"{depths[fid]}: depth must be a 16-bit PNG, got PIL mode {mode}")
        chw, _ = image_size(colors[fid])
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


def intrinsics(scene_dir: Path, depth_hw: tuple[int, int], color_hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
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
