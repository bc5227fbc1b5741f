"""One seed of the controlled benchmark: the variants, the config, Stage 1 per view count, training each
variant and scoring every row on the same held-out queries (``mllm3d.pipeline.benchmark`` pools seeds)."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from rich.console import Console

from mllm3d.pipeline.evaluate import EvalResult, NetworkMethod, ProjectionBaseline, evaluate
from mllm3d.pipeline.report import machine_summary
from mllm3d.pipeline.steps import synthetic_stage1, train_or_reuse
from mllm3d.shared.errors import BadInputError
from mllm3d.shared.store import open_store
from mllm3d.stage1_pseudolabel.synthetic_config import PRESETS
from mllm3d.stage2_train3d.fusion import FusionConfig


@dataclass(frozen=True)
class Variant:
    """One trained row of the table: a Stage 2 config (configs/train/<config>.yaml) and a Stage 1 view count."""

    key: str  # row letter
    label: str
    views: int  # which Stage 1 store it trains on
    config: str = "default"  # the variant's packaged Stage 2 recipe (each is default.yaml + one change)
    store: str = ""  # the Stage 1 store it trains on: "" = the stand-in's failure model, "clean" = no failures
    pool: int | None = None  # Stage 1 draws the k views per query from a per-scene pool of this many frames

    @property
    def stage1(self) -> tuple[int, int | None]:
        """The (view count, pool) of the failure-model Stage 1 store this row trains and is scored on."""
        return self.views, self.pool


POOL_FRAMES = 6  # row (o)'s per-scene view pool, the pool of bench/bench_stage1_e2e.py (of 16 synthetic frames)
VARIANTS: tuple[Variant, ...] = (
    Variant("b", "w/o Token-for-Query", 4, "no_token_for_query"),
    Variant("c", "w/o spatial consistency", 4, "no_spatial"),
    Variant("d", "2 views", 2),
    Variant("e", "8 views", 8),
    Variant("f", "full (4 views)", 4),
    Variant("+", "w/o view filtering", 4, "no_view_filter"),
    Variant("p", "paper-literal L_spatial", 4, "spatial_paper"),  # not in the default rows (--variants ...,p)
    # (f) with Stage 1's pooled view sampling (view_pool): still 4 random views per query, drawn from 6 frames
    # per scene, so the shared engine reuses encodings across queries; on request (--variants ...,o)
    Variant("o", f"4 views per query from a per-scene pool of {POOL_FRAMES} frames", 4, pool=POOL_FRAMES),
    # bounds: trained on the clean stand-in's store (the same scenes and queries, failures switched off);
    # (g) also on the ground-truth 3D masks of its training scenes (BCE, with_labels.yaml): NOT label-free
    Variant("k", "clean pseudo-labels (bound: stand-in without failures)", 4, store="clean"),
    Variant("g", "clean pseudo-labels + ground-truth 3D masks (upper bound, not label-free)", 4, "with_labels",
            store="clean"),
)
GT_KEY = "g"  # the only row whose training reads ground truth (check_ground_truth_use, before any training)
BASELINE_KEY, BASELINE_LABEL = "a", "2D projection only"
FULL_KEY = "f"
# rows that need no training of their own: the union of the views (beside (a)), and the full network with
# test-time evidence fusion (beyond the paper; docs/evidence_fusion.md)
UNION_KEY, UNION_LABEL = "u", "2D projection, union of the views"
EVIDENCE_KEY, EVIDENCE_LABEL = "t", "full + test-view evidence (beyond the paper)"


def full_variant() -> Variant:
    return next(v for v in VARIANTS if v.key == FULL_KEY)


REUSED = " (reused)"  # suffix of a timing whose training run was reused from an earlier benchmark run
CLEAN_PRESET = "clean"  # the stand-in of the bound rows: every failure off
FEATURES = ("structured", "random_instance", "none")  # the stand-in's image features (docs/stand_in.md)

# Settings every variant shares on top of its YAML (the protocol's split is added by train_overrides)
BENCH_TRAIN: tuple[str, ...] = ("trainer.log_every_n_steps=10", "trainer.limit_val_batches=0", "data.val_fraction=0.3")


@dataclass
class BenchmarkConfig:
    """Everything that determines the benchmark's numbers (written next to the results)."""

    num_scenes: int = 40  # heldout: 28 train / 12 scored scenes (data.val_fraction 0.3)
    seed: int = 1  # the seed of one run: synthetic scenes, view sampling, backend and training
    seeds: tuple[int, ...] = (1, 2, 3)  # run_benchmark runs every seed (seed 0 tuned default.yaml)
    views: tuple[int, ...] = (4,)  # Stage 1 view counts; (d) needs 2 and (e) 8 (added by the CLI)
    full_views: int = 4
    failures: dict[str, Any] = field(default_factory=lambda: {"preset": "lisa_like"})  # docs/stand_in.md
    features: str = "structured"  # the stand-in's image features for L_spatial: structured | random_instance | none
    config_dir: str = ""  # where the variant YAMLs live ("" = the packaged recipes, mllm3d/configs/train)
    train_overrides: tuple[str, ...] = BENCH_TRAIN
    # 6 epochs x 5 variants: one seed ~16 min on a free core (measured: Stage 1 of 40 scenes 177 s and 2 epochs of
    # (f) 81 s on a shared, loaded CPU at 57 % of a core); 3 seeds ~50 min, under make eval's 90 min
    epochs: int = 6
    protocol: str = "heldout"  # heldout | transductive
    variants: tuple[str, ...] = ("b", "c", "f", "k", "g")  # d, e (k = 2 / 8 stores), +, p on request

    def validate(self) -> None:
        if self.features not in FEATURES:
            raise BadInputError(f"benchmark features must be one of {list(FEATURES)}, got {self.features!r}")
        if self.protocol not in ("transductive", "heldout"):
            raise BadInputError(f"benchmark protocol must be transductive|heldout, got {self.protocol!r}")
        if self.full_views not in self.views:
            raise BadInputError(f"benchmark: full_views {self.full_views} must be one of views {self.views}")
        needed = {v.views for v in VARIANTS if v.key in self.variants}
        if any(v.store == "clean" and v.views != self.full_views for v in VARIANTS if v.key in self.variants):
            raise BadInputError(f"benchmark: the clean-store rows need k = full_views ({self.full_views})")
        if not needed <= set(self.views):
            raise BadInputError(f"benchmark: variants need view counts {sorted(needed)}, views are {self.views}")
        for v in VARIANTS:
            if v.key in self.variants and not self.variant_config(v).is_file():
                raise BadInputError(f"benchmark: training config {self.variant_config(v)} for row ({v.key}) not found")
        if self.num_scenes < 2 and self.protocol == "heldout":
            raise BadInputError("benchmark: the heldout protocol needs at least 2 scenes")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise BadInputError(f"benchmark: seeds must be distinct and at least one, got {self.seeds}")

    def with_needed_views(self) -> BenchmarkConfig:
        """A copy whose Stage 1 view counts are full_views plus what the requested variants train on."""
        need = {self.full_views, *(v.views for v in VARIANTS if v.key in self.variants)}
        return replace(self, views=tuple(sorted(need)))

    def variant_config(self, variant: Variant) -> Path:
        from mllm3d.shared.config_io import packaged_dir

        return Path(self.config_dir or packaged_dir("train")) / f"{variant.config}.yaml"

    @classmethod
    def quick(cls) -> BenchmarkConfig:
        """The full-size benchmark on one seed (no spread over seeds; CIs over its queries only)."""
        full = cls()
        return cls(seeds=full.seeds[:1], seed=full.seeds[0])

    @classmethod
    def smoke(cls) -> BenchmarkConfig:
        """2 scenes, 1 epoch, one seed: for tests and smoke runs (numbers meaningless)."""
        return cls(num_scenes=2, epochs=1, seeds=(1,), seed=1)


