"""The synthetic stand-in's configuration: its failure rates, embedding and feature settings, and the named
presets (``easy``, ``lisa_like``, ``clean``; docs/stand_in.md gives every rate with its reasoning)."""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, fields
from typing import Any

from mllm3d.shared.errors import BadInputError
from mllm3d.stage1_pseudolabel.synthetic_features import FEATURE_MODELS

# Named failure models (docs/stand_in.md gives every rate with its reasoning). ``easy`` is the original
# model (failures independent per (query, view), hallucinations carry the distractor's embedding, α
# well separated); ``lisa_like`` adds per-query misreadings, salient/similar answers in views without the
# target, hallucinated embeddings that keep half the query's direction, and overlapping confidences.
PRESETS: dict[str, dict[str, Any]] = {
    "easy": {},
    "lisa_like": {
        "miss_rate": 0.05,
        "hallucination_rate": 0.15,
        "absent_hallucination_rate": 0.8,
        "misread_rate": 0.2,
        "similar_preference": 3.0,
        "hallucination_mix": 0.5,
        "conf_correct": (0.80, 0.12),
        "conf_wrong": (0.68, 0.12),
    },
    # the bound rows' stand-in: every failure off (the views' visible ground-truth masks, noisy embeddings)
    "clean": {"miss_rate": 0.0, "hallucination_rate": 0.0, "absent_hallucination_rate": 0.0, "misread_rate": 0.0,
              "boundary_rate": 0.0, "partial_rate": 0.0},
}


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def _typed(name: str, value: Any, default: Any) -> Any:
    """``value`` of the key ``name`` checked against the kind of its default (bool, integer, number, string, or
    a fixed-length list of numbers, returned as a tuple of floats); a one-line BadInputError naming both."""
    if isinstance(default, bool):
        ok, expected = isinstance(value, bool), "true or false"
    elif isinstance(default, int):
        ok, expected = isinstance(value, numbers.Integral) and not isinstance(value, bool), "an integer"
    elif isinstance(default, float):
        ok, expected = _is_number(value), "a finite number"
    elif isinstance(default, str):
        ok, expected = isinstance(value, str), "a string"
    else:
        n = len(default)
        ok = isinstance(value, (list, tuple)) and len(value) == n and all(_is_number(x) for x in value)
        expected = f"a list of {n} finite numbers"
        if ok:
            return tuple(float(x) for x in value)
    if not ok:
        raise BadInputError(f"synthetic backend: {name} must be {expected}, got {value!r} "
                            f"(type {type(value).__name__})")
    return value


@dataclass
class SyntheticBackendConfig:
    """Failure model and output shapes of the synthetic segmenter (all rates are probabilities)."""

    preset: str = "easy"  # a name in PRESETS: its values replace the defaults below, explicit keys win
    seed: int = 0
    embed_dim: int = 256
    hallucination_rate: float = 0.15
    absent_hallucination_rate: float = 0.3  # target not visible: chance of segmenting something else
    miss_rate: float = 0.10
    boundary_rate: float = 0.30
    partial_rate: float = 0.15
    boundary_width: int = 2  # pixels
    partial_fraction: tuple[float, float] = (0.25, 0.6)  # share of the mask a partial cut removes
    min_object_pixels: int = 16  # smaller visible objects are not picked for hallucinations
    embedding_noise: float = 0.5  # noise norm relative to the unit query vector
    category_weight: float = 1.0  # object vector = w_cat*u(category) + w_color*u(colour) + w_inst*u(object)
    color_weight: float = 0.6
    instance_weight: float = 0.4
    query_weight: float = 0.3  # a query-specific direction added to the target's vector (the wording)
    image_features: bool = False
    feature_dim: int = 32
    feature_stride: int = 8
    feature_noise: float = 0.1
    # image features (docs/stand_in.md, "Image features"): random_instance (the original, a negative control:
    # nothing transfers between scenes) | structured (shared category / colour / surface-part directions)
    feature_model: str = "random_instance"
    feature_weights: tuple[float, float, float, float] = (1.0, 0.5, 0.5, 0.3)  # structured: cat, colour, part, inst
    attention_maps: bool = False
    attention_stride: int = 16
    misread_rate: float = 0.0  # per query: the query is misread as one other object, the same in every view
    similar_preference: float = 0.0  # distractor weight x (1 + this) per shared category / colour with the target
    hallucination_mix: float = 1.0  # share of the distractor's vector in a wrong view's embedding (rest: query's)
    conf_correct: tuple[float, float] = (0.85, 0.08)  # confidence (α) mean, sd of a view that segmented the target
    conf_wrong: tuple[float, float] = (0.62, 0.12)  # ... of a view that segmented another object

    @classmethod
    def from_dict(cls, config: dict[str, Any]) -> SyntheticBackendConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(config) - known)
        if unknown:
            raise BadInputError(f"synthetic backend: unknown config keys {unknown}; known: {sorted(known)}")
        defaults = {f.name: f.default for f in fields(cls)}
        checked = {name: _typed(name, value, defaults[name]) for name, value in config.items()}
        preset = checked.get("preset", "easy")
        if preset not in PRESETS:
            raise BadInputError(f"synthetic backend: preset must be one of {sorted(PRESETS)}, got {preset!r}")
        cfg = cls(**{**PRESETS[preset], **checked})
        fw = cfg.feature_weights
        if any(x < 0 for x in fw) or sum(fw) <= 0:
            raise BadInputError(f"synthetic backend: feature_weights must be 4 numbers >= 0 (category, colour, "
                                f"part, instance) with a positive sum, got {fw!r}")
        cfg.validate()
        return cfg

    def validate(self) -> None:
        for name in (
            "hallucination_rate",
            "absent_hallucination_rate",
            "miss_rate",
            "boundary_rate",
            "partial_rate",
            "misread_rate",
            "hallucination_mix",
        ):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise BadInputError(f"synthetic backend: {name} must be in [0, 1], got {v}")
        lo, hi = self.partial_fraction
        if not 0.0 < lo <= hi < 1.0:
            raise BadInputError(
                f"synthetic backend: partial_fraction must satisfy 0 < lo <= hi < 1, got {self.partial_fraction}"
            )
        if self.feature_model not in FEATURE_MODELS:
            raise BadInputError(
                f"synthetic backend: feature_model must be one of {list(FEATURE_MODELS)}, got {self.feature_model!r}")
        if self.conf_correct[1] < 0 or self.conf_wrong[1] < 0:
            raise BadInputError("synthetic backend: the sd of conf_correct / conf_wrong must be >= 0")
        for name in ("category_weight", "color_weight", "instance_weight", "query_weight", "embedding_noise",
                     "similar_preference"):
            if getattr(self, name) < 0:
                raise BadInputError(f"synthetic backend: {name} must be >= 0, got {getattr(self, name)}")
        if self.category_weight + self.color_weight + self.instance_weight <= 0:
            raise BadInputError("synthetic backend: category_weight + color_weight + instance_weight must be > 0")
        for name in ("embed_dim", "feature_dim", "feature_stride", "attention_stride", "boundary_width"):
            if getattr(self, name) < 1:
                raise BadInputError(f"synthetic backend: {name} must be >= 1, got {getattr(self, name)}")
