"""The one narrow interface every 2D reasoning-segmentation backend implements.

A backend receives one view and all queries of the scene that sampled this view, and returns one
:class:`SegmentationResult` per query. Backends are registered in :data:`BACKENDS` and built by
:func:`build_segmenter` from a name and a config dict (loaded from YAML / CLI).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

from mllm3d.shared.scene import Query, View


@dataclass
class SegmentationResult:
    """What a backend says about one query in one view."""

    mask: np.ndarray  # (Hc, Wc) bool at the view's *color* resolution
    seg_embedding: np.ndarray  # (D,) float32, D = 256 for LISA (after text_hidden_fcs)
    confidence: float  # SAM's predicted IoU for the mask
    attention: float  # view attention score ([SEG]-predicting position -> image tokens)
    has_seg: bool  # False: no [SEG] was generated; mask/embedding are then zeros and meaningless
    text: str = ""  # the generated (or teacher-forced) answer
    attention_map: np.ndarray | None = None  # (h, w) float, optional


@dataclass
class ViewSegmentation:
    """All queries' results for one view, plus the optional query-independent image features."""

    results: list[SegmentationResult]
    image_features: np.ndarray | None = None  # (C, h, w) float, e.g. pooled SAM image embedding


@runtime_checkable
class Segmenter(Protocol):
    name: str
    embed_dim: int

    def config_dict(self) -> dict[str, Any]:
        """JSON-able config that determines the outputs (hashed into the store's root attrs)."""
        ...

    def segment_view(self, view: View, queries: list[Query]) -> ViewSegmentation:
        """Segment every query in one view (encodings of the view are shared across the queries)."""
        ...


# backend name -> "module:factory"; factory(config: dict) -> Segmenter
BACKENDS: dict[str, str] = {
    "synthetic": "mllm3d.stage1_pseudolabel.synthetic_backend:build",
    "lisa": "mllm3d.stage1_pseudolabel.lisa.backend:build",
}


def build_segmenter(name: str, config: dict[str, Any] | None = None) -> Segmenter:
    """Instantiate a registered backend by name."""
    if name not in BACKENDS:
        raise ValueError(f"unknown segmenter backend {name!r}; known: {sorted(BACKENDS)}")
    module_name, attr = BACKENDS[name].split(":")
    factory = getattr(importlib.import_module(module_name), attr)
    return factory(dict(config or {}))