@dataclass
class BenchmarkResult:
    """Per-row summaries plus everything needed to reproduce them."""

    config: BenchmarkConfig
    rows: dict[str, dict[str, float]]  # key -> summary (acc25, acc50, miou, ...)
    labels: dict[str, str]
    checkpoints: dict[str, str]
    num_queries: int
    seconds: dict[str, float]
    command: str
    date: str
    machine: str
    evals: dict[str, EvalResult] = field(default_factory=dict, repr=False)


# ---------------------------------------------------------------------------------------------- stages
def backend_config(cfg: BenchmarkConfig) -> dict[str, Any]:
    """The stand-in's config: the seed, the feature model (docs/stand_in.md, "Image features"), the failures."""
    feats: dict[str, Any] = {"image_features": False} if cfg.features == "none" else {
        "image_features": True, "feature_model": cfg.features}
    return {"seed": cfg.seed, **feats, **cfg.failures}


def clean_backend_config(cfg: BenchmarkConfig) -> dict[str, Any]:
    """The bound rows' stand-in: ``backend_config`` with every failure off (preset ``clean``); its zero rates
    are set explicitly, so rates given in ``cfg.failures`` cannot switch a failure back on."""
    return {**backend_config(cfg), **PRESETS[CLEAN_PRESET], "preset": CLEAN_PRESET}


