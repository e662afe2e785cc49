"""A digit image -> the strokes a person would draw it with -> a Draw-page canvas, seeded and deterministic.

What the Draw page sees is not an MNIST digit: it is a few strokes of a round brush (STROKE_PX wide on
a CANVAS_SIZE canvas), drawn at whatever size and place the visitor chose, slanted their way, along a
mouse's or a finger's jittery path, then cut down to 28x28 by canvas_to_mnist. To measure a model on
that without a thousand visitors, any digit picture is redrawn that way:

1. `strokes_from_image`: the picture is enlarged, thresholded (a loop's middle that a small picture
   blurred shut but left dimmer than its ring is a hole, not ink) and thinned to its skeleton
   (scikit-image's skeletonize); the skeleton is traced into paths between its ends and junctions,
   spurs (short branches into a thick stroke's corners: the thinning's, not the writer's) are
   dropped, and each path is smoothed. The paths are in the picture's own pixels.
2. `random_style`: how one person draws one digit: size on the canvas, where, slant, rotation, width
   to height, mouse or finger, how far apart the pointer's samples land and how much they wander.
3. `draw`: the paths placed by the style, resampled and jittered like pointer events, drawn with the
   canvas's round brush (anti-aliased, as a browser draws it) on an opaque black canvas, RGBA uint8.
4. `render`: all three, then mnist_core.preprocess.canvas_to_mnist, exactly the Draw page's path.

It lives with the benchmarks, not in mnist_core: it needs scikit-image, which a host does not install
(a development dependency), and no training uses it, so the drawings it makes stay held out.

The same picture with the same seed gives the same drawing, bit for bit. The drawing's ink is the
brush's own width, never the source picture's stroke width: a thin MNIST "1" and a bold optdigits "1"
come out of the same brush, as two visitors' would.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw
from scipy.ndimage import maximum_filter
from skimage.feature import hessian_matrix, hessian_matrix_eigvals
from skimage.morphology import reconstruction, skeletonize

from mnist_core.preprocess import CANVAS_SIZE, STROKE_PX, canvas_to_mnist

WORK_SIDE = 112       # pictures are thinned at this size: a 28x28 skeleton is too coarse to trace smoothly
HOLE_DEPTH = 0.2      # a dip this deep (a fraction of the picture's strongest ink) ringed by ink is a hole
DIP_SIGMA = 0.5       # the scale (in the picture's pixels) at which a dip in the ink is looked for
DIP_CURVATURE = 0.03  # how sharp a dip must be, as a share of the sharpest stroke's curvature
SPUR_PIXELS = 1.5     # a branch from a junction shorter than this (in the picture's pixels) is a spur
SUPERSAMPLE = 4       # strokes are drawn this many times larger, then box-averaged: the browser's anti-aliasing
POINTERS = ("mouse", "finger")

# 8-neighbour offsets, 4-neighbours first (see _neighbours).
_FOUR = ((-1, 0), (1, 0), (0, -1), (0, 1))
_DIAGONAL = ((-1, -1), (-1, 1), (1, -1), (1, 1))


@dataclass(frozen=True)
class Style:
    """How one person draws one digit on the canvas (canvas pixels unless said)."""
    size: float           # the digit's longer side
    centre: tuple[float, float]   # where the middle of the digit lands (x, y)
    slant: float          # horizontal shear: x moves by slant * (height above the middle)
    rotation: float       # degrees, clockwise on screen
    aspect: float         # width multiplied by this
    width: float          # the brush
    pointer: str          # "mouse" or "finger"
    step: float           # distance between two pointer samples along a stroke
    jitter: float         # each sample's own wander (standard deviation)
    wobble: float         # a slow wander along the stroke (amplitude): a finger is not a mouse


def random_style(rng: np.random.Generator, pointer: str | None = None, width: float = STROKE_PX) -> Style:
    """A visitor's way of drawing one digit, drawn from `rng`.

    Sizes: most people fill about two thirds of the canvas, some draw small (the brush is then thick for
    the digit), some nearly fill it (thin). Anywhere on the canvas as long as the digit fits. Slant up
    to about 19 degrees either way, rotation up to 12, width 0.8-1.2 of the height. A mouse samples
    every 3-10 px with little noise; a finger every 6-16 px, noisier, with a slow wobble.
    """
    pointer = pointer or POINTERS[int(rng.integers(len(POINTERS)))]
    kind = rng.random()
    size = rng.uniform(150, 240) if kind < 0.6 else rng.uniform(80, 150) if kind < 0.8 else rng.uniform(240, 265)
    slant, rotation, aspect = rng.uniform(-0.35, 0.35), rng.uniform(-12, 12), rng.uniform(0.8, 1.2)
    half = size / 2 + width / 2
    centre = tuple(rng.uniform(half, CANVAS_SIZE - half, 2)) if half < CANVAS_SIZE / 2 else (CANVAS_SIZE / 2,) * 2
    if pointer == "mouse":
        step, jitter, wobble = rng.uniform(3, 10), rng.uniform(0.3, 1.0), 0.0
    else:
        step, jitter, wobble = rng.uniform(6, 16), rng.uniform(0.8, 2.0), rng.uniform(1.5, 5.0)
    return Style(float(size), (float(centre[0]), float(centre[1])), float(slant), float(rotation), float(aspect),
                 float(width), pointer, float(step), float(jitter), float(wobble))


def strokes_from_image(image: np.ndarray, threshold: float = 0.5) -> list[np.ndarray]:
    """A digit picture (float [H,W] in [0,1], ink high) -> its strokes, each float [K,2] of (x, y) in the
    picture's pixels; [] for a blank picture."""
    image = np.asarray(image, dtype=np.float32)
    h, w = image.shape
    scale = WORK_SIDE / max(h, w)
    big = Image.fromarray(image).resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.Resampling.BICUBIC)
    grey = np.asarray(big, dtype=np.float64) / float(image.max() or 1.0)
    ink = (grey > threshold) & ~_holes(grey) & ~_dips(grey, sigma=DIP_SIGMA * scale)
    skeleton = skeletonize(ink)
    paths = _prune_spurs(_trace(skeleton), skeleton, SPUR_PIXELS * scale)
    return [(_smooth(p) + 0.5) / scale - 0.5 for p in paths]


