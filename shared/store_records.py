"""What the store holds for a scene and for a query, as Python objects (``StoredScene``, ``QueryRecord``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mllm3d.shared.errors import StoreError
from mllm3d.shared.geometry import Correspondences
from mllm3d.shared.scene import Query


@dataclass
class StoredScene:
    """Query-independent data of one scene, as read back from the store."""

    scene_id: str
    points: np.ndarray  # (N,3) float32
    colors: np.ndarray  # (N,3) uint8
    frame_ids: np.ndarray  # (V,) int32
    intrinsics: np.ndarray  # (V,3,3) float32, for the mask/depth resolution
    poses: np.ndarray  # (V,4,4) float64 camera-to-world
    image_size: tuple[int, int]  # (H, W) of masks and correspondences
    correspondences: Correspondences
    instance_ids: np.ndarray | None = None  # (N,) int32
    instance_labels: dict[int, str] = field(default_factory=dict)
    source: str = ""
    depth_test: dict[str, float] = field(default_factory=dict)

    @property
    def num_points(self) -> int:
        return int(self.points.shape[0])

    @property
    def num_views(self) -> int:
        return int(self.frame_ids.shape[0])


@dataclass
class QueryRecord:
    """Stage 1's output for one query on one scene (k views), as written to / read from the store."""

    query: Query
    view_index: np.ndarray  # (k,) int32: indices into the scene's frames
    masks: np.ndarray  # (k,H,W) bool at the scene's image_size
    seg_embeddings: np.ndarray  # (k,D) float (stored float16)
    confidence: np.ndarray  # (k,) float32, SAM predicted IoU
    attention: np.ndarray  # (k,) float32, view attention score
    has_seg: np.ndarray  # (k,) bool: False = the MLLM produced no [SEG] (mask meaningless)
    view_seed: int = 0
    segmenter: str = ""
    generated_text: list[str] = field(default_factory=list)
    attention_maps: np.ndarray | None = None  # (k,h,w) float16, optional
    image_features: np.ndarray | None = None  # (k,C,h,w) float16, optional (for L_spatial)
    view_sampling: dict[str, Any] = field(default_factory=dict)  # settings that drew the views (resume check)

    @property
    def num_views(self) -> int:
        return int(self.view_index.shape[0])

    def validate(self, image_size: tuple[int, int] | None = None) -> None:
        """Raise StoreError if shapes, dtypes or values are inconsistent."""
        k = self.num_views
        where = f"query {self.query.scene_id}/{self.query.query_id}"
        if self.masks.ndim != 3 or self.masks.shape[0] != k:
            raise StoreError(f"{where}: masks must be (k,H,W) with k={k}, got {self.masks.shape}")
        if image_size is not None and tuple(self.masks.shape[1:]) != tuple(image_size):
            raise StoreError(f"{where}: masks are {self.masks.shape[1:]}, the scene's image size is {image_size}")
        for name in ("confidence", "attention", "has_seg"):
            arr = getattr(self, name)
            if arr.shape != (k,):
                raise StoreError(f"{where}: {name} must have shape ({k},), got {arr.shape}")
        if self.seg_embeddings.ndim != 2 or self.seg_embeddings.shape[0] != k:
            raise StoreError(f"{where}: seg_embeddings must be (k,D), got {self.seg_embeddings.shape}")
        for name in ("seg_embeddings", "confidence", "attention"):
            if not np.all(np.isfinite(getattr(self, name))):
                raise StoreError(f"{where}: {name} has non-finite values")