def run_stage1(cfg: BenchmarkConfig, out: Path, views: int, console: Console, clean: bool = False,
               pool: int | None = None) -> Path:
    """Stage 1 (synthetic backend) for every scene and query with k = ``views``; reuses a finished store.
    ``clean``: the stand-in with every failure switched off (``clean_backend_config``), for the bound rows;
    ``pool``: the k views drawn from a per-scene pool of that many frames (row (o))."""
    backend = clean_backend_config(cfg) if clean else backend_config(cfg)
    name = f"store-k{views}" + ("-clean" if clean else "") + (f"-pool{pool}" if pool else "") + ".zarr"
    return synthetic_stage1(cfg.num_scenes, cfg.seed, out / name, views, backend, console, view_pool=pool)


def check_ground_truth_use(cfg: BenchmarkConfig) -> None:
    """Only row (g) may train with ground-truth 3D masks, and (g) must: checked on the loaded configs."""
    from mllm3d.stage2_train3d.config import load_config

    for v in VARIANTS:
        if v.key in cfg.variants:
            uses = load_config(cfg.variant_config(v), train_overrides(cfg, v)).loss.with_labels
            if uses != (v.key == GT_KEY):
                raise BadInputError(f"benchmark: row ({v.key}) config {cfg.variant_config(v)} has loss.with_labels="
                                    f"{uses}; only row ({GT_KEY}) may train on ground truth")


def train_overrides(cfg: BenchmarkConfig, variant: Variant) -> list[str]:
    """Shared benchmark settings, the protocol's split, then the variant's one difference."""
    sets = [*cfg.train_overrides, f"optim.epochs={cfg.epochs}", f"trainer.seed={cfg.seed}", f"data.split_seed={cfg.seed}"]
    if cfg.protocol == "transductive":
        sets.append("data.val_fraction=0")
    return sets


def run_variant(cfg: BenchmarkConfig, variant: Variant, store: Path, out: Path) -> tuple[str, bool]:
    """Train one variant (or reuse its finished run with the same settings): (its checkpoint, reused)."""
    slug = "".join(c if c.isalnum() else "_" for c in variant.label).strip("_")
    run_dir = out / "runs" / f"{'plus' if variant.key == '+' else variant.key}-{slug}"
    return train_or_reuse(cfg.variant_config(variant), store, run_dir, train_overrides(cfg, variant))


def eval_pairs(cfg: BenchmarkConfig, store: Path) -> list[tuple[str, str]]:
    """The scored pairs: all (transductive) or the DataModule's val split (heldout)."""
    s = open_store(store, "r")
    if cfg.protocol == "transductive":
        return s.complete_pairs()
    from mllm3d.stage2_train3d.config import load_config
    from mllm3d.stage2_train3d.datamodule import split_pairs

    full = full_variant()
    data = load_config(cfg.variant_config(full), train_overrides(cfg, full)).data
    return sorted(split_pairs(s.complete_pairs(), data)[1])