def draw(strokes: list[np.ndarray], style: Style, rng: np.random.Generator) -> np.ndarray:
    """Strokes (any units) placed on the canvas by `style`, drawn as pointer paths with the round brush:
    RGBA uint8 [CANVAS_SIZE, CANVAS_SIZE, 4], white on opaque black, like the Draw page's canvas."""
    side = CANVAS_SIZE * SUPERSAMPLE
    picture = Image.new("L", (side, side), 0)
    pen = ImageDraw.Draw(picture)
    radius = style.width * SUPERSAMPLE / 2
    for path in _place(strokes, style):
        path = _as_pointer(path, style, rng) * SUPERSAMPLE
        points = [tuple(p) for p in path]
        if len(points) > 1:
            pen.line(points, fill=255, width=max(1, round(2 * radius)), joint="curve")
        for x, y in (points[0], points[-1]):  # round caps (and a dot for a single sample)
            pen.ellipse((x - radius, y - radius, x + radius, y + radius), fill=255)
    grey = np.asarray(picture.reduce(SUPERSAMPLE), dtype=np.uint8)
    rgba = np.empty((CANVAS_SIZE, CANVAS_SIZE, 4), np.uint8)
    rgba[..., :3] = grey[..., None]
    rgba[..., 3] = 255
    return rgba


def render(image: np.ndarray, seed: int, pointer: str | None = None) -> np.ndarray:
    """A digit picture redrawn on the canvas by one (seeded) visitor, as the model sees it: float32 [28,28]."""
    rng = np.random.default_rng(seed)
    style = random_style(rng, pointer)
    return canvas_to_mnist(draw(strokes_from_image(image), style, rng))


def visitor_seed(seed: int, i: int) -> int:
    """The seed of the i-th visitor of a set drawn with `seed`."""
    return int(np.random.SeedSequence([seed, i]).generate_state(1)[0])


