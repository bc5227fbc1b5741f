"""Queries about a synthetic layout whose targets are unique by construction.

Templates: explicit ("the red chair", "the bed"), spatial ("the chair closest to the window",
"the plant next to the bed", "the largest table") and implicit (an intent mapped to categories,
"something I can sit on near the window"). A candidate is kept only when exactly one object fits.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mllm3d.shared.scene import Query
from mllm3d.shared.synthetic_layout import Layout, SyntheticConfig, SynthObject, footprint_gap

# intent -> (categories that satisfy it, phrasings)
AFFORDANCES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "sit": (("chair", "sofa", "stool"), ("something I can sit on", "a place to sit down")),
    "books": (("bookshelf",), ("where could I put my books", "a place to store my books")),
    "light": (("lamp",), ("something that gives light", "what I can switch on to read at night")),
    "sleep": (("bed",), ("where could I sleep", "somewhere to lie down for the night")),
    "watch": (("tv",), ("something to watch the news on", "what I can use to watch a movie")),
    "work": (("desk",), ("where could I work on my laptop", "somewhere to write a letter")),
    "eat": (("table",), ("where could we have dinner", "somewhere to put the plates for a meal")),
    "water": (("plant",), ("something that needs watering", "what I should water every week")),
    "trash": (("trash can",), ("where can I throw away this paper", "where does the rubbish go")),
    "store": (("cabinet",), ("where could I store my things", "something with doors to keep things in")),
}


# ----------------------------------------------------------------------------------------------
# Queries
# ----------------------------------------------------------------------------------------------


def _window_distance(obj: SynthObject, windows: list[SynthObject]) -> float:
    """xy distance between an object's footprint centre and the nearest window patch."""
    c = obj.center
    best = np.inf
    for w in windows:
        q = np.clip(c[:2], w.lo[:2], w.hi[:2])
        best = min(best, float(np.hypot(*(c[:2] - q))))
    return best


@dataclass
class _Candidate:
    kind: str
    text: str
    target: int
    extra: dict


def _names(objects: list[SynthObject]) -> dict[int, str]:
    """A unique noun phrase for each object that has one: "the bed" or "the red chair"."""
    by_cat: dict[str, list[SynthObject]] = {}
    for o in objects:
        by_cat.setdefault(o.category, []).append(o)
    out: dict[int, str] = {}
    for cat, objs in by_cat.items():
        if len(objs) == 1:
            out[objs[0].instance_id] = f"the {cat}"
            continue
        for o in objs:
            if sum(p.color_name == o.color_name for p in objs) == 1:
                out[o.instance_id] = f"the {o.color_name} {cat}"
    return out


def _closest_unique(
    objs: list[SynthObject], dist: list[float], margin: float
) -> SynthObject | None:
    """The object with the smallest distance if it wins by at least ``margin`` metres."""
    if not objs:
        return None
    order = np.argsort(dist)
    if len(objs) > 1 and dist[order[1]] - dist[order[0]] < margin:
        return None
    return objs[int(order[0])]


