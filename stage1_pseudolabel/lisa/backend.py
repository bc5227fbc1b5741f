"""The ``lisa`` Stage-1 backend: :class:`LisaSegmenter` (the Segmenter protocol) and ``build``.

``build_segmenter("lisa", {"checkpoint": "<LISA folder>"})`` loads LISA from local folders and returns
a segmenter whose ``segment_view(view, queries)`` shares the view's encodings across its queries.
"""

from __future__ import annotations

from typing import Any

from mllm3d.shared.scene import Query, View
from mllm3d.stage1_pseudolabel.segmenter import SegmentationResult, ViewSegmentation

from .checkpoint import LoadedLisa, load_lisa
from .config import LisaConfig
from .engine import LisaEngine
from .preprocess import check_color

#: config keys that do not change the outputs (kept out of config_dict, i.e. out of the store's hash)
_RUNTIME_KEYS = ("checkpoint", "clip_path", "sam_checkpoint", "device", "shared_encodings", "query_batch_size", "strict")


class LisaSegmenter:
    """LISA (LLaVA + SAM + [SEG] bridge) behind the Stage-1 Segmenter interface."""

    name = "lisa"

    def __init__(self, cfg: LisaConfig, loaded: LoadedLisa) -> None:
        self.cfg = cfg
        self.loaded = loaded
        self.engine = LisaEngine(loaded.model, loaded.tokenizer, loaded.token_ids, loaded.clip_preprocess, cfg)
        self.embed_dim = int(loaded.model.arch.out_dim)

    @property
    def seg_token_id(self) -> int:
        return self.loaded.token_ids.seg

    def config_dict(self) -> dict[str, Any]:
        """Output-determining config: options plus the checkpoint's name, fingerprint and [SEG] id."""
        out = {k: v for k, v in self.cfg.to_dict().items() if k not in _RUNTIME_KEYS}
        if not out.get("min_seg_prob"):  # off: left out, so stores made before the option keep their hash
            out.pop("min_seg_prob", None)
        out.update(
            checkpoint_name=self.loaded.checkpoint_dir.resolve().name,
            checkpoint_fingerprint=self.loaded.fingerprint,
            clip_name=self.loaded.clip_dir.resolve().name,
            seg_token_id=self.loaded.token_ids.seg,
            embed_dim=self.embed_dim,
        )
        return out

    def segment_view(self, view: View, queries: list[Query]) -> ViewSegmentation:
        """One :class:`SegmentationResult` per query, in order, for this view."""
        color = check_color(view.color, where=f"view frame {view.frame_id}")
        outputs, feats = self.engine.segment(color, [q.text for q in queries])
        results = [
            SegmentationResult(
                mask=o.mask,
                seg_embedding=o.embedding,
                confidence=o.confidence,
                attention=o.attention,
                has_seg=o.has_seg,
                text=o.text,
                attention_map=o.attention_map,
            )
            for o in outputs
        ]
        return ViewSegmentation(results=results, image_features=feats)


def build(config: dict[str, Any]) -> LisaSegmenter:
    """Factory registered as ``lisa`` in ``mllm3d.stage1_pseudolabel.segmenter.BACKENDS``."""
    cfg = LisaConfig.from_dict(dict(config))
    return LisaSegmenter(cfg, load_lisa(cfg))
