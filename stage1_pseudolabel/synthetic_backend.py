"""The ``synthetic`` segmenter: a stand-in for the 2D MLLM on synthetic scenes.

It is **not** a model. It reads the ground truth a synthetic view carries (``View.instance_map``)
and returns the query target's visible mask, corrupted by the failure modes the MLLM-For3D paper
describes for LISA, each with a configurable rate:

- *missed view* (``miss_rate``): no ``[SEG]`` is generated -> ``has_seg=False``, zero mask, zero
  embedding, confidence 0;
- *hallucination* (``hallucination_rate``; ``absent_hallucination_rate`` when the target is not
  visible in the view): the mask of another visible object, preferring objects near the target,
  with that object's embedding instead of the query's;
- *boundary noise* (``boundary_rate``): the mask is eroded, dilated, or its pixels within
  ``boundary_width`` of the boundary are flipped at random;
- *partial mask* (``partial_rate``): a chunk (a random half-plane cut removing
  ``partial_fraction`` of it) is dropped.

``[SEG]`` embeddings describe *what was segmented*, as LISA's do: each object has a unit vector
``normalise(w_cat·u(category) + w_color·u(colour) + w_inst·u(scene, object))``, where the category and
colour directions are shared by every scene (seeded by ``seed`` only) and the instance direction is
the object's own. A correct view returns its target's vector plus a query-specific direction
(``query_weight``, the wording) plus Gaussian noise; a hallucinated view returns the *distractor's*
vector instead. So queries about the same kind of object get similar embeddings in every scene, and a
3D network can learn to map them to points (without attributes, e.g. in hand-made test views, only
the instance direction is used). Confidence (predicted-IoU stand-in) and attention are noisy but
higher for correct views on average. With
``image_features: true`` every view also gets query-independent features (C, h, w) of ``feature_model``
(synthetic_features): ``random_instance`` (default; a random unit vector per instance) or ``structured``
(shared category / colour / surface-part directions plus a small instance term), rendered through the
instance map, average-pooled by ``feature_stride`` and noised - the shape Stage 2's spatial loss expects.

Presets (``preset``, synthetic_config, docs/stand_in.md): ``easy`` is the model above with failures independent per
(query, view); ``lisa_like`` (the benchmark's default) adds a per-query *misreading* (``misread_rate``:
the same wrong object in every view where it is visible), answers in most views without the target,
a preference for distractors similar to the target (``similar_preference``), hallucinated embeddings
that keep part of the query's direction (``hallucination_mix``) and overlapping confidences
(``conf_correct`` / ``conf_wrong``; AUROC of α correct vs wrong ≈ 0.69).

Determinism: every random draw for one (query, view) comes from a generator seeded by a hash of
(seed, scene_id, frame_id, query_id), and image features from (seed, scene_id, frame_id), so
outputs do not depend on which other queries or views are processed in the same call or shard.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from mllm3d.shared.errors import BadInputError
from mllm3d.shared.scene import Query, View
from mllm3d.stage1_pseudolabel.mask_ops import average_pool, resize_nearest
from mllm3d.stage1_pseudolabel.seeding import rng_for, unit_vector
from mllm3d.stage1_pseudolabel.segmenter import SegmentationResult, ViewSegmentation
from mllm3d.stage1_pseudolabel.synthetic_config import PRESETS, SyntheticBackendConfig
from mllm3d.stage1_pseudolabel.synthetic_failures import (
    boundary_noise,
    drop_chunk,
    object_stats,
    pick_distractor,
)
from mllm3d.stage1_pseudolabel.synthetic_features import (
    random_instance_features,
    structured_features,
    surface_parts,
)

__all__ = ["ANSWER_MISS", "ANSWER_SEG", "PRESETS", "Outcome", "SyntheticBackendConfig", "SyntheticSegmenter",
           "build"]  # PRESETS and SyntheticBackendConfig re-exported from synthetic_config

ANSWER_SEG = "Sure, it is [SEG]."
ANSWER_MISS = "Sorry, I cannot find it in this image."


@dataclass
class Outcome:
    """Which failure modes were applied to one (query, view) - for tests and diagnostics."""

    missed: bool = False
    hallucinated_id: int | None = None  # the object segmented instead of the target
    boundary: str | None = None  # "erode" | "dilate" | "flip"
    partial: bool = False
    target_visible: bool = True


class SyntheticSegmenter:
    """Ground truth plus MLLM-like failure modes; see the module docstring."""

    name = "synthetic"

    def __init__(self, config: SyntheticBackendConfig) -> None:
        self.config = config
        self.embed_dim = config.embed_dim

    def config_dict(self) -> dict[str, Any]:
        d = asdict(self.config)
        for name in ("partial_fraction", "conf_correct", "conf_wrong", "feature_weights"):
            d[name] = list(d[name])
        return d

    # ------------------------------------------------------------------ public API
    def segment_view(self, view: View, queries: list[Query]) -> ViewSegmentation:
        """Segment every query in one view (results in the order of ``queries``)."""
        labels = self._instance_map(view, queries)
        stats = object_stats(labels)
        results = [self.segment_query(view, q, labels, stats)[0] for q in queries]
        feats = None
        if self.config.image_features:
            scene_id = queries[0].scene_id if queries else ""
            feats = self.image_features(labels, scene_id, view.frame_id, view)
        return ViewSegmentation(results=results, image_features=feats)

    def segment_query(
        self,
        view: View,
        query: Query,
        labels: np.ndarray | None = None,
        stats: dict[int, tuple[int, np.ndarray]] | None = None,
    ) -> tuple[SegmentationResult, Outcome]:
        """One query in one view, with the failure modes that were applied."""
        cfg = self.config
        if labels is None:
            labels = self._instance_map(view, [query])
        if stats is None:
            stats = object_stats(labels)
        if query.target_ids is None:
            raise BadInputError(
                f"query {query.scene_id}/{query.query_id}: the synthetic backend needs the query's target_ids "
                "(it segments the ground truth); this query has none"
            )
        rng = rng_for(cfg.seed, query.scene_id, view.frame_id, query.query_id)
        # draw every random number in a fixed order so one mode's rate never shifts another's draws
        u_miss, u_hall, u_bound, u_part = rng.random(4)
        targets = {int(t) for t in query.target_ids}
        truth = np.isin(labels, list(targets)) if targets else np.zeros(labels.shape, dtype=bool)
        out = Outcome(target_visible=bool(truth.any()))
        qvec = self.query_vector(view, query)

        if u_miss < cfg.miss_rate:
            out.missed = True
            res = SegmentationResult(
                mask=np.zeros(labels.shape, dtype=bool),
                seg_embedding=np.zeros(cfg.embed_dim, dtype=np.float32),
                confidence=0.0,
                attention=float(np.clip(rng.normal(0.2, 0.1), 0.0, 1.0)),
                has_seg=False,
                text=ANSWER_MISS,
                attention_map=self._attention_map(None, labels.shape, rng) if cfg.attention_maps else None,
            )
            return res, out

        rate = cfg.hallucination_rate if out.target_visible else cfg.absent_hallucination_rate
        mask = truth
        vec = qvec
        misread = self.misread_object(view, query)
        similar = self._similarity(view, targets) if cfg.similar_preference > 0 else None
        other: int | None = None
        if misread is not None and stats.get(misread, (0,))[0] >= cfg.min_object_pixels:
            other = misread  # the query's misreading, visible here: the same wrong object in every view
        elif u_hall < rate:
            other = pick_distractor(stats, targets, truth, rng, cfg.min_object_pixels, similar,
                                     cfg.similar_preference)
        if other is not None:
            out.hallucinated_id = other
            mask = labels == other
            vec = self.object_vector(view, query.scene_id, other)
            if cfg.hallucination_mix < 1.0:  # LISA's [SEG] token still reads the query's words
                vec = cfg.hallucination_mix * vec + (1.0 - cfg.hallucination_mix) * qvec
                vec = vec / max(float(np.linalg.norm(vec)), 1e-12)
        if mask.any() and u_bound < cfg.boundary_rate:
            mask, out.boundary = boundary_noise(mask, rng, cfg.boundary_width)
        if mask.any() and u_part < cfg.partial_rate:
            mask = drop_chunk(mask, rng, cfg.partial_fraction)
            out.partial = True

        noise = rng.standard_normal(cfg.embed_dim) / np.sqrt(cfg.embed_dim)
        emb = (vec + cfg.embedding_noise * noise).astype(np.float32)
        conf, att = self._scores(out, mask.any(), rng)
        res = SegmentationResult(
            mask=mask,
            seg_embedding=emb,
            confidence=conf,
            attention=att,
            has_seg=True,
            text=ANSWER_SEG,
            attention_map=self._attention_map(mask, labels.shape, rng) if cfg.attention_maps else None,
        )
        return res, out

    def misread_object(self, view: View, query: Query) -> int | None:
        """The object a misread query is taken for (None when this query is read right): one draw per
        query from a generator of (seed, scene, query), among the scene's other coloured objects, weighted
        by similarity to the target (shared category / colour, ``similar_preference``)."""
        cfg = self.config
        if cfg.misread_rate <= 0.0 or not view.instance_attributes:
            return None
        rng = rng_for(cfg.seed, query.scene_id, "misread", query.query_id)
        u, pick = rng.random(2)
        targets = {int(t) for t in query.target_ids or []}
        cands = sorted(i for i, (_, colour) in view.instance_attributes.items() if colour and int(i) not in targets)
        if u >= cfg.misread_rate or not cands:
            return None
        sim = self._similarity(view, targets)
        w = np.array([1.0 + cfg.similar_preference * sim.get(i, 0) for i in cands])
        return int(cands[int(np.searchsorted(np.cumsum(w / w.sum()), pick, side="right").clip(0, len(cands) - 1))])

    @staticmethod
    def _similarity(view: View, targets: set[int]) -> dict[int, int]:
        """Object id -> how many of (category, colour) it shares with a target (0, 1 or 2)."""
        attrs = view.instance_attributes or {}
        tgt = [attrs[t] for t in targets if t in attrs]
        return {int(i): max((int(c == tc) + int(bool(col) and col == tcol) for tc, tcol in tgt), default=0)
                for i, (c, col) in attrs.items()}

    def object_vector(self, view: View, scene_id: str, instance_id: int) -> np.ndarray:
        """Unit vector of one object: shared category and colour directions plus its own direction."""
        cfg = self.config
        category, color = (view.instance_attributes or {}).get(int(instance_id), ("", ""))
        v = cfg.instance_weight * unit_vector(cfg.embed_dim, cfg.seed, scene_id, "object", int(instance_id))
        if category:
            v = v + cfg.category_weight * unit_vector(cfg.embed_dim, cfg.seed, "category", category)
        if color:
            v = v + cfg.color_weight * unit_vector(cfg.embed_dim, cfg.seed, "color", color)
        n = float(np.linalg.norm(v))
        if n == 0.0:  # no attributes and instance_weight 0
            v, n = unit_vector(cfg.embed_dim, cfg.seed, scene_id, "object", int(instance_id)), 1.0
        return v / n

    def query_vector(self, view: View, query: Query) -> np.ndarray:
        """The embedding direction of a correct answer: the target objects' mean vector plus the query's
        own direction (``query_weight``), normalised; a zero-target query has only its own direction."""
        cfg = self.config
        own = unit_vector(cfg.embed_dim, cfg.seed, query.scene_id, "query", query.query_id)
        targets = query.target_ids or []
        if not targets:
            return own
        v = np.mean([self.object_vector(view, query.scene_id, t) for t in targets], axis=0)
        v = v / max(float(np.linalg.norm(v)), 1e-12) + cfg.query_weight * own
        return v / float(np.linalg.norm(v))

    def image_features(self, labels: np.ndarray, scene_id: str, frame_id: int, view: View | None = None) -> np.ndarray:
        """Query-independent (C, h, w) float32 features of ``feature_model``, pooled, plus noise. The
        ``structured`` model needs the view (its depth, pose and instance attributes)."""
        cfg = self.config
        if cfg.feature_model == "structured":
            if view is None:
                raise BadInputError("synthetic backend: feature_model 'structured' needs the view (depth, pose)")
            parts = resize_nearest(surface_parts(view.depth, view.intrinsic, view.pose), labels.shape)
            per_pixel = structured_features(labels, parts, view.instance_attributes or {}, cfg.feature_weights,
                                            cfg.feature_dim, cfg.seed, scene_id)
        else:
            per_pixel = random_instance_features(labels, cfg.feature_dim, cfg.seed, scene_id)
        pooled = average_pool(np.moveaxis(per_pixel, -1, 0), cfg.feature_stride)  # (C, h, w)
        rng = rng_for(cfg.seed, scene_id, frame_id, "image_features")
        pooled += cfg.feature_noise * rng.standard_normal(pooled.shape).astype(np.float32)
        return pooled.astype(np.float32)

    # ------------------------------------------------------------------ helpers
    def _instance_map(self, view: View, queries: list[Query]) -> np.ndarray:
        if view.instance_map is None:
            scene = queries[0].scene_id if queries else "?"
            raise BadInputError(
                f"scene {scene} frame {view.frame_id}: view has no instance_map; the synthetic backend only runs "
                "on synthetic scenes (use --backend lisa for real data)"
            )
        labels = np.asarray(view.instance_map)
        if labels.ndim != 2:
            raise BadInputError(
                f"frame {view.frame_id}: instance_map must be (H, W), got shape {labels.shape}"
            )
        return resize_nearest(labels.astype(np.int32, copy=False), view.color_size)

    def _scores(self, out: Outcome, nonempty: bool, rng: np.random.Generator) -> tuple[float, float]:
        """Confidence and attention: informative (higher when correct) but noisy."""
        cw, cc = self.config.conf_wrong, self.config.conf_correct
        if out.hallucinated_id is not None:
            conf, att = rng.normal(*cw), rng.normal(0.45, 0.15)
        elif not nonempty:  # nothing visible, nothing segmented
            conf, att = rng.normal(0.3, 0.1), rng.normal(0.3, 0.1)
        else:
            conf = rng.normal(*cc) - (0.05 if out.boundary else 0.0) - (0.12 if out.partial else 0.0)
            att = rng.normal(0.7, 0.15)
        return float(np.clip(conf, 0.0, 1.0)), float(np.clip(att, 0.0, 1.0))

    def _attention_map(
        self, mask: np.ndarray | None, shape: tuple[int, int], rng: np.random.Generator
    ) -> np.ndarray:
        """Coarse (h, w) attention summing to 1: the pooled mask plus noise (pure noise without a mask)."""
        base = np.zeros(shape, np.float32) if mask is None else mask.astype(np.float32)
        a = average_pool(base, self.config.attention_stride)
        a += 0.1 * rng.random(a.shape).astype(np.float32)
        return (a / max(float(a.sum()), 1e-6)).astype(np.float32)


def build(config: dict[str, Any]) -> SyntheticSegmenter:
    """Backend factory registered as ``synthetic`` in :data:`mllm3d.stage1_pseudolabel.segmenter.BACKENDS`."""
    return SyntheticSegmenter(SyntheticBackendConfig.from_dict(dict(config or {})))