def run_seed(cfg: BenchmarkConfig, out: Path, console: Console | None = None, command: str = "") -> BenchmarkResult:
    """One seed (``cfg.seed``): Stage 1 per view count, train every variant, evaluate all rows on the same queries."""
    cfg.validate()
    check_ground_truth_use(cfg)  # before any work: only (g) reads ground truth
    console = console or Console()
    out.mkdir(parents=True, exist_ok=True)
    (out / "benchmark-config.json").write_text(json.dumps(asdict(cfg), indent=2))
    seconds: dict[str, float] = {}
    stores: dict[tuple[int, int | None], Path] = {}  # (views, pool) -> failure-model store
    pooled = sorted({v.stage1 for v in VARIANTS if v.key in cfg.variants and v.pool})
    for k, pool in [(k, None) for k in cfg.views] + pooled:
        name = f"stage1 k={k}" + (f" pool={pool}" if pool else "")
        t0 = time.perf_counter()
        with console.status(f"Stage 1: {cfg.num_scenes} synthetic scenes, {k} views per query"
                            + (f" from a per-scene pool of {pool}" if pool else "")):
            stores[k, pool] = run_stage1(cfg, out, k, console, pool=pool)
        seconds[name] = time.perf_counter() - t0
        console.print(f"Stage 1, {name[7:]}: {stores[k, pool]} ({seconds[name]:.0f} s)")
    full_store = stores[cfg.full_views, None]
    clean_store: Path | None = None
    if any(v.store == "clean" for v in VARIANTS if v.key in cfg.variants):
        t0 = time.perf_counter()
        with console.status(f"Stage 1 (clean stand-in): {cfg.num_scenes} scenes, {cfg.full_views} views per query"):
            clean_store = run_stage1(cfg, out, cfg.full_views, console, clean=True)
        seconds[f"stage1 clean k={cfg.full_views}"] = time.perf_counter() - t0
    for other in ([clean_store] if clean_store else []) + [p for (_, pool), p in stores.items() if pool]:
        if open_store(other, "r").complete_pairs() != open_store(full_store, "r").complete_pairs():
            raise BadInputError(f"benchmark: {other} and {full_store} hold different queries; delete both and rerun")
    pairs = eval_pairs(cfg, full_store)
    if not pairs:
        raise BadInputError(f"benchmark: no queries to evaluate in {full_store}")

    rows: dict[str, dict[str, float]] = {}
    labels = {BASELINE_KEY: BASELINE_LABEL}
    checkpoints: dict[str, str] = {}
    evals: dict[str, EvalResult] = {}
    base = evaluate(open_store(full_store, "r"), pairs,
                    [ProjectionBaseline(FusionConfig(), name=BASELINE_LABEL)])
    evals[BASELINE_KEY] = base
    rows[BASELINE_KEY] = row_summary(base)
    union = evaluate(open_store(full_store, "r"), pairs,
                     [ProjectionBaseline(FusionConfig(vote_threshold=1e-6), name=UNION_LABEL)])
    evals[UNION_KEY], rows[UNION_KEY], labels[UNION_KEY] = union, row_summary(union), UNION_LABEL
    for variant in [v for v in VARIANTS if v.key in cfg.variants]:
        t0 = time.perf_counter()
        with console.status(f"Stage 2: training ({variant.key}) {variant.label}, {cfg.epochs} epochs"):
            train_store = clean_store if variant.store == "clean" and clean_store else stores[variant.stage1]
            ckpt, reused = run_variant(cfg, variant, train_store, out)
        seconds[f"train {variant.key}" + (REUSED if reused else "")] = time.perf_counter() - t0
        method = NetworkMethod.from_checkpoint(variant.label, ckpt)
        res = evaluate(open_store(stores[variant.stage1], "r"), pairs, [method])
        evals[variant.key] = res
        rows[variant.key] = row_summary(res)
        labels[variant.key] = variant.label
        checkpoints[variant.key] = ckpt
        if variant.key == FULL_KEY:
            from mllm3d.pipeline.evidence import EvidenceFusionMethod

            ev = evaluate(open_store(stores[variant.stage1], "r"), pairs,
                          [EvidenceFusionMethod(EVIDENCE_LABEL, method.predictor, checkpoint=ckpt)])
            evals[EVIDENCE_KEY], rows[EVIDENCE_KEY], labels[EVIDENCE_KEY] = ev, row_summary(ev), EVIDENCE_LABEL
        s = rows[variant.key]
        console.print(
            f"({variant.key}) {variant.label}: Acc@0.25 {100 * s['acc25']:.2f}  Acc@0.5 {100 * s['acc50']:.2f}  "
            f"mIoU {100 * s['miou']:.2f}  ({time.perf_counter() - t0:.0f} s{REUSED if reused else ''}, seed {cfg.seed})"
        )
    result = BenchmarkResult(
        config=cfg,
        rows=rows,
        labels=labels,
        checkpoints=checkpoints,
        num_queries=len(pairs),
        seconds=seconds,
        command=command,
        date=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        machine=machine_summary(),
        evals=evals,
    )
    (out / "seed-results.json").write_text(json.dumps(seed_dict(result), indent=2))
    return result


def row_summary(res: EvalResult) -> dict[str, float]:
    """A row's Acc@k / mIoU summary plus its IoU on the target points the views see / do not see."""
    return {**res.rows[0].summary, **res.rows[0].seen_split}


def ordered_keys(result: Any) -> list[str]:
    """Row keys of a result (anything with ``rows``) in table order: (a), (u), the label-free variants,
    (t), then the bounds (k), (g)."""
    bounds = [v.key for v in VARIANTS if v.store == "clean"]
    order = [BASELINE_KEY, UNION_KEY, *[v.key for v in VARIANTS if v.key not in bounds], EVIDENCE_KEY, *bounds]
    return [k for k in order if k in result.rows]


def finite(row: dict[str, float]) -> dict[str, float | None]:
    """A row for JSON: NaN (a metric with no query to average, e.g. no unseen target point) as null."""
    return {k: (None if v != v else v) for k, v in row.items()}


def seed_dict(result: BenchmarkResult) -> dict[str, Any]:
    """One seed's rows, checkpoints and timings (``seed<s>/seed-results.json``)."""
    return {
        "config": asdict(result.config),
        "rows": {k: {"label": result.labels[k], **finite(result.rows[k])} for k in ordered_keys(result)},
        "checkpoints": result.checkpoints,
        "num_queries": result.num_queries,
        "seconds": result.seconds,
    }