def visitor_style(seed: int, i: int) -> Style:
    """The style the i-th visitor of render_many(..., seed) drew with."""
    return random_style(np.random.default_rng(visitor_seed(seed, i)))


def render_many(images: np.ndarray, seed: int) -> np.ndarray:
    """Every picture redrawn by its own visitor (the i-th with visitor_seed(seed, i)): float32 [N,28,28]."""
    out = np.zeros((len(images), 28, 28), np.float32)
    for i, image in enumerate(images):
        out[i] = render(image, visitor_seed(seed, i))
    return out


def _holes(grey: np.ndarray, depth: float = HOLE_DEPTH) -> np.ndarray:
    """Where the ink dips and is ringed by more ink all round: a loop's hole, even where a small blurred
    picture (an 8x8 optdigit) left it above the threshold. Found by filling every basin of the picture
    from its border inwards (greyscale reconstruction by erosion) and keeping what filled by `depth`."""
    seed = grey.copy()
    seed[1:-1, 1:-1] = grey.max()
    return reconstruction(seed, grey, method="erosion") - grey > depth


def _dips(grey: np.ndarray, sigma: float) -> np.ndarray:
    """Where the picture curves up in every direction (both eigenvalues of its Hessian positive, the
    larger above DIP_CURVATURE of the strongest stroke's curvature) and lies HOLE_DEPTH / 2 below the
    brightest ink within `sigma` of it: a loop's middle blurred shut but still dimmer than the ink round
    it, even where a channel leads out of it so it holds no basin. A pen stroke's inside never dips
    that way (across a stroke the ink curves down), and the enlargement's faint ripples are not deep."""
    larger, smaller = hessian_matrix_eigvals(hessian_matrix(grey, sigma=sigma, order="rc",
                                                            use_gaussian_derivatives=False))
    deep = maximum_filter(grey, size=max(3, round(2 * sigma) + 1)) - grey > HOLE_DEPTH / 2
    return deep & (smaller > 0) & (larger > DIP_CURVATURE * float(np.abs(smaller).max()))


# --- tracing the skeleton ------------------------------------------------------------------------------

def _neighbours(skeleton: np.ndarray, r: int, c: int) -> list[tuple[int, int]]:
    """A skeleton pixel's neighbours: its 4-neighbours, and a diagonal one only where no 4-neighbour
    already joins the two (so a corner is one path, not a three-pixel loop)."""
    h, w = skeleton.shape
    inside = lambda y, x: 0 <= y < h and 0 <= x < w and skeleton[y, x]  # noqa: E731
    found = [(r + dr, c + dc) for dr, dc in _FOUR if inside(r + dr, c + dc)]
    for dr, dc in _DIAGONAL:
        if inside(r + dr, c + dc) and not inside(r + dr, c) and not inside(r, c + dc):
            found.append((r + dr, c + dc))
    return found


def _trace(skeleton: np.ndarray) -> list[np.ndarray]:
    """The skeleton as paths of (x, y) points: one path between each pair of ends or junctions it joins,
    and each closed loop (an "0" with nothing attached) as one path that comes back to its start."""
    pixels = list(zip(*np.nonzero(skeleton)))
    links = {p: _neighbours(skeleton, *p) for p in pixels}
    nodes = [p for p in pixels if len(links[p]) != 2]
    walked: set[tuple] = set()
    paths = []

    def walk(start, first):
        path, prev, cur = [start, first], start, first
        walked.update({(start, first), (first, start)})
        while cur not in node_set and cur != start:
            nxt = next((q for q in links[cur] if q != prev and (cur, q) not in walked), None)
            if nxt is None:
                break
            walked.update({(cur, nxt), (nxt, cur)})
            path.append(nxt)
            prev, cur = cur, nxt
        return path

    node_set = set(nodes)
    for node in nodes:
        if not links[node]:  # a lone dot
            paths.append([node])
        for q in links[node]:
            if (node, q) not in walked:
                paths.append(walk(node, q))
    for p in pixels:  # loops: every pixel has two neighbours, none is a node
        if p not in node_set and any((p, q) not in walked for q in links[p]):
            paths.append(walk(p, links[p][0]))
    return [np.array([(c, r) for r, c in path], np.float64) for path in paths]


