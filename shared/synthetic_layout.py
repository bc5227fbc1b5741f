"""Synthetic rooms as axis-aligned boxes: generator config and layout (vocabulary: synthetic_vocab).

``generate_layout`` places 1-2 windows and 8-20 non-overlapping objects (footprint rejection
sampling; some categories stand against a wall) in a room; ``synthetic_points.sample_points``
samples the faces a camera inside the room can see. Each step draws from its own seeded stream.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from mllm3d.shared.synthetic_vocab import (  # re-exported: the generator's vocabulary
    CATEGORIES,
    CEILING_COLOR,
    FLOOR_COLOR,
    PALETTE,
    WALL_COLOR,
    WINDOW_COLOR,
    Category,
)


@dataclass
class SyntheticConfig:
    """Parameters of the synthetic scene generator (defaults give ScanNet-like small rooms)."""

    room_x: tuple[float, float] = (5.0, 7.0)  # metres
    room_y: tuple[float, float] = (4.0, 6.0)
    room_height: float = 2.6
    num_objects: tuple[int, int] = (8, 20)  # inclusive range
    num_windows: tuple[int, int] = (1, 2)  # windows on distinct walls
    num_points: int = 36000  # surface samples before removing hidden faces (~30-35k remain)
    object_density: float = 3.0  # objects get this many times more points per m^2 than walls/floor
    ceiling_points: bool = False  # ScanNet meshes rarely have a ceiling; it is rendered either way
    color_noise: float = 4.0  # std of the per-point colour noise (0-255 scale)
    num_views: int = 16
    image_size: tuple[int, int] = (120, 160)  # (H, W)
    focal_scale: float = 0.8  # fx = fy = focal_scale * W
    camera_height: tuple[float, float] = (1.3, 1.6)
    camera_pitch_deg: tuple[float, float] = (10.0, 25.0)  # downward
    frame_step: int = 10  # frame ids 0, 10, 20, ...
    image_noise: float = 3.0  # std of the image noise (0-255 scale)
    num_queries: tuple[int, int] = (8, 12)
    wall_thickness: float = 0.1
    clearance: float = 0.1  # minimum gap between object footprints


# ----------------------------------------------------------------------------------------------
# Layout
# ----------------------------------------------------------------------------------------------


@dataclass
class SynthObject:
    """One object (or window) of a layout: its boxes and what a query may say about it."""

    instance_id: int
    category: str
    color_name: str
    boxes: list[tuple[np.ndarray, np.ndarray]]  # (lo, hi) world corners
    facing: int = 0  # quarter turns about z applied to the local frame

    @property
    def lo(self) -> np.ndarray:
        return np.min([b[0] for b in self.boxes], axis=0)

    @property
    def hi(self) -> np.ndarray:
        return np.max([b[1] for b in self.boxes], axis=0)

    @property
    def center(self) -> np.ndarray:
        return (self.lo + self.hi) / 2


@dataclass
class Layout:
    """A room: flat arrays of boxes for rendering plus the objects they belong to."""

    room: np.ndarray  # (3,) interior extent (Lx, Ly, H); the interior is [0,Lx]x[0,Ly]x[0,H]
    objects: list[SynthObject]
    windows: list[SynthObject]
    lo: np.ndarray  # (B,3) float64 box corners
    hi: np.ndarray  # (B,3)
    box_instance: np.ndarray  # (B,) int32
    box_color: np.ndarray  # (B,3) float32, 0-255
    box_faces: np.ndarray  # (B,6) bool: faces to sample (-x,+x,-y,+y,-z,+z)
    instance_labels: dict[int, str] = field(default_factory=dict)

    def instance_attributes(self) -> dict[int, tuple[str, str]]:
        """Object id -> (category, colour name); windows, walls and floor have no colour name."""
        colors = {o.instance_id: o.color_name for o in self.objects}
        return {i: (label, colors.get(i, "")) for i, label in self.instance_labels.items()}


def uniform_in(rng: np.random.Generator, lohi: tuple[float, float]) -> float:
    return float(rng.uniform(lohi[0], lohi[1]))


def _local_parts(cat: Category, w: float, d: float, h: float) -> list[tuple]:
    """Boxes of an object in its local frame: footprint [-w/2,w/2]x[-d/2,d/2], back at +y, floor at z=0."""
    x0, x1, y0, y1 = -w / 2, w / 2, -d / 2, d / 2

    def box(xa: float, xb: float, ya: float, yb: float, za: float, zb: float) -> tuple:
        return (xa, ya, za), (xb, yb, zb)

    if cat.shape == "chair":
        seat = 0.45
        return [box(x0, x1, y0, y1, 0.0, seat), box(x0, x1, y1 - 0.08, y1, seat, h)]
    if cat.shape == "sofa":
        seat = 0.45
        arm = 0.15
        return [
            box(x0, x1, y0, y1, 0.0, seat - 0.05),
            box(x0, x1, y1 - 0.2, y1, seat - 0.05, h),
            box(x0, x0 + arm, y0, y1 - 0.2, seat - 0.05, seat + 0.15),
            box(x1 - arm, x1, y0, y1 - 0.2, seat - 0.05, seat + 0.15),
        ]
    if cat.shape == "table":
        t, lg = 0.05, 0.07
        parts = [box(x0, x1, y0, y1, h - t, h)]
        for xa, ya in [(x0, y0), (x1 - lg, y0), (x0, y1 - lg), (x1 - lg, y1 - lg)]:
            parts.append(box(xa, xa + lg, ya, ya + lg, 0.0, h - t))
        return parts
    if cat.shape == "desk":
        t = 0.04
        pw = 0.4
        return [
            box(x0, x1, y0, y1, h - t, h),
            box(x1 - pw, x1, y0 + 0.03, y1, 0.0, h - t),  # drawer pedestal
            box(x0, x0 + 0.04, y0 + 0.03, y1, 0.0, h - t),  # side panel
        ]
    if cat.shape == "bed":
        base, mat = 0.3, 0.22
        head = 0.08
        return [
            box(x0, x1, y0, y1 - head, 0.0, base),
            box(x0 + 0.03, x1 - 0.03, y0 + 0.03, y1 - head, base, base + mat),
            box(x0, x1, y1 - head, y1, 0.0, h),
        ]
    if cat.shape == "lamp":
        pole = 0.05
        shade_h = 0.3
        return [
            box(x0 + 0.05, x1 - 0.05, y0 + 0.05, y1 - 0.05, 0.0, 0.03),
            box(-pole / 2, pole / 2, -pole / 2, pole / 2, 0.03, h - shade_h),
            box(x0, x1, y0, y1, h - shade_h, h),
        ]
    if cat.shape == "plant":
        pot_w = min(w, d) * 0.55
        pot_h = 0.3
        return [
            box(-pot_w / 2, pot_w / 2, -pot_w / 2, pot_w / 2, 0.0, pot_h),
            box(x0, x1, y0, y1, pot_h, h),
        ]
    if cat.shape == "tv":
        stand_h = 0.5
        screen_d = 0.06
        return [
            box(x0 + 0.1, x1 - 0.1, y0, y1, 0.0, stand_h),
            box(x0, x1, y1 - screen_d - 0.05, y1 - 0.05, stand_h, h),
        ]
    return [box(x0, x1, y0, y1, 0.0, h)]


def _rotate_box(lo: np.ndarray, hi: np.ndarray, quarter_turns: int) -> tuple[np.ndarray, np.ndarray]:
    """Rotate an axis-aligned box about the z axis by a multiple of 90 degrees (stays axis aligned)."""
    corners = np.array([[lo[0], lo[1]], [hi[0], hi[1]]])
    k = quarter_turns % 4
    c, s = [(1, 0), (0, 1), (-1, 0), (0, -1)][k]
    rot = corners @ np.array([[c, s], [-s, c]])
    nlo = np.array([rot[:, 0].min(), rot[:, 1].min(), lo[2]])
    nhi = np.array([rot[:, 0].max(), rot[:, 1].max(), hi[2]])
    return nlo, nhi


def footprint_gap(a_lo: np.ndarray, a_hi: np.ndarray, b_lo: np.ndarray, b_hi: np.ndarray) -> float:
    """Euclidean xy distance between two axis-aligned footprints (0 when they overlap)."""
    dx = max(0.0, float(b_lo[0] - a_hi[0]), float(a_lo[0] - b_hi[0]))
    dy = max(0.0, float(b_lo[1] - a_hi[1]), float(a_lo[1] - b_hi[1]))
    return float(np.hypot(dx, dy))


def _choose_categories(n: int, rng: np.random.Generator) -> list[str]:
    names = list(CATEGORIES)
    counts = dict.fromkeys(names, 0)
    out: list[str] = []
    while len(out) < n:
        avail = [c for c in names if counts[c] < CATEGORIES[c].max_count]
        if not avail:
            break
        w = np.array([CATEGORIES[c].weight for c in avail])
        c = avail[int(rng.choice(len(avail), p=w / w.sum()))]
        counts[c] += 1
        out.append(c)
    # big items first: they are the hardest to place
    out.sort(key=lambda c: -CATEGORIES[c].width[1] * CATEGORIES[c].depth[1])
    return out


def _place_object(
    cat: Category,
    room: np.ndarray,
    placed: list[tuple[np.ndarray, np.ndarray]],
    clearance: float,
    rng: np.random.Generator,
    tries: int = 200,
) -> tuple[list[tuple[np.ndarray, np.ndarray]], int] | None:
    """Sample size, orientation and position until the footprint is free; world boxes or None."""
    for _ in range(tries):
        w, d, h = uniform_in(rng, cat.width), uniform_in(rng, cat.depth), uniform_in(rng, cat.height)
        parts = _local_parts(cat, w, d, h)
        k = int(rng.integers(4))  # quarter turns; the back (+y local) then faces +y, -x, -y, +x
        rot = [_rotate_box(np.array(a, float), np.array(b, float), k) for a, b in parts]
        flo = np.min([r[0] for r in rot], axis=0)
        fhi = np.max([r[1] for r in rot], axis=0)
        size = fhi - flo
        if size[0] > room[0] - 0.2 or size[1] > room[1] - 0.2:
            continue
        gap = 0.02
        if cat.against_wall:
            # k=0 -> back at +y -> wall y=Ly; k=1 -> back at -x -> wall x=0; k=2 -> y=0; k=3 -> x=Lx
            if k == 0:
                cx, cy = rng.uniform(gap - flo[0], room[0] - gap - fhi[0]), room[1] - gap - fhi[1]
            elif k == 1:
                cx, cy = gap - flo[0], rng.uniform(gap - flo[1], room[1] - gap - fhi[1])
            elif k == 2:
                cx, cy = rng.uniform(gap - flo[0], room[0] - gap - fhi[0]), gap - flo[1]
            else:
                cx, cy = room[0] - gap - fhi[0], rng.uniform(gap - flo[1], room[1] - gap - fhi[1])
        else:
            m = 0.15
            cx = rng.uniform(m - flo[0], room[0] - m - fhi[0])
            cy = rng.uniform(m - flo[1], room[1] - m - fhi[1])
        off = np.array([cx, cy, 0.0])
        wlo, whi = flo + off, fhi + off
        if any(footprint_gap(wlo, whi, a, b) < clearance for a, b in placed):
            continue
        return [(r[0] + off, r[1] + off) for r in rot], k
    return None


def _add_windows(room: np.ndarray, n: int, first_id: int, rng: np.random.Generator) -> list[SynthObject]:
    """Flat window patches, 1 cm proud of distinct walls, at sill height 0.8-1.0 m."""
    walls = rng.permutation(4)[:n]
    out = []
    t = 0.01
    for j, wall in enumerate(walls):
        along = room[0] if wall in (0, 1) else room[1]  # walls 0/1: y=0 / y=Ly; 2/3: x=0 / x=Lx
        width = float(rng.uniform(0.8, min(1.6, along - 1.0)))
        c = float(rng.uniform(0.5 + width / 2, along - 0.5 - width / 2))
        z0 = float(rng.uniform(0.8, 1.0))
        z1 = float(min(room[2] - 0.25, z0 + rng.uniform(1.0, 1.4)))
        if wall == 0:
            lo, hi = np.array([c - width / 2, 0.0, z0]), np.array([c + width / 2, t, z1])
        elif wall == 1:
            lo, hi = np.array([c - width / 2, room[1] - t, z0]), np.array([c + width / 2, room[1], z1])
        elif wall == 2:
            lo, hi = np.array([0.0, c - width / 2, z0]), np.array([t, c + width / 2, z1])
        else:
            lo, hi = np.array([room[0] - t, c - width / 2, z0]), np.array([room[0], c + width / 2, z1])
        out.append(SynthObject(first_id + j, "window", "white", [(lo, hi)], facing=int(wall)))
    return out


def generate_layout(seed: int, cfg: SyntheticConfig = SyntheticConfig()) -> Layout:
    """Room, windows and non-overlapping objects, deterministic from ``seed``."""
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0]))
    room = np.array([uniform_in(rng, cfg.room_x), uniform_in(rng, cfg.room_y), cfg.room_height])
    n_obj = int(rng.integers(cfg.num_objects[0], cfg.num_objects[1] + 1))
    objects: list[SynthObject] = []
    placed: list[tuple[np.ndarray, np.ndarray]] = []
    cats = _choose_categories(n_obj + 6, rng)  # a few spares in case some do not fit
    for name in cats:
        if len(objects) >= n_obj:
            break
        cat = CATEGORIES[name]
        res = _place_object(cat, room, placed, cfg.clearance, rng)
        if res is None:
            continue
        boxes, k = res
        color = cat.colors[int(rng.integers(len(cat.colors)))]
        obj = SynthObject(len(objects), name, color, boxes, facing=k)
        objects.append(obj)
        placed.append((obj.lo, obj.hi))
    n_win = int(rng.integers(cfg.num_windows[0], cfg.num_windows[1] + 1))
    windows = _add_windows(room, n_win, len(objects), rng)

    lo: list[np.ndarray] = []
    hi: list[np.ndarray] = []
    inst: list[int] = []
    col: list[tuple[int, int, int]] = []
    faces: list[list[bool]] = []
    labels: dict[int, str] = {}
    for obj in objects:
        labels[obj.instance_id] = obj.category
        for a, b in obj.boxes:
            lo.append(a)
            hi.append(b)
            inst.append(obj.instance_id)
            col.append(PALETTE[obj.color_name])
            faces.append([True] * 6)
    for win in windows:
        labels[win.instance_id] = "window"
        a, b = win.boxes[0]
        lo.append(a)
        hi.append(b)
        inst.append(win.instance_id)
        col.append(WINDOW_COLOR)
        # the face toward the room interior only
        f = [False] * 6
        f[{0: 3, 1: 2, 2: 1, 3: 0}[win.facing]] = True
        faces.append(f)
    lx, ly, hz = room
    t = cfg.wall_thickness
    nid = len(objects) + len(windows)
    structure = [
        ("wall", (-t, 0, 0), (0, ly, hz), WALL_COLOR, 1),  # x = 0, inner face +x
        ("wall", (lx, 0, 0), (lx + t, ly, hz), WALL_COLOR, 0),
        ("wall", (0, -t, 0), (lx, 0, hz), WALL_COLOR, 3),
        ("wall", (0, ly, 0), (lx, ly + t, hz), WALL_COLOR, 2),
        ("floor", (0, 0, -t), (lx, ly, 0), FLOOR_COLOR, 5),
        ("ceiling", (0, 0, hz), (lx, ly, hz + t), CEILING_COLOR, 4),
    ]
    for j, (label, a, b, c, face) in enumerate(structure):
        labels[nid + j] = label
        lo.append(np.array(a, float))
        hi.append(np.array(b, float))
        inst.append(nid + j)
        col.append(c)
        f = [False] * 6
        f[face] = label != "ceiling" or cfg.ceiling_points
        faces.append(f)
    return Layout(
        room=room,
        objects=objects,
        windows=windows,
        lo=np.array(lo, dtype=np.float64),
        hi=np.array(hi, dtype=np.float64),
        box_instance=np.array(inst, dtype=np.int32),
        box_color=np.array(col, dtype=np.float32),
        box_faces=np.array(faces, dtype=bool),
        instance_labels=labels,
    )
