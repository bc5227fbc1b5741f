"""The LISA network, composed from maintained libraries.

LISA = LLaVA v1 (CLIP ViT-L/14 tower, hidden layer −2 without CLS, a *linear* projector, a Llama LM —
transformers' ``LlavaForConditionalGeneration`` has LLaVA-1.5's two-layer projector, so the LLaVA-v1
pieces are composed here from ``CLIPVisionModel`` + ``nn.Linear`` + ``LlamaForCausalLM``) + SAM
(``segment_anything``) + the ``[SEG]`` bridge ``text_hidden_fcs`` = Linear(H,H)–ReLU–Linear(H,out)–Dropout(0)
whose output enters SAM's prompt path as a sparse prompt embedding; single-mask head.

Submodule names (``lm``, ``mm_projector``, ``sam``, ``text_hidden_fcs``, ``vision_tower``) are what the
checkpoint key mapping in ``checkpoint.py`` targets. Nothing here calls ``.cuda()``: move the module.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn
from transformers import LlamaConfig, LlamaForCausalLM
from transformers.modeling_outputs import BaseModelOutputWithPast

from .sam_shim import SamSpec, build_sam


@dataclass
class LisaArch:
    """Shape of a LISA model (everything but the CLIP tower, which is loaded from its own folder)."""

    llama: LlamaConfig
    mm_hidden_size: int = 1024  # CLIP ViT-L hidden size
    out_dim: int = 256  # [SEG] bridge output = SAM prompt dim
    vision_select_layer: int = -2
    vision_select_feature: str = "patch"  # "patch" drops CLS, "cls_patch" keeps it
    use_im_start_end: bool = True
    sam: SamSpec = field(default_factory=SamSpec)


class LisaModel(nn.Module):
    """LISA's modules plus the component calls the inference engine (and the FLOP benchmark) use."""

    def __init__(self, arch: LisaArch, vision_tower: nn.Module | None = None) -> None:
        super().__init__()
        hidden = arch.llama.hidden_size
        self.arch = arch
        self.lm = LlamaForCausalLM(arch.llama)
        self.mm_projector = nn.Linear(arch.mm_hidden_size, hidden)
        self.sam = build_sam(arch.sam)
        self.text_hidden_fcs = nn.ModuleList(
            [nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, arch.out_dim),
                           nn.Dropout(0.0))]
        )
        self.vision_tower = vision_tower

    @property
    def dtype(self) -> torch.dtype:
        return self.mm_projector.weight.dtype

    @property
    def device(self) -> torch.device:
        return self.mm_projector.weight.device

    # --- image side -------------------------------------------------------------------------------
    def image_tokens(self, clip_pixels: torch.Tensor) -> torch.Tensor:
        """CLIP pixels (B,3,S,S) → projected image tokens (B, n_patches, H)."""
        if self.vision_tower is None:
            raise RuntimeError("LisaModel has no vision tower attached")
        out = self.vision_tower(pixel_values=clip_pixels.to(self.device, self.dtype), output_hidden_states=True)
        feats = out.hidden_states[self.arch.vision_select_layer]
        if self.arch.vision_select_feature == "patch":
            feats = feats[:, 1:]
        return self.mm_projector(feats)

    def sam_embedding(self, sam_pixels: torch.Tensor) -> torch.Tensor:
        """Preprocessed SAM pixels (B,3,1024,1024) → image embedding (B,C,64,64)."""
        return self.sam.image_encoder(sam_pixels.to(self.device, self.dtype))

    # --- language side ----------------------------------------------------------------------------
    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        return self.lm.model.embed_tokens(ids.to(self.device))

    def decoder(
        self,
        inputs_embeds: torch.Tensor,
        *,
        cache=None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        use_cache: bool = False,
        output_attentions: bool = False,
    ) -> BaseModelOutputWithPast:
        """The Llama decoder; ``last_hidden_state`` is after the final norm (LISA's hidden_states[-1])."""
        return self.lm.model(
            inputs_embeds=inputs_embeds,
            cache=cache,
            attention_mask=attention_mask,
            position_ids=position_ids,
            use_cache=use_cache,
            output_attentions=output_attentions,
        )

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.lm.lm_head(hidden)

    def seg_projection(self, hidden: torch.Tensor) -> torch.Tensor:
        """``text_hidden_fcs``: last-layer hidden state(s) (..., H) → [SEG] embedding (..., out_dim)."""
        return self.text_hidden_fcs[0](hidden)

    # --- mask side --------------------------------------------------------------------------------
    def decode_masks(
        self, image_embedding: torch.Tensor, seg_embeddings: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """SAM prompt encoder + single-mask decoder for n [SEG] embeddings on one image.

        ``image_embedding`` (1,C,h,w), ``seg_embeddings`` (n,C) → low-res logits (n,1,4h,4w), IoU (n,).
        Sparse prompt = the [SEG] embedding (n,1,C); dense prompt = SAM's no-mask embedding (as LISA).
        """
        n = seg_embeddings.shape[0]
        pe = self.sam.prompt_encoder
        sparse, dense = pe(points=None, boxes=None, masks=None)
        sparse = torch.cat([sparse.expand(n, -1, -1), seg_embeddings.unsqueeze(1)], dim=1).to(self.dtype)
        dense = dense.expand(n, -1, -1, -1).to(self.dtype)
        low_res, iou = self.sam.mask_decoder(
            image_embeddings=image_embedding,
            image_pe=pe.get_dense_pe().to(self.dtype),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=False,
        )
        return low_res, iou[:, 0]


def llama_config_from_lisa(cfg: dict, *, attn_implementation: str = "eager") -> LlamaConfig:
    """A ``LlamaConfig`` from a LISA checkpoint's config.json (LLaVA/LISA model_type, Llama fields)."""
    rope = cfg.get("rope_parameters") or {"rope_type": "default", "rope_theta": float(cfg.get("rope_theta", 10000.0))}
    if cfg.get("rope_scaling"):
        rope = {**cfg["rope_scaling"], "rope_theta": float(cfg.get("rope_theta", 10000.0))}
        rope.setdefault("rope_type", rope.pop("type", "default"))
    llama = LlamaConfig(
        vocab_size=int(cfg["vocab_size"]),
        hidden_size=int(cfg["hidden_size"]),
        intermediate_size=int(cfg["intermediate_size"]),
        num_hidden_layers=int(cfg["num_hidden_layers"]),
        num_attention_heads=int(cfg["num_attention_heads"]),
        num_key_value_heads=int(cfg.get("num_key_value_heads") or cfg["num_attention_heads"]),
        hidden_act=cfg.get("hidden_act", "silu"),
        max_position_embeddings=int(cfg.get("max_position_embeddings", 2048)),
        rms_norm_eps=float(cfg.get("rms_norm_eps", 1e-6)),
        rope_parameters=rope,
        attention_bias=bool(cfg.get("attention_bias", False)),
        mlp_bias=bool(cfg.get("mlp_bias", False)),
        tie_word_embeddings=bool(cfg.get("tie_word_embeddings", False)),
        bos_token_id=cfg.get("bos_token_id", 1),
        eos_token_id=cfg.get("eos_token_id", 2),
        pad_token_id=cfg.get("pad_token_id"),
        attn_implementation=attn_implementation,
    )
    return llama