def query_candidates(layout: Layout, margin: float = 0.4, near: float = 0.6) -> list[_Candidate]:
    """Every query the templates can make about this layout whose target is unique (see module doc)."""
    objs = layout.objects
    by_cat: dict[str, list[SynthObject]] = {}
    for o in objs:
        by_cat.setdefault(o.category, []).append(o)
    names = _names(objs)
    out: list[_Candidate] = []

    # explicit: colour + category unique (category itself repeated), or category unique
    for o in objs:
        if o.instance_id not in names:
            continue
        repeated = len(by_cat[o.category]) > 1
        out.append(_Candidate("explicit", names[o.instance_id], o.instance_id,
                              {"template": "color_category" if repeated else "category",
                               "category": o.category, "color": o.color_name}))

    # spatial: closest to the window, among >= 2 of a category
    if layout.windows:
        for cat, group in by_cat.items():
            if len(group) < 2:
                continue
            d = [_window_distance(o, layout.windows) for o in group]
            best = _closest_unique(group, d, margin)
            if best is not None:
                out.append(_Candidate("spatial", f"the {cat} closest to the window", best.instance_id,
                                      {"template": "closest_to_window", "category": cat}))
            far = _closest_unique(group, [-x for x in d], margin)
            if far is not None:
                out.append(_Candidate("spatial", f"the {cat} farthest from the window", far.instance_id,
                                      {"template": "farthest_from_window", "category": cat}))

    # spatial: next to a uniquely named anchor (exactly one of the category near it, the others far)
    for anchor in objs:
        if anchor.instance_id not in names:
            continue
        for cat, group in by_cat.items():
            group = [o for o in group if o.instance_id != anchor.instance_id]
            if not group or cat == anchor.category:
                continue
            gaps = [footprint_gap(o.lo, o.hi, anchor.lo, anchor.hi) for o in group]
            close = [o for o, g in zip(group, gaps, strict=True) if g <= near]
            if len(close) == 1 and all(g > near + margin for o, g in zip(group, gaps, strict=True) if o is not close[0]):
                text = f"the {cat} next to {names[anchor.instance_id]}"
                out.append(_Candidate("spatial", text, close[0].instance_id,
                                      {"template": "next_to", "category": cat, "anchor": anchor.instance_id}))

    # spatial: the largest / smallest of a category (footprint area differs by >= 30 %)
    for cat, group in by_cat.items():
        if len(group) < 2:
            continue
        areas = [float(np.prod((o.hi - o.lo)[:2])) for o in group]
        order = np.argsort(areas)
        if areas[order[-1]] >= 1.3 * areas[order[-2]]:
            out.append(_Candidate("spatial", f"the largest {cat}", group[int(order[-1])].instance_id,
                                  {"template": "largest", "category": cat}))
        if areas[order[1]] >= 1.3 * areas[order[0]]:
            out.append(_Candidate("spatial", f"the smallest {cat}", group[int(order[0])].instance_id,
                                  {"template": "smallest", "category": cat}))

    # implicit: intent -> categories; unique alone, or disambiguated by the window or an anchor
    for intent, (cats, phrases) in AFFORDANCES.items():
        group = [o for o in objs if o.category in cats]
        if not group:
            continue
        phrase = phrases[len(out) % len(phrases)]
        if len(group) == 1:
            out.append(_Candidate("implicit", phrase, group[0].instance_id,
                                  {"template": "intent", "intent": intent, "categories": list(cats)}))
            continue
        if layout.windows:
            best = _closest_unique(group, [_window_distance(o, layout.windows) for o in group], margin)
            if best is not None:
                out.append(_Candidate("implicit", f"{phrase} near the window", best.instance_id,
                                      {"template": "intent_window", "intent": intent, "categories": list(cats)}))
        for anchor in objs:
            if anchor.instance_id not in names or anchor.category in cats:
                continue
            gaps = [footprint_gap(o.lo, o.hi, anchor.lo, anchor.hi) for o in group]
            close = [o for o, g in zip(group, gaps, strict=True) if g <= near]
            if len(close) == 1 and all(g > near + margin for o, g in zip(group, gaps, strict=True) if o is not close[0]):
                out.append(_Candidate("implicit", f"{phrase} next to {names[anchor.instance_id]}",
                                      close[0].instance_id,
                                      {"template": "intent_next_to", "intent": intent, "categories": list(cats),
                                       "anchor": anchor.instance_id}))
    return out


def make_queries(
    scene_id: str, layout: Layout, seed: int, cfg: SyntheticConfig = SyntheticConfig()
) -> list[Query]:
    """Pick ``cfg.num_queries`` candidates, alternating kinds, with distinct texts; ids ``{scene_id}_qNN``."""
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 1]))
    n = int(rng.integers(cfg.num_queries[0], cfg.num_queries[1] + 1))
    cands = query_candidates(layout)
    pools: dict[str, list[_Candidate]] = {}
    for c in cands:
        pools.setdefault(c.kind, []).append(c)
    for k in pools:
        pools[k] = [pools[k][i] for i in rng.permutation(len(pools[k]))]
    chosen: list[_Candidate] = []
    seen: set[str] = set()
    kinds = ["explicit", "spatial", "implicit"]
    while len(chosen) < n and any(pools.get(k) for k in kinds):
        for k in kinds:
            pool = pools.get(k)
            while pool:
                c = pool.pop()
                if c.text not in seen:
                    seen.add(c.text)
                    chosen.append(c)
                    break
            if len(chosen) >= n:
                break
    return [
        Query(scene_id=scene_id, query_id=f"{scene_id}_q{j:02d}", text=c.text, target_ids=[c.target],
              source="synthetic", kind=c.kind, extra=dict(c.extra))
        for j, c in enumerate(chosen)
    ]
