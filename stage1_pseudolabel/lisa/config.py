"""Configuration of the ``lisa`` Stage-1 backend (a small dataclass built from a YAML/CLI dict)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch

from mllm3d.shared.errors import BadInputError

#: LISA's default instruction (MLLM-For3D uses it unchanged).
DEFAULT_PROMPT = "{query} Please output segmentation mask."
#: The answer teacher-forced in ``decoding: forced``: one of LISA's training answers (``ANSWER_LIST[1]`` of its
#: utils/utils.py); set ``forced_answer: "Sure, it is [SEG]."`` for the one its validation fixture uses.
DEFAULT_FORCED_ANSWER = "Sure, [SEG]."

DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
}
DECODINGS = ("forced", "generate")


@dataclass
class LisaConfig:
    """Everything the ``lisa`` backend reads from its config dict.

    Paths may be relative (to the working directory); nothing here is an absolute default.
    """

    checkpoint: str = ""  # released LISA checkpoint directory (HF layout)
    clip_path: str | None = None  # CLIP ViT folder; None = from the checkpoint config / a `clip` sibling
    sam_checkpoint: str | None = None  # official SAM weights, only for SAM keys the LISA checkpoint lacks
    device: str = "cpu"
    dtype: str = "float32"  # float32 | bfloat16 | float16
    decoding: str = "forced"  # forced (teacher-forced answer, one pass) | generate (greedy)
    forced_answer: str = DEFAULT_FORCED_ANSWER
    # forced decoding: has_seg=False when the model's own p([SEG]) at the [SEG]-predicting position is
    # below this (LISA's "no [SEG]" failure, which teacher forcing otherwise hides); 0 = off
    min_seg_prob: float = 0.0
    max_new_tokens: int = 32
    shared_encodings: bool = True  # False = naive per-(view, query) recomputation (benchmark baseline)
    query_batch_size: int = 16  # queries of one view run through the LM together
    image_features: bool = False  # return the pooled SAM image embedding per view
    feature_pool: int = 16  # grid side of the pooled image features
    attention_map: bool = False  # also return the [SEG] attention over the CLIP patch grid
    attention_layers: int = 1  # attention score = mean over heads of the last N layers
    prompt: str = DEFAULT_PROMPT  # instruction template with a {query} field
    strict: bool = True  # unexpected checkpoint keys are an error (else only reported)
    sam_decoder_heads: int | None = None  # None = checkpoint config `sam_decoder_num_heads`, else 8 (SAM)

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: str = "lisa backend config") -> LisaConfig:
        """Build from a plain dict; unknown keys or bad values raise BadInputError naming ``source``."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise BadInputError(f"{source}: unknown key(s) {unknown}; known keys: {sorted(known)}")
        cfg = cls(**data)
        cfg.validate(source)
        return cfg

    def validate(self, source: str = "lisa backend config") -> None:
        """Check value ranges and enums; raise BadInputError naming the offending key."""
        if not self.checkpoint:
            raise BadInputError(f"{source}: 'checkpoint' (path to a LISA checkpoint directory) is required")
        if self.dtype not in DTYPES:
            raise BadInputError(f"{source}: dtype {self.dtype!r} not in {sorted(DTYPES)}")
        if self.decoding not in DECODINGS:
            raise BadInputError(f"{source}: decoding {self.decoding!r} not in {list(DECODINGS)}")
        if "{query}" not in self.prompt:
            raise BadInputError(f"{source}: prompt {self.prompt!r} has no {{query}} field")
        for name in ("max_new_tokens", "query_batch_size", "feature_pool", "attention_layers"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise BadInputError(f"{source}: {name} must be a positive integer, got {value!r}")
        p = self.min_seg_prob
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= float(p) <= 1.0:
            raise BadInputError(f"{source}: min_seg_prob must be a number in [0, 1], got {p!r}")
        self.min_seg_prob = float(p)
        if self.min_seg_prob > 0 and self.decoding != "forced":
            raise BadInputError(
                f"{source}: min_seg_prob applies to decoding: forced only (greedy decoding decides has_seg "
                f"itself), got decoding {self.decoding!r}"
            )
        for name in ("shared_encodings", "image_features", "attention_map", "strict"):
            if not isinstance(getattr(self, name), bool):
                raise BadInputError(f"{source}: {name} must be true or false, got {getattr(self, name)!r}")

    @property
    def torch_dtype(self) -> torch.dtype:
        return DTYPES[self.dtype]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
