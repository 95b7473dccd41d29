"""ShapesWorld scenes and their renderer: the ground truth everything else in the world is checked against.

A scene is 1-5 flat shapes (circle, square, triangle, star) in six colours and two sizes on a plain white
background, at normalised positions, never overlapping. ``render(scene, size)`` draws it deterministically
with PIL at any resolution (64x64 by default; the trainer's generator may work at 32x32), with hard edges
so that a clean render has exactly the palette's colours.
"""

from __future__ import annotations

import math
import random
from dataclasses import asdict, dataclass, field

from PIL import Image, ImageDraw

SHAPES = ("circle", "square", "triangle", "star")
COLOURS = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 80, 220),
    "yellow": (240, 210, 30),
    "purple": (140, 60, 180),
    "orange": (245, 140, 30),
}
BACKGROUND = (255, 255, 255)
SIZES = {"small": 0.09, "large": 0.15}  # radius as a fraction of the image side
MIN_GAP = 0.05  # free space between two objects' enclosing circles, as a fraction of the side (>= 1.5 px at 32x32)


@dataclass(frozen=True)
class Obj:
    shape: str
    colour: str
    size: str
    x: float  # centre, 0..1 from the left
    y: float  # centre, 0..1 from the top

    @property
    def radius(self) -> float:
        return SIZES[self.size]

    @property
    def bound(self) -> float:
        """Radius of the circle that encloses the drawn shape (a square's corners reach 1.16 r)."""
        return self.radius * (1.16 if self.shape == "square" else 1.0)


@dataclass
class Scene:
    objects: list[Obj] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"objects": [asdict(o) for o in self.objects]}

    @classmethod
    def from_dict(cls, d: dict) -> Scene:
        return cls([Obj(**o) for o in d["objects"]])


def fits(obj: Obj, others: list[Obj]) -> bool:
    r = obj.bound
    if not (r <= obj.x <= 1 - r and r <= obj.y <= 1 - r):
        return False
    return all(math.hypot(obj.x - o.x, obj.y - o.y) >= r + o.bound + MIN_GAP for o in others)


def place(rng: random.Random, shape: str, colour: str, size: str, others: list[Obj], tries: int = 200,
          x_range: tuple[float, float] = (0.0, 1.0),
          y_range: tuple[float, float] = (0.0, 1.0)) -> Obj | None:  # fmt: skip
    """A random non-overlapping position for one object (None if the scene is too crowded)."""
    r = SIZES[size] * (1.16 if shape == "square" else 1.0)
    for _ in range(tries):
        x = rng.uniform(max(r, x_range[0]), min(1 - r, x_range[1]))
        y = rng.uniform(max(r, y_range[0]), min(1 - r, y_range[1]))
        o = Obj(shape, colour, size, x, y)
        if fits(o, others):
            return o
    return None


def random_scene(rng: random.Random, n: int | None = None) -> Scene:
    n = n if n is not None else rng.randint(1, 5)
    objs: list[Obj] = []
    while len(objs) < n:
        o = place(rng, rng.choice(SHAPES), rng.choice(list(COLOURS)), rng.choice(list(SIZES)), objs)
        if o is None:
            break
        objs.append(o)
    return Scene(objs)


def polygon(obj: Obj, size: int) -> list[tuple[float, float]] | None:
    """Vertices in pixels (None for a circle)."""
    cx, cy, r = obj.x * size, obj.y * size, obj.radius * size
    if obj.shape == "square":
        h = r * 0.82  # a square of similar area to the circle
        return [(cx - h, cy - h), (cx + h, cy - h), (cx + h, cy + h), (cx - h, cy + h)]
    if obj.shape == "triangle":
        return [(cx + r * math.cos(a), cy + r * math.sin(a)) for a in (-math.pi / 2, math.pi / 6, 5 * math.pi / 6)]
    if obj.shape == "star":
        pts = []
        for k in range(10):
            a = -math.pi / 2 + k * math.pi / 5
            rad = r if k % 2 == 0 else r * 0.45
            pts.append((cx + rad * math.cos(a), cy + rad * math.sin(a)))
        return pts
    return None


def draw_object(draw: ImageDraw.ImageDraw, obj: Obj, size: int, colour: tuple[int, int, int] | None = None) -> None:
    fill = colour or COLOURS[obj.colour]
    pts = polygon(obj, size)
    if pts is None:
        cx, cy, r = obj.x * size, obj.y * size, obj.radius * size
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fill)
    else:
        draw.polygon(pts, fill=fill)


def render(scene: Scene, size: int = 64) -> Image.Image:
    img = Image.new("RGB", (size, size), BACKGROUND)
    draw = ImageDraw.Draw(img)
    for o in scene.objects:
        draw_object(draw, o, size)
    return img
