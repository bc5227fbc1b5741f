"""Procedural synthetic indoor scenes: a room of axis-aligned boxes, exact ray-cast RGB-D views, queries.

Deterministic from a seed and fast (one scene with 16 views at 120x160 in ~0.1-0.3 s): it is the
default data of the demo and of every test. Everything is made of axis-aligned boxes, so surface
sampling and ray casting are exact: a surface point projected into a view lands on a pixel whose
``instance_map`` is the point's own instance unless it is occluded (then the depth test rejects it).

Layout of the generator (each step draws from its own random stream, so queries can be made
without rendering):
  ``generate_layout`` -> room, windows, objects as boxes;
  ``sample_points``   -> area-proportional surface points with instance ids and colours;
  ``render_view``     -> depth / colour / instance map of one camera by vectorised ray casting;
  ``make_queries``    -> explicit / spatial / implicit queries whose targets are unique by construction.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from shared.errors import BadInputError, UnknownSceneError
from shared.scene import Query, Scene, View

# ----------------------------------------------------------------------------------------------
# Vocabulary
# ----------------------------------------------------------------------------------------------

PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (200, 40, 40),
    "blue": (40, 70, 200),
    "green": (40, 150, 60),
    "yellow": (230, 200, 40),
    "white": (235, 235, 230),
    "black": (30, 30, 30),
    "brown": (120, 75, 40),
    "gray": (128, 128, 128),
    "orange": (235, 130, 30),
    "purple": (120, 50, 150),
}

WALL_COLOR = (200, 195, 185)
FLOOR_COLOR = (160, 140, 115)
CEILING_COLOR = (225, 225, 225)
WINDOW_COLOR = (190, 220, 245)


@dataclass(frozen=True)
class Category:
    """A furniture category: size ranges (width, depth, height) in metres and how it is built."""

    name: str
    width: tuple[float, float]
    depth: tuple[float, float]
    height: tuple[float, float]
    colors: tuple[str, ...]
    shape: str = "box"  # box | chair | sofa | table | desk | bed | lamp | plant | tv
    against_wall: bool = False
    max_count: int = 4
    weight: float = 1.0


CATEGORIES: dict[str, Category] = {
    c.name: c
    for c in [
        Category("chair", (0.42, 0.52), (0.42, 0.52), (0.85, 1.0), ("red", "blue", "black", "brown", "white", "green"),
                 "chair", max_count=5, weight=3.0),
        Category("sofa", (1.6, 2.2), (0.8, 0.95), (0.75, 0.9), ("gray", "blue", "brown", "red", "green"),
                 "sofa", against_wall=True, max_count=2, weight=1.0),
        Category("table", (0.8, 1.5), (0.6, 1.0), (0.7, 0.76), ("brown", "white", "black"), "table",
                 max_count=2, weight=1.2),
        Category("desk", (1.0, 1.5), (0.55, 0.7), (0.72, 0.76), ("brown", "white", "black", "gray"), "desk",
                 against_wall=True, max_count=2, weight=1.0),
        Category("bed", (1.9, 2.1), (1.0, 1.6), (0.9, 1.1), ("white", "blue", "gray", "red"), "bed",
                 against_wall=True, max_count=1, weight=0.8),
        Category("lamp", (0.3, 0.4), (0.3, 0.4), (1.3, 1.6), ("white", "black", "yellow", "orange"), "lamp",
                 max_count=3, weight=1.5),
        Category("bookshelf", (0.6, 1.0), (0.3, 0.4), (1.6, 2.0), ("brown", "white", "black"), "box",
                 against_wall=True, max_count=2, weight=1.2),
        Category("cabinet", (0.5, 1.0), (0.4, 0.6), (0.7, 1.1), ("white", "brown", "gray", "blue"), "box",
                 against_wall=True, max_count=2, weight=1.0),
        Category("plant", (0.45, 0.7), (0.45, 0.7), (0.8, 1.4), ("green",), "plant", max_count=3, weight=1.2),
        Category("tv", (1.0, 1.3), (0.3, 0.4), (1.1, 1.3), ("black", "gray"), "tv", against_wall=True,
                 max_count=1, weight=0.8),
        Category("stool", (0.32, 0.4), (0.32, 0.4), (0.45, 0.65), ("red", "yellow", "blue", "black", "white"),
                 "box", max_count=3, weight=1.2),
        Category("nightstand", (0.4, 0.5), (0.35, 0.45), (0.5, 0.6), ("brown", "white", "gray"), "box",
                 max_count=2, weight=0.8),
        Category("trash can", (0.25, 0.35), (0.25, 0.35), (0.3, 0.45), ("gray", "black", "blue", "green"), "box",
                 max_count=2, weight=0.8),
    ]
}

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


def _uniform(rng: np.random.Generator, lohi: tuple[float, float]) -> float:
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


def _footprint_gap(a_lo: np.ndarray, a_hi: np.ndarray, b_lo: np.ndarray, b_hi: np.ndarray) -> float:
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
        w, d, h = _uniform(rng, cat.width), _uniform(rng, cat.depth), _uniform(rng, cat.height)
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
        if any(_footprint_gap(wlo, whi, a, b) < clearance for a, b in placed):
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
    room = np.array([_uniform(rng, cfg.room_x), _uniform(rng, cfg.room_y), cfg.room_height])
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


# ----------------------------------------------------------------------------------------------
# Points
# ----------------------------------------------------------------------------------------------


def _inside_other_box(points: np.ndarray, owner: np.ndarray, lo: np.ndarray, hi: np.ndarray, eps: float) -> np.ndarray:
    """True for points inside (or on the surface of) a box other than the one they were sampled on."""
    inside = np.ones((points.shape[0], lo.shape[0]), dtype=bool)
    for a in range(3):
        p = points[:, a : a + 1]
        inside &= (p > lo[None, :, a] - eps) & (p < hi[None, :, a] + eps)
    inside[np.arange(points.shape[0]), owner] = False
    return inside.any(axis=1)


def sample_points(
    layout: Layout, seed: int, cfg: SyntheticConfig = SyntheticConfig()
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Area-proportional samples on the visible box faces: (points float32, colors uint8, instance ids int32).

    Faces hidden inside other boxes (an object's bottom on the floor, a mattress on its base, the wall
    behind a window) are removed, so every point lies on a surface a camera in the room can see.
    """
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 2]))
    ext = layout.hi - layout.lo  # (B,3)
    is_obj = layout.box_instance < len(layout.objects)
    face_axis = np.tile(np.repeat(np.arange(3), 2), (ext.shape[0], 1))  # (B,6)
    face_side = np.tile(np.array([0, 1, 0, 1, 0, 1]), (ext.shape[0], 1))
    area = np.stack([ext[:, 1] * ext[:, 2], ext[:, 0] * ext[:, 2], ext[:, 0] * ext[:, 1]], axis=1)
    area = np.repeat(area, 2, axis=1) * layout.box_faces
    weight = area * np.where(is_obj, cfg.object_density, 1.0)[:, None]
    counts = rng.multinomial(cfg.num_points, (weight / weight.sum()).ravel()).reshape(weight.shape)
    box_idx = np.repeat(np.arange(ext.shape[0] * 6) // 6, counts.ravel())
    axis = np.repeat(face_axis.ravel(), counts.ravel())
    side = np.repeat(face_side.ravel(), counts.ravel())
    u = rng.random((box_idx.shape[0], 3))
    pts = layout.lo[box_idx] + u * ext[box_idx]
    rows = np.arange(pts.shape[0])
    pts[rows, axis] = np.where(side == 1, layout.hi[box_idx, axis], layout.lo[box_idx, axis])
    keep = ~_inside_other_box(pts, box_idx, layout.lo, layout.hi, eps=1e-4)
    pts, box_idx = pts[keep], box_idx[keep]
    colors = layout.box_color[box_idx] + rng.normal(0.0, cfg.color_noise, (pts.shape[0], 3))
    return (
        pts.astype(np.float32),
        np.clip(np.rint(colors), 0, 255).astype(np.uint8),
        layout.box_instance[box_idx].astype(np.int32),
    )


# ----------------------------------------------------------------------------------------------
# Cameras and rendering
# ----------------------------------------------------------------------------------------------


def intrinsic_matrix(cfg: SyntheticConfig = SyntheticConfig()) -> np.ndarray:
    """3x3 pinhole intrinsics of the synthetic camera (principal point at the image centre)."""
    h, w = cfg.image_size
    f = cfg.focal_scale * w
    return np.array([[f, 0.0, (w - 1) / 2], [0.0, f, (h - 1) / 2], [0.0, 0.0, 1.0]])


def look_pose(position: np.ndarray, yaw: float, pitch: float) -> np.ndarray:
    """Camera-to-world pose (x right, y down, z forward) at ``position`` looking along yaw/pitch (radians)."""
    fwd = np.array([np.cos(pitch) * np.cos(yaw), np.cos(pitch) * np.sin(yaw), np.sin(pitch)])
    right = np.cross(fwd, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    down = np.cross(fwd, right)
    pose = np.eye(4)
    pose[:3, 0], pose[:3, 1], pose[:3, 2], pose[:3, 3] = right, down, fwd, position
    return pose


def camera_poses(layout: Layout, seed: int, cfg: SyntheticConfig = SyntheticConfig()) -> list[np.ndarray]:
    """``cfg.num_views`` poses at free positions in the room, each aimed (with jitter) at an object."""
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 3]))
    room = layout.room
    targets = [o.center for o in layout.objects] or [room / 2]
    order = rng.permutation(len(targets))
    poses = []
    for v in range(cfg.num_views):
        target = targets[int(order[v % len(order)])]
        best = None
        for _ in range(100):
            p = np.array([rng.uniform(0.35, room[0] - 0.35), rng.uniform(0.35, room[1] - 0.35), 0.0])
            if any(_footprint_gap(p, p, o.lo - 0.25, o.hi + 0.25) == 0.0 for o in layout.objects):
                continue
            dist = float(np.hypot(*(target[:2] - p[:2])))
            if dist >= 1.5 or best is None or dist > best[1]:
                best = (p, dist)
            if dist >= 1.5:
                break
        p = best[0] if best is not None else np.array([room[0] / 2, room[1] / 2, 0.0])
        p[2] = _uniform(rng, cfg.camera_height)
        yaw = float(np.arctan2(target[1] - p[1], target[0] - p[0]) + rng.normal(0.0, 0.15))
        pitch = -np.deg2rad(_uniform(rng, cfg.camera_pitch_deg))
        poses.append(look_pose(p, yaw, pitch))
    return poses


