"""The ShapesWorld oracle: a programmatic parser of an image into objects, and GenEval-style scoring.

Pixels far from the white background are foreground; each connected foreground component is one object,
coloured by the palette colour nearest its median interior pixel and classified by two scale-free
features: solidity (area over convex-hull area: a star is concave) and fill (area over bounding-box area:
square ~1.0, circle ~0.78, triangle ~0.55). Size comes from the bounding box divided by the shape's known
extent. It works at any resolution; a light median filter, applied when most pixels differ from their
neighbourhood, makes it tolerant of noise.

It is for *evaluation only*: training is rewarded by the learned verifier, never by the oracle, except in
the labelled diagnostic ``reward.mode: oracle`` (``oracle_reward.py``), a ceiling that is never reported as a result.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image
from scipy import ndimage
from scipy.spatial import ConvexHull, QhullError

from shapesworld.prompts import PromptSpec, Requirement, gold_atoms
from shapesworld.world import BACKGROUND, COLOURS, SIZES

_NAMES = list(COLOURS)
_PALETTE = np.array([COLOURS[c] for c in _NAMES] + [BACKGROUND], dtype=np.float32)  # (7, 3)
_EXTENT = {"circle": 1.0, "square": 0.82, "triangle": 0.866, "star": 0.951}  # half-width / radius
_SIZE_SPLIT = (SIZES["small"] + SIZES["large"]) / 2


@dataclass(frozen=True)
class Detection:
    shape: str
    colour: str
    size: str
    x: float
    y: float
    area: float  # fraction of the image


@dataclass
class OracleResult:
    correct: bool
    atoms: dict[tuple[str, ...], bool]
    detections: list[Detection]

    @property
    def atom_accuracy(self) -> float:
        return sum(self.atoms.values()) / len(self.atoms) if self.atoms else 0.0


def _classify(mask: np.ndarray) -> tuple[str, float] | None:
    ys, xs = np.nonzero(mask)
    h, w = ys.max() - ys.min() + 1, xs.max() - xs.min() + 1
    area = float(len(xs))
    fill = area / (h * w)
    pts = np.stack([xs, ys], 1).astype(np.float64)
    # pixel corners, so a small blob's hull covers its pixels
    corners = np.concatenate([pts + d for d in ((0, 0), (1, 0), (0, 1), (1, 1))])
    try:
        solidity = area / ConvexHull(corners).volume
    except QhullError:
        return None
    if solidity < 0.72:
        shape = "star"
    elif fill < 0.65:
        shape = "triangle"
    elif fill < 0.9:
        shape = "circle"
    else:
        shape = "square"
    return shape, max(h, w) / 2


def detect(image: Image.Image, min_area_frac: float = 0.004, denoise: bool = True) -> list[Detection]:
    """Objects in an image: (shape, colour, size, centre) per connected foreground component.

    Foreground is whatever is far from the white background; each component's colour is the palette
    colour nearest to the median of its interior pixels. Deciding shape and colour per component (not per
    pixel) keeps blurred edges and JPEG ringing from splitting an object into colour fragments.
    """
    arr = np.asarray(image.convert("RGB"), dtype=np.float32)
    white = np.asarray(BACKGROUND, dtype=np.float32)
    if denoise:
        # noise, unlike edges or off-palette colours, makes most pixels differ from their neighbourhood
        med = ndimage.median_filter(arr, size=(3, 3, 1))
        if (np.abs(arr - med).sum(-1) > 40).mean() > 0.2:
            arr = med
    fg = np.sqrt(((arr - white) ** 2).sum(-1)) > 100.0
    side = arr.shape[1]
    min_area = min_area_frac * arr.shape[0] * arr.shape[1]
    comps, n = ndimage.label(fg, structure=np.ones((3, 3)))
    out = []
    for k in range(1, n + 1):
        m = comps == k
        area = int(m.sum())
        if area < min_area:
            continue
        got = _classify(m)
        if got is None:
            continue
        shape, half = got
        inner = ndimage.binary_erosion(m)
        pixels = arr[inner if inner.sum() >= 4 else m]
        colour = _NAMES[int(((np.median(pixels, 0) - _PALETTE[:-1]) ** 2).sum(-1).argmin())]
        radius = half / _EXTENT[shape] / side
        ys, xs = np.nonzero(m)
        out.append(Detection(shape, colour, "large" if radius > _SIZE_SPLIT else "small",
                             float(xs.mean() + 0.5) / side, float(ys.mean() + 0.5) / arr.shape[0],
                             area / (arr.shape[0] * arr.shape[1])))  # fmt: skip
    return out


def _matches(d: Detection, r: Requirement) -> bool:
    return d.shape == r.shape and (r.colour is None or d.colour == r.colour) and (r.size is None or d.size == r.size)


def _relation(a: Detection, b: Detection, rel: str, margin: float = 0.02) -> bool:
    return {"left of": a.x + margin < b.x, "right of": a.x > b.x + margin, "above": a.y + margin < b.y,
            "below": a.y > b.y + margin}[rel]  # fmt: skip


def evaluate(image: Image.Image, spec: PromptSpec, detections: list[Detection] | None = None) -> OracleResult:
    """GenEval-style verdict for one prompt, plus the truth of each of its gold atoms."""
    dets = detections if detections is not None else detect(image)
    ok = True
    found: list[list[Detection]] = []
    for r in spec.requirements:
        m = [d for d in dets if _matches(d, r)]
        found.append(m)
        ok &= (len(m) == r.count) if r.exact else (len(m) >= r.count)
    for r, m in zip(spec.requirements, found):
        if r.position:
            rel, ref = r.position
            ok &= any(_relation(a, b, rel) for a in m for b in found[ref])
    atoms: dict[tuple[str, ...], bool] = {}
    for key in gold_atoms(spec):
        atoms[key] = atom_truth(key, dets)
    return OracleResult(bool(ok), atoms, dets)


def count_errors(spec: PromptSpec, dets: list[Detection]) -> list[int]:
    """Signed count error (objects found matching the requirement minus the count asked) of each exact-count
    requirement of a prompt: +1 is one object too many. A generator whose errors do not centre on 0 is biased
    (a flow loss weighted by the target's foreground, for one, tilts samples towards drawing more objects)."""
    return [sum(_matches(d, r) for d in dets) - r.count for r in spec.requirements if r.exact]


def atom_truth(key: tuple[str, ...], dets: list[Detection]) -> bool:
    """Whether one atom holds among the detections (atoms speak of nouns, i.e. shapes)."""
    cat, detail, *args = key
    of = [d for d in dets if d.shape == args[0]]
    if cat == "entity":
        return bool(of)
    if cat == "count":
        n = int(args[1])
        return len(of) == n if detail == "exactly" else (len(of) < n if detail == "fewer_than" else len(of) >= n)
    if cat == "attribute":
        attr = "colour" if detail == "color" else detail
        return bool(of) and all(getattr(d, attr) == args[1] for d in of)
    if cat == "relation":
        others = [d for d in dets if d.shape == args[1]]
        return any(_relation(a, b, args[2]) for a in of for b in others)
    raise ValueError(f"the oracle cannot judge atom {key}")
