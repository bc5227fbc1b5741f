"""The synthetic scenes' vocabulary: colour palette, surface colours and furniture categories (sizes,
colours, how each is built from boxes). ``synthetic_layout`` places them; queries and the stand-in's
features name them."""

from __future__ import annotations

from dataclasses import dataclass

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