def raycast(
    origin: np.ndarray, dirs: np.ndarray, lo: np.ndarray, hi: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """First hit of rays ``origin + t*dirs`` (P rays) with B axis-aligned boxes, all at once (slab test).

    Returns (t (P,) float64, inf = no hit; box index (P,) int64, -1 = no hit; hit axis (P,) int64,
    the axis of the face that was hit). The origin must lie outside every box.
    """
    origin = np.asarray(origin, dtype=np.float64)
    d = np.where(np.abs(dirs) < 1e-12, 1e-12, dirs)
    inv = (1.0 / d).astype(np.float32)
    lo_rel = (lo - origin).astype(np.float32)
    hi_rel = (hi - origin).astype(np.float32)
    tnear = tfar = None
    for a in range(3):
        t1 = np.multiply.outer(inv[:, a], lo_rel[:, a])  # (P,B)
        t2 = np.multiply.outer(inv[:, a], hi_rel[:, a])
        tmin = np.minimum(t1, t2)
        np.maximum(t1, t2, out=t1)
        if tnear is None:
            tnear, tfar = tmin, t1
        else:
            np.maximum(tnear, tmin, out=tnear)
            np.minimum(tfar, t1, out=tfar)
    miss = (tfar < tnear) | (tnear <= 1e-6)
    tnear[miss] = np.inf
    box = np.argmin(tnear, axis=1)
    rows = np.arange(dirs.shape[0])
    hit = np.isfinite(tnear[rows, box])
    # exact (float64) entry distance and face axis of the chosen box only
    b = np.where(hit, box, 0)
    t1 = (lo[b] - origin) / d
    t2 = (hi[b] - origin) / d
    tmin = np.minimum(t1, t2)
    axis = np.argmax(tmin, axis=1)
    t = np.where(hit, tmin[rows, axis], np.inf)
    return t, np.where(hit, box, -1), axis


LIGHT_DIR = np.array([0.35, 0.25, 0.9]) / np.linalg.norm([0.35, 0.25, 0.9])


def render_view(
    layout: Layout, pose: np.ndarray, intrinsic: np.ndarray, image_size: tuple[int, int],
    rng: np.random.Generator | None = None, noise: float = 0.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exact ray-cast render: (depth (H,W) float32 metres, color (H,W,3) uint8, instance_map (H,W) int32)."""
    h, w = image_size
    rr, cc = np.mgrid[0:h, 0:w]
    cam = np.stack(
        [(cc.ravel() - intrinsic[0, 2]) / intrinsic[0, 0], (rr.ravel() - intrinsic[1, 2]) / intrinsic[1, 1],
         np.ones(h * w)], axis=1,
    )
    dirs = cam @ pose[:3, :3].T  # z-component of cam is 1 -> t is the camera depth
    # cull boxes entirely behind the camera (all 8 corners at camera z <= 0)
    corners = np.stack([np.where(np.array(m)[None, :], layout.hi, layout.lo)
                        for m in np.ndindex(2, 2, 2)], axis=1)  # (B,8,3)
    zc = (corners - pose[:3, 3]) @ pose[:3, 2]
    keep = np.flatnonzero((zc > 0).any(axis=1))
    t, kbox, axis = raycast(pose[:3, 3], dirs, layout.lo[keep], layout.hi[keep])
    box = np.where(kbox >= 0, keep[np.maximum(kbox, 0)], -1)
    hit = box >= 0
    depth = np.where(hit, t, 0.0).astype(np.float32).reshape(h, w)
    inst = np.where(hit, layout.box_instance[np.maximum(box, 0)], -1).astype(np.int32).reshape(h, w)
    normal = np.zeros_like(dirs)
    rows = np.arange(dirs.shape[0])
    normal[rows, axis] = -np.sign(dirs[rows, axis])
    shade = 0.55 + 0.45 * np.abs(normal @ LIGHT_DIR)
    # gentle distance fall-off so depth edges stay visible in colour
    shade = shade * (1.0 - 0.04 * np.clip(np.where(hit, t, 0.0), 0.0, 8.0))
    base = layout.box_color[np.maximum(box, 0)] * shade[:, None]
    if rng is not None and noise > 0:
        base = base + rng.normal(0.0, noise, base.shape)
    color = np.where(hit[:, None], base, 0.0)
    color = np.clip(np.rint(color), 0, 255).astype(np.uint8).reshape(h, w, 3)
    return depth, color, inst


def render_views(layout: Layout, seed: int, cfg: SyntheticConfig = SyntheticConfig()) -> list[View]:
    """All views of a layout, frame ids 0, step, 2*step, ..."""
    k = intrinsic_matrix(cfg)
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 4]))
    views = []
    for v, pose in enumerate(camera_poses(layout, seed, cfg)):
        depth, color, inst = render_view(layout, pose, k, cfg.image_size, rng, cfg.image_noise)
        views.append(View(frame_id=v * cfg.frame_step, color=color, depth=depth, intrinsic=k.copy(), pose=pose,
                          instance_map=inst))
    return views


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
            gaps = [_footprint_gap(o.lo, o.hi, anchor.lo, anchor.hi) for o in group]
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
            gaps = [_footprint_gap(o.lo, o.hi, anchor.lo, anchor.hi) for o in group]
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


# ----------------------------------------------------------------------------------------------
# Public entry points
# ----------------------------------------------------------------------------------------------


def generate_queries(scene_id: str, seed: int, cfg: SyntheticConfig = SyntheticConfig()) -> list[Query]:
    """The queries of ``generate_scene(scene_id, seed, cfg)`` without sampling points or rendering."""
    return make_queries(scene_id, generate_layout(seed, cfg), seed, cfg)


def generate_scene(scene_id: str, seed: int, cfg: SyntheticConfig = SyntheticConfig()) -> tuple[Scene, list[Query]]:
    """One synthetic scene (points, instances, rendered views) and its queries, deterministic from ``seed``."""
    layout = generate_layout(seed, cfg)
    points, colors, inst = sample_points(layout, seed, cfg)
    views = render_views(layout, seed, cfg)
    scene = Scene(
        scene_id=scene_id,
        points=points,
        colors=colors,
        views=views,
        instance_ids=inst,
        instance_labels=dict(layout.instance_labels),
        source="synthetic",
    )
    return scene, make_queries(scene_id, layout, seed, cfg)


# ----------------------------------------------------------------------------------------------
# Scene source
# ----------------------------------------------------------------------------------------------


def scene_seed(seed: int, index: int) -> int:
    """The generator seed of scene ``index`` of a source seeded with ``seed``."""
    return int(np.random.SeedSequence([int(seed), int(index)]).generate_state(1)[0])


class SyntheticSource:
    """``num_scenes`` synthetic scenes ``synth_0000``, ``synth_0001``, ... (a shared.scene.SceneSource).

    Scenes are regenerated on every ``load`` (deterministic, ~0.3 s); queries are made lazily
    from the layouts alone (no rendering) and cached.
    """

    name = "synthetic"

    def __init__(self, num_scenes: int, seed: int = 0, cfg: SyntheticConfig | None = None) -> None:
        if num_scenes < 0:
            raise BadInputError(f"synthetic source: num_scenes must be >= 0, got {num_scenes}")
        self.num_scenes = int(num_scenes)
        self.seed = int(seed)
        self.cfg = cfg if cfg is not None else SyntheticConfig()
        self._queries: dict[str, list[Query]] = {}

    def scene_ids(self) -> list[str]:
        """``synth_0000`` ... in order."""
        return [f"synth_{i:04d}" for i in range(self.num_scenes)]

    def _index(self, scene_id: str) -> int:
        ids = self.scene_ids()
        if scene_id not in ids:
            raise UnknownSceneError(
                f"synthetic source (seed {self.seed}, {self.num_scenes} scenes) has no scene {scene_id!r}; "
                f"ids are synth_0000..synth_{max(self.num_scenes - 1, 0):04d}"
            )
        return ids.index(scene_id)

    def load(self, scene_id: str) -> Scene:
        """Generate scene ``scene_id`` (same result on every call)."""
        i = self._index(scene_id)
        scene, queries = generate_scene(scene_id, scene_seed(self.seed, i), self.cfg)
        self._queries.setdefault(scene_id, queries)
        return scene

    def scene_queries(self, scene_id: str) -> list[Query]:
        """The queries of one scene."""
        i = self._index(scene_id)
        if scene_id not in self._queries:
            self._queries[scene_id] = generate_queries(scene_id, scene_seed(self.seed, i), self.cfg)
        return list(self._queries[scene_id])

    def queries(self) -> list[Query]:
        """All scenes' queries, scene by scene."""
        return [q for sid in self.scene_ids() for q in self.scene_queries(sid)]