def _prune_spurs(paths: list[np.ndarray], skeleton: np.ndarray, length: float) -> list[np.ndarray]:
    """Drop the thinning's spurs: a path from a free end to a junction no longer than `length` is a bump
    or a corner of a thick stroke, not a stroke the writer drew."""
    if len(paths) < 2:
        return paths
    kept = []
    for path in paths:
        degrees = [len(_neighbours(skeleton, int(p[1]), int(p[0]))) for p in (path[0], path[-1])]
        arc = float(np.linalg.norm(np.diff(path, axis=0), axis=1).sum()) if len(path) > 1 else 0.0
        if arc < length and min(degrees) <= 1 and max(degrees) >= 3:
            continue
        kept.append(path)
    return kept or paths


def _smooth(path: np.ndarray, window: int = 5) -> np.ndarray:
    """A moving average along the path (its ends kept in place): pixel staircases become lines."""
    if len(path) <= 2:
        return path
    closed = len(path) > 3 and np.array_equal(path[0], path[-1])
    k = min(window, len(path) - (len(path) + 1) % 2)
    kernel = np.ones(k) / k
    if closed:
        body = path[:-1]
        padded = np.concatenate([body[-(k // 2):], body, body[:k // 2]])
        out = np.stack([np.convolve(padded[:, i], kernel, mode="valid") for i in range(2)], 1)
        return np.concatenate([out, out[:1]])
    padded = np.concatenate([np.repeat(path[:1], k // 2, 0), path, np.repeat(path[-1:], k // 2, 0)])
    out = np.stack([np.convolve(padded[:, i], kernel, mode="valid") for i in range(2)], 1)
    out[0], out[-1] = path[0], path[-1]
    return out


# --- placing and drawing -------------------------------------------------------------------------------

def _place(strokes: list[np.ndarray], style: Style) -> list[np.ndarray]:
    """The strokes slanted, rotated and stretched about their middle, scaled so the digit's longer side is
    style.size, and centred on style.centre (canvas pixels)."""
    if not strokes:
        return []
    points = np.concatenate(strokes)
    middle = (points.min(0) + points.max(0)) / 2
    angle = math.radians(style.rotation)
    cos, sin = math.cos(angle), math.sin(angle)
    # slant (shear), then width stretch, then rotation: y grows downwards, so a positive slant leans right.
    shape = np.array([[cos, -sin], [sin, cos]]) @ np.diag([style.aspect, 1.0]) @ np.array([[1.0, -style.slant], [0, 1]])
    moved = [(s - middle) @ shape.T for s in strokes]
    every = np.concatenate(moved)
    extent = float((every.max(0) - every.min(0)).max()) or 1.0
    mid = (every.min(0) + every.max(0)) / 2
    scale = style.size / extent
    return [(m - mid) * scale + np.array(style.centre) for m in moved]


def _as_pointer(path: np.ndarray, style: Style, rng: np.random.Generator) -> np.ndarray:
    """A path as a pointer reports it: samples every ~style.step pixels along it, each off by a little
    noise, the finger's also by a slow wobble; kept on the canvas."""
    if len(path) > 1:
        arc = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(path, axis=0), axis=1))])
        gaps = style.step * rng.uniform(0.6, 1.4, int(arc[-1] / (0.6 * style.step)) + 2)
        at = np.concatenate([[0.0], np.cumsum(gaps)])
        at = np.append(at[at < arc[-1]], arc[-1])
        path = np.stack([np.interp(at, arc, path[:, 0]), np.interp(at, arc, path[:, 1])], 1)
        if style.wobble:
            phase, wavelength = rng.uniform(0, 2 * math.pi, 2), rng.uniform(60, 140, 2)
            path = path + style.wobble * np.stack([np.sin(at / wavelength[0] * 2 * math.pi + phase[0]),
                                                   np.sin(at / wavelength[1] * 2 * math.pi + phase[1])], 1)
    path = path + rng.normal(0.0, style.jitter, path.shape)
    return np.clip(path, 0.0, CANVAS_SIZE - 1.0)
