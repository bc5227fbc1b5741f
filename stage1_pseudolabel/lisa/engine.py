"""LISA inference for one view and many queries: shared encodings (default) or the naive baseline.

Shared path, per view: CLIP and SAM encode the image once; the LM runs once over the query-independent
prefix (system prompt + ``USER: <im_start>`` + image tokens) and its KV cache is reused by every query;
the queries' suffixes (``<im_end>\\n{instruction} ASSISTANT: …``) run as one right-padded batch; SAM
decodes all [SEG] embeddings of the view in one call. Naive path: everything again per (view, query).
Both compute the same numbers (tested to 1e-4 in float32).

The ``[SEG]`` embedding is the final-layer hidden state (after the last norm) at the position that
*predicts* ``[SEG]`` (one-token shift), found from the actual token layout — never a constant offset.
The same hidden state through ``lm_head`` gives the model's own probability of ``[SEG]`` there
(``seg_prob``); forced decoding can turn a low one into ``has_seg=False`` (``min_seg_prob``), the
"no [SEG]" failure that teacher forcing otherwise hides.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from transformers import DynamicCache, PreTrainedTokenizerBase

from .config import LisaConfig
from .model import LisaModel
from .preprocess import (
    ClipPreprocess,
    SamInput,
    clip_preprocess,
    postprocess_masks,
    sam_preprocess,
    valid_embedding_cells,
)
from .tokenizer import PromptTokens, SpecialTokenIds, llava_v1_prompt, tokenize_prompt

SEGMENT_MODES = ("naive", "cached", "shared")


@dataclass
class ViewEncoding:
    """Query-independent encodings of one view."""

    image_tokens: torch.Tensor  # (1, n_img, H) projected CLIP patch tokens
    sam_embedding: torch.Tensor  # (1, C, g, g) SAM image embedding of the padded canvas
    sam_input: SamInput  # sizes for postprocessing (pixels dropped after encoding)


@dataclass
class LmOutcome:
    """The LM's answer for one query."""

    answer_ids: list[int]  # teacher-forced or generated answer tokens
    seg_hidden: torch.Tensor | None  # (H,) hidden state at the [SEG]-predicting position; None = no [SEG]
    image_attention: torch.Tensor | None  # (n_img,) attention of that position to the image tokens
    seg_prob: float | None = None  # softmax p([SEG]) at the [SEG]-predicting position; None = no such position


@dataclass
class QueryOutput:
    """Everything the backend reports for one (view, query)."""

    has_seg: bool
    text: str
    mask: np.ndarray  # (H, W) bool at the colour resolution
    embedding: np.ndarray  # (out_dim,) float32
    confidence: float
    attention: float
    attention_map: np.ndarray | None
    answer_ids: list[int]  # the answer's token ids (teacher-forced or generated)
    seg_prob: float | None = None  # the model's p([SEG]) where [SEG] is predicted (see LmOutcome)


