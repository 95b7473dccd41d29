"""Quality defects of ShapesWorld images: what an untrained or half-trained generator produces.

Pixel-level: Gaussian noise, blur, JPEG artefacts, smeared colours (each object's fill pulled towards another
palette colour). Shape-level: partial shapes (a slice of each object erased). Scene-level: a missing or
an extra object, a wrong colour (semantic errors rather than quality ones). Every function is seeded by
the ``random.Random`` it is given, so degraded datasets are reproducible.
"""

from __future__ import annotations

import io
import math
import random

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from shapesworld.world import BACKGROUND, COLOURS, SHAPES, SIZES, Obj, Scene, draw_object, place, render


def noise(img: Image.Image, sigma: float, rng: random.Random) -> Image.Image:
    gen = np.random.default_rng(rng.getrandbits(32))
    arr = np.asarray(img, dtype=np.float32) + gen.normal(0, sigma, (img.height, img.width, 3))
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


def blur(img: Image.Image, radius_frac: float) -> Image.Image:
    """Gaussian blur with a radius given as a fraction of the side (so 64 and 32 px blur alike)."""
    return img.filter(ImageFilter.GaussianBlur(radius_frac * img.width))


def jpeg(img: Image.Image, quality: int) -> Image.Image:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality)
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


def smear(scene: Scene, size: int, alpha: float, rng: random.Random) -> Image.Image:
    """Each object's colour mixed with a random other palette colour by ``alpha``."""
    img = Image.new("RGB", (size, size), BACKGROUND)
    draw = ImageDraw.Draw(img)
    for o in scene.objects:
        a = np.array(COLOURS[o.colour], dtype=np.float32)
        b = np.array(COLOURS[rng.choice([c for c in COLOURS if c != o.colour])], dtype=np.float32)
        draw_object(draw, o, size, tuple(int(v) for v in (1 - alpha) * a + alpha * b))
    return img


def partial(scene: Scene, size: int, fraction: float, rng: random.Random) -> Image.Image:
    """Erase a slice (about ``fraction`` of the enclosing circle's width) from one side of every object."""
    img = render(scene, size)
    draw = ImageDraw.Draw(img)
    for o in scene.objects:
        cx, cy, r = o.x * size, o.y * size, o.bound * size
        ang = rng.uniform(0, 2 * math.pi)
        d = r * (1 - 2 * fraction)  # distance of the cut line from the centre
        ux, uy = math.cos(ang), math.sin(ang)
        px, py = cx + ux * d, cy + uy * d
        far = 3 * r
        pts = [(px - uy * far, py + ux * far), (px + uy * far, py - ux * far),
               (px + uy * far + ux * far, py - ux * far + uy * far),
               (px - uy * far + ux * far, py + ux * far + uy * far)]  # fmt: skip
        draw.polygon(pts, fill=BACKGROUND)
    return img


def drop_object(scene: Scene, rng: random.Random) -> Scene:
    if len(scene.objects) <= 1:
        return Scene([])
    objs = list(scene.objects)
    objs.pop(rng.randrange(len(objs)))
    return Scene(objs)


def add_object(scene: Scene, rng: random.Random, shape: str | None = None, colour: str | None = None) -> Scene:
    o = place(rng, shape or rng.choice(SHAPES), colour or rng.choice(list(COLOURS)), rng.choice(list(SIZES)),
              scene.objects)
    return Scene([*scene.objects, o]) if o is not None else scene


def recolour(scene: Scene, rng: random.Random) -> Scene:
    if not scene.objects:
        return scene
    objs = list(scene.objects)
    i = rng.randrange(len(objs))
    o = objs[i]
    objs[i] = Obj(o.shape, rng.choice([c for c in COLOURS if c != o.colour]), o.size, o.x, o.y)
    return Scene(objs)


PIXEL_DEGRADATIONS = {
    "noise_10": lambda s, n, r: noise(render(s, n), 10, r),
    "noise_25": lambda s, n, r: noise(render(s, n), 25, r),
    "noise_50": lambda s, n, r: noise(render(s, n), 50, r),
    "blur_0.01": lambda s, n, r: blur(render(s, n), 0.01),
    "blur_0.02": lambda s, n, r: blur(render(s, n), 0.02),
    "blur_0.04": lambda s, n, r: blur(render(s, n), 0.04),
    "jpeg_30": lambda s, n, r: jpeg(render(s, n), 30),
    "smear_0.2": lambda s, n, r: smear(s, n, 0.2, r),
    "smear_0.4": lambda s, n, r: smear(s, n, 0.4, r),
    "partial_0.25": lambda s, n, r: partial(s, n, 0.25, r),
    "partial_0.5": lambda s, n, r: partial(s, n, 0.5, r),
}