class LisaEngine:
    """Runs a loaded :class:`LisaModel` on views; all tensors live on the model's device/dtype."""

    def __init__(self, model: LisaModel, tokenizer: PreTrainedTokenizerBase, token_ids: SpecialTokenIds,
                 clip_pre: ClipPreprocess, cfg: LisaConfig) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.ids = token_ids
        self.clip_pre = clip_pre
        self.cfg = cfg

    # --- prompts ----------------------------------------------------------------------------------
    def prompt_tokens(self, query_text: str) -> PromptTokens:
        """Token ids around the image for one query (the answer is included in ``forced`` decoding)."""
        instruction = self.cfg.prompt.replace("{query}", query_text.strip())
        answer = self.cfg.forced_answer if self.cfg.decoding == "forced" else None
        text = llava_v1_prompt(instruction, answer=answer, use_im_start_end=self.model.arch.use_im_start_end)
        return tokenize_prompt(self.tokenizer, text, self.ids.bos)

    def answer_start(self, query_text: str) -> int:
        """Index in the suffix where the answer starts (the length of the suffix without the answer)."""
        instruction = self.cfg.prompt.replace("{query}", query_text.strip())
        text = llava_v1_prompt(instruction, use_im_start_end=self.model.arch.use_im_start_end)
        return len(tokenize_prompt(self.tokenizer, text, self.ids.bos).suffix)

    # --- encoders ---------------------------------------------------------------------------------
    @torch.inference_mode()
    def encode_view(self, color: np.ndarray) -> ViewEncoding:
        """CLIP image tokens and SAM image embedding of one (H,W,3) uint8 image."""
        m = self.model
        tokens = m.image_tokens(clip_preprocess(color, self.clip_pre))
        sam_in = sam_preprocess(color, m.arch.sam.image_size)
        emb = m.sam_embedding(sam_in.pixels)
        sam_in.pixels = sam_in.pixels[:0]  # keep sizes only
        return ViewEncoding(image_tokens=tokens, sam_embedding=emb, sam_input=sam_in)

    def prefix_embeds(self, enc: ViewEncoding, prefix_ids: list[int]) -> torch.Tensor:
        """(1, P, H): embedded prefix text followed by the image tokens."""
        ids = torch.tensor([prefix_ids], dtype=torch.long)
        return torch.cat([self.model.embed(ids), enc.image_tokens], dim=1)

    # --- language model ---------------------------------------------------------------------------
    def _seg_prob(self, hidden: torch.Tensor) -> float:
        """Softmax probability of ``[SEG]`` from one final hidden state (H,): one lm_head row-vector product."""
        logits = self.model.logits(hidden).float()
        return float(torch.softmax(logits, dim=-1)[self.ids.seg])

    def _image_attention(self, attentions, rows: torch.Tensor, pos: torch.Tensor, img: slice) -> torch.Tensor:
        """Mean over heads and the last ``attention_layers`` layers of attention rows → (B, n_img)."""
        layers = attentions[-self.cfg.attention_layers:]
        per_layer = [a[rows, :, pos, img].float().mean(dim=1) for a in layers]
        return torch.stack(per_layer).mean(dim=0)

    @torch.inference_mode()
    def prefix_cache(self, prefix: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Run the LM once over the query-independent prefix; return its per-layer (keys, values)."""
        pre = self.model.decoder(prefix, use_cache=True)
        return [(layer.keys, layer.values) for layer in pre.cache.layers]

    @torch.inference_mode()
    def run_lm(self, prefix: torch.Tensor, image_slice: slice, suffixes: list[list[int]],
               answer_starts: list[int], *, prefix_kv: list | None = None) -> list[LmOutcome]:
        """Forced or greedy decoding for a batch of query suffixes after one ``prefix`` (1,P,H).

        With ``prefix_kv`` (from :meth:`prefix_cache`) the suffixes run as one right-padded batch on a
        copy of that cache; without it (the naive path, one query) prefix + suffix run as one sequence.
        """
        share_prefix = prefix_kv is not None
        m, device = self.model, self.model.device
        generate = self.cfg.decoding == "generate"
        n_q, p_len = len(suffixes), prefix.shape[1]
        lens = torch.tensor([len(s) for s in suffixes])
        s_len = int(lens.max())
        ids = torch.full((n_q, s_len), self.ids.pad, dtype=torch.long)
        for i, s in enumerate(suffixes):
            ids[i, : len(s)] = torch.tensor(s, dtype=torch.long)
        suffix_emb = m.embed(ids)
        if share_prefix:
            kv = [(k.expand(n_q, -1, -1, -1), v.expand(n_q, -1, -1, -1)) for k, v in prefix_kv]
            cache = DynamicCache(ddp_cache_data=kv, config=m.lm.config)
            real = torch.arange(s_len).unsqueeze(0) < lens.unsqueeze(1)
            attn_mask = torch.cat([torch.ones(n_q, p_len, dtype=torch.bool), real], dim=1).to(device)
            positions = (p_len + torch.arange(s_len)).unsqueeze(0).expand(n_q, -1).to(device)
            out = m.decoder(suffix_emb, cache=cache, attention_mask=attn_mask, position_ids=positions,
                            use_cache=generate, output_attentions=True)
            base = 0  # output index of suffix token j is j
        else:
            if n_q != 1:
                raise ValueError("the naive path runs one query at a time")
            attn_mask = None
            out = m.decoder(torch.cat([prefix, suffix_emb], dim=1), use_cache=generate, output_attentions=True)
            base = p_len
        hidden, atts = out.last_hidden_state, out.attentions
        rows = torch.arange(n_q, device=device)
        if not generate:
            outcomes = []
            for i, s in enumerate(suffixes):
                answer = s[answer_starts[i]:]
                if self.ids.seg not in answer:
                    outcomes.append(LmOutcome(answer, None, None))
                    continue
                j = answer_starts[i] + answer.index(self.ids.seg)  # [SEG] position in the suffix (j ≥ 1)
                pos = torch.tensor([base + j - 1], device=device)  # the position that predicts [SEG]
                h = hidden[i, base + j - 1]
                p_seg = self._seg_prob(h)
                if p_seg < self.cfg.min_seg_prob:  # the model would not have said [SEG] here
                    outcomes.append(LmOutcome(answer, None, None, p_seg))
                    continue
                att = self._image_attention(atts, rows[i : i + 1], pos, image_slice)[0]
                outcomes.append(LmOutcome(answer, h.clone(), att, p_seg))
            return outcomes
        return self._greedy(out, hidden, atts, lens, base, p_len, image_slice, attn_mask)

    def _greedy(self, out, hidden, atts, lens, base, p_len, image_slice, attn_mask) -> list[LmOutcome]:
        """Greedy decoding continuing from the first forward; records the first [SEG]'s hidden state."""
        m, device = self.model, self.model.device
        n_q = hidden.shape[0]
        rows = torch.arange(n_q, device=device)
        pos = (base + lens - 1).to(device)  # last real token of each row
        step_hidden = hidden[rows, pos]
        step_att = self._image_attention(atts, rows, pos, image_slice)
        cache = out.cache
        answers: list[list[int]] = [[] for _ in range(n_q)]
        seg_h: list[torch.Tensor | None] = [None] * n_q
        seg_a: list[torch.Tensor | None] = [None] * n_q
        seg_p: list[float | None] = [None] * n_q
        done = torch.zeros(n_q, dtype=torch.bool)
        for step in range(self.cfg.max_new_tokens):
            logits = m.logits(step_hidden)
            nxt = logits.argmax(dim=-1).cpu()
            for i in range(n_q):
                if done[i]:
                    continue
                tok = int(nxt[i])
                if self.ids.eos is not None and tok == self.ids.eos:
                    done[i] = True
                    continue
                answers[i].append(tok)
                if tok == self.ids.seg and seg_h[i] is None:
                    seg_h[i], seg_a[i] = step_hidden[i].clone(), step_att[i].clone()
                    seg_p[i] = float(torch.softmax(logits[i].float(), dim=-1)[self.ids.seg])
            if bool(done.all()) or step == self.cfg.max_new_tokens - 1:
                break
            positions = (p_len + lens + step).unsqueeze(1).to(device)
            if attn_mask is not None:
                attn_mask = torch.cat([attn_mask, torch.ones(n_q, 1, dtype=torch.bool, device=device)], dim=1)
            out = m.decoder(m.embed(nxt.unsqueeze(1)), cache=cache, attention_mask=attn_mask,
                            position_ids=positions, use_cache=True, output_attentions=True)
            cache = out.cache
            step_hidden = out.last_hidden_state[:, -1]
            last = torch.full((n_q,), out.last_hidden_state.shape[1] - 1, device=device)
            step_att = self._image_attention(out.attentions, rows, last, image_slice)
        return [LmOutcome(a, h, att, p) for a, h, att, p in zip(answers, seg_h, seg_a, seg_p, strict=True)]

    # --- masks ------------------------------------------------------------------------------------
    @torch.inference_mode()
    def decode(self, enc: ViewEncoding, seg_hidden: torch.Tensor) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(n,H) [SEG] hidden states → masks (n,Hc,Wc) bool, embeddings (n,out) f32, confidences (n,) f32."""
        m = self.model
        emb = m.seg_projection(seg_hidden)
        low_res, iou = m.decode_masks(enc.sam_embedding, emb)
        si = enc.sam_input
        logits = postprocess_masks(low_res, si.input_size, si.original_size, m.arch.sam.image_size)
        return ((logits[:, 0] > 0).cpu().numpy(), emb.float().cpu().numpy(), iou.float().cpu().numpy())

    @torch.inference_mode()
    def image_features(self, enc: ViewEncoding) -> np.ndarray:
        """SAM image embedding over the un-padded image, average-pooled to feature_pool² → (C,p,p) f32."""
        emb = enc.sam_embedding
        rows, cols = valid_embedding_cells(enc.sam_input.input_size, self.model.arch.sam.image_size, emb.shape[-1])
        pooled = F.adaptive_avg_pool2d(emb[..., :rows, :cols].float(), self.cfg.feature_pool)
        return pooled[0].cpu().numpy()

    # --- one view ---------------------------------------------------------------------------------
    def segment(self, color: np.ndarray, texts: list[str], mode: str | None = None
                ) -> tuple[list[QueryOutput], np.ndarray | None]:
        """All queries on one view. ``mode``: "shared" (encodings once, LM prefix KV once, batched suffixes),
        "cached" (CLIP/SAM encodings once per view, every query's full prompt through the LM on its own: the
        obvious intermediate) or "naive" (everything per query, the released code); None = "shared" or
        "naive" per ``cfg.shared_encodings``."""
        mode = mode or ("shared" if self.cfg.shared_encodings else "naive")
        if mode not in SEGMENT_MODES:
            raise ValueError(f"segment mode must be one of {SEGMENT_MODES}, got {mode!r}")
        prompts = [self.prompt_tokens(t) for t in texts]
        starts = [self.answer_start(t) for t in texts]
        if mode == "cached":
            enc, outputs = self.encode_view(color), []
            for prompt, start in zip(prompts, starts, strict=True):
                prefix = self.prefix_embeds(enc, prompt.prefix)
                img = slice(len(prompt.prefix), prefix.shape[1])
                outputs += self._finish(enc, self.run_lm(prefix, img, [prompt.suffix], [start]))
        elif mode == "shared":
            enc = self.encode_view(color)
            lm: list[LmOutcome] = []
            bs = self.cfg.query_batch_size
            if any(p.prefix != prompts[0].prefix for p in prompts):
                raise ValueError("prompt template puts query text before the image; prefix cannot be shared")
            if prompts:
                prefix = self.prefix_embeds(enc, prompts[0].prefix)  # identical for every query
                img = slice(len(prompts[0].prefix), prefix.shape[1])
                kv = self.prefix_cache(prefix)
            for b in range(0, len(prompts), bs):
                chunk = [p.suffix for p in prompts[b : b + bs]]
                lm += self.run_lm(prefix, img, chunk, starts[b : b + bs], prefix_kv=kv)
            outputs = self._finish(enc, lm)
        else:
            enc, outputs = None, []
            for prompt, start in zip(prompts, starts, strict=True):
                enc = self.encode_view(color)
                prefix = self.prefix_embeds(enc, prompt.prefix)
                img = slice(len(prompt.prefix), prefix.shape[1])
                outputs += self._finish(enc, self.run_lm(prefix, img, [prompt.suffix], [start]))
        feats = None
        if self.cfg.image_features:
            feats = self.image_features(enc if enc is not None else self.encode_view(color))
        return outputs, feats

    def _finish(self, enc: ViewEncoding, lm: list[LmOutcome]) -> list[QueryOutput]:
        """SAM decoding for every query that produced [SEG] (one batched call), plus bookkeeping."""
        h, w = enc.sam_input.original_size
        out_dim = self.model.arch.out_dim
        with_seg = [i for i, o in enumerate(lm) if o.seg_hidden is not None]
        masks = embs = confs = None
        if with_seg:
            masks, embs, confs = self.decode(enc, torch.stack([lm[i].seg_hidden for i in with_seg]))
        results = []
        for i, o in enumerate(lm):
            text = self.tokenizer.decode(o.answer_ids, skip_special_tokens=False).strip()
            if o.seg_hidden is None:
                results.append(QueryOutput(False, text, np.zeros((h, w), bool), np.zeros(out_dim, np.float32),
                                           0.0, 0.0, None, o.answer_ids, o.seg_prob))
                continue
            k = with_seg.index(i)
            att = o.image_attention.float()
            amap = None
            if self.cfg.attention_map:
                side = int(round(att.numel() ** 0.5))
                amap = att.reshape(side, side).cpu().numpy() if side * side == att.numel() else att.cpu().numpy()[None]
            results.append(QueryOutput(True, text, masks[k], embs[k], float(confs[k]), float(att.sum()), amap,
                                       o.answer_ids, o.seg_prob))
        return results
