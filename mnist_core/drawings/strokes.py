"""A given drawing's fields and their checks: the strokes, the pointer, the digits, the picture.

Every field comes from a visitor's browser (or from an imported file), so each is checked for type
and size before anything is walked, and refused with one line (DrawingRefused) that names what is
wrong without repeating what was sent.

The strokes, as the Draw page's canvas sends them and as `strokes.jsonl` keeps them:

    strokes = [[[x, y, t], [x, y, t], ...], ...]   one list of points per stroke, in drawing order

`x`, `y` are canvas pixels (0 to the canvas side, `canvas`, 280 on the Draw page) from the top
left; `t` is milliseconds since the drawing's first point, never decreasing. At most MAX_STROKES
strokes, MAX_POINTS points in all, MAX_DURATION_MS from first point to last. Checked points are
kept rounded (x and y to 0.1 pixel, t to the millisecond), so a checked drawing checks again to
itself: what is exported imports to the same bytes.

The picture is the 28x28 image the model saw (preprocess.canvas_to_mnist: MNIST's own 20x20 box and
centre of mass), kept as MNIST keeps its images: uint8, 0 background, 255 full ink.
"""

from __future__ import annotations

import hashlib
import json
import math
import numbers
from typing import Any, Optional

import numpy as np

from ..errors import DrawingRefused
from ..preprocess import CANVAS_SIZE, INK_THRESHOLD, SIZE

POINTERS = ("mouse", "touch", "pen")  # what drew it (the browser's PointerEvent.pointerType)
MAX_STROKES = 64
MAX_POINTS = 2_000           # in all strokes together (a pen at 240 Hz draws a digit in a few hundred)
MAX_DURATION_MS = 60_000     # first point to last
MAX_STROKES_JSON_BYTES = 100_000  # strokes sent as JSON text: refused past this before it is parsed
CANVAS_SIDES = (28, 2048)    # a canvas side a drawing may come from (an imported set's host may differ)
MIN_INK_PIXELS = 3           # a picture with fewer pixels of ink than this is blank


def check_strokes(strokes: Any, canvas: Any = CANVAS_SIZE) -> list:
    """The strokes, checked and rounded (see the module docstring), or DrawingRefused.

    `strokes` is the list itself or its JSON text (capped at MAX_STROKES_JSON_BYTES before parsing)."""
    side = check_canvas(canvas)
    if isinstance(strokes, (str, bytes, bytearray)):
        if len(strokes) > MAX_STROKES_JSON_BYTES:
            raise DrawingRefused(f"the drawing's strokes are too long (over {MAX_STROKES_JSON_BYTES // 1000} KB)")
        try:
            strokes = json.loads(strokes, parse_constant=_no_constant)
        except (ValueError, RecursionError):
            raise DrawingRefused("the drawing's strokes are not JSON") from None
    if not isinstance(strokes, (list, tuple)) or not strokes:
        raise DrawingRefused("the drawing has no strokes: a list of strokes, each a list of [x, y, t] points")
    if len(strokes) > MAX_STROKES:
        raise DrawingRefused(f"the drawing has {len(strokes)} strokes; at most {MAX_STROKES} are kept")
    checked, total, last_t = [], 0, 0
    for s, stroke in enumerate(strokes, start=1):
        if not isinstance(stroke, (list, tuple)) or not stroke:
            raise DrawingRefused(f"stroke {s} of the drawing is not a list of [x, y, t] points")
        total += len(stroke)
        if total > MAX_POINTS:  # counted before the stroke's points are walked
            raise DrawingRefused(f"the drawing has over {MAX_POINTS:,} points; at most {MAX_POINTS:,} are kept")
        points = []
        for p, point in enumerate(stroke, start=1):
            where = f"point {p} of stroke {s}"
            if not isinstance(point, (list, tuple)) or len(point) != 3 or not all(map(_is_number, point)):
                raise DrawingRefused(f"{where} is not [x, y, t] (three numbers)")
            x, y, t = map(_finite, point)
            if None in (x, y, t):
                raise DrawingRefused(f"{where} is not three finite numbers")
            if not (0 <= x <= side and 0 <= y <= side):
                raise DrawingRefused(f"{where} lies outside the {side}x{side} canvas")
            t_ms = round(t)
            if t_ms < last_t:
                raise DrawingRefused(f"{where} goes back in time: t must never decrease")
            if t_ms > MAX_DURATION_MS:
                raise DrawingRefused(f"the drawing lasts over {MAX_DURATION_MS // 1000} s; at most "
                                     f"{MAX_DURATION_MS // 1000} s are kept")
            last_t = t_ms
            points.append([round(x, 1), round(y, 1), t_ms])
        checked.append(points)
    return checked


def check_canvas(canvas: Any) -> int:
    """A canvas side in pixels (a whole number within CANVAS_SIDES), or DrawingRefused."""
    low, high = CANVAS_SIDES
    side = _finite(canvas) if _is_number(canvas) else None
    if side is None or not side.is_integer() or not low <= side <= high:
        raise DrawingRefused(f"the canvas side must be a whole number of pixels from {low} to {high}")
    return int(side)


def _finite(value: Any) -> Optional[float]:
    """A number as a finite float; None for NaN, an infinity, or an int too large for a float."""
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _no_constant(name: str):
    raise ValueError(name)  # NaN, Infinity: not JSON, though Python's parser takes them


def check_pointer(pointer: Any) -> str:
    if not isinstance(pointer, str) or pointer not in POINTERS:
        raise DrawingRefused(f"the pointer type must be one of {', '.join(POINTERS)}")
    return pointer


def check_digit(digit: Any, what: str = "the digit") -> int:
    """A digit 0 to 9 (an int, not a bool nor a string)."""
    if not isinstance(digit, numbers.Integral) or isinstance(digit, bool) or not 0 <= digit <= 9:
        raise DrawingRefused(f"{what} must be a whole number from 0 to 9")
    return int(digit)


def check_predicted(predicted: Any) -> Optional[int]:
    """The model's answer, a digit, or None when there was none."""
    return None if predicted is None else check_digit(predicted, "the model's answer")


def check_picture(picture: Any) -> np.ndarray:
    """The 28x28 picture as uint8 (0 background, 255 full ink), or DrawingRefused: the wrong shape or
    values, or blank (fewer than MIN_INK_PIXELS pixels of ink).

    Takes what canvas_to_mnist gives (float [28,28] in [0,1]) or uint8 [28,28] as MNIST stores it."""
    array = np.asarray(picture) if isinstance(picture, np.ndarray) else None
    if array is None or array.shape != (SIZE, SIZE):
        raise DrawingRefused(f"the picture must be a {SIZE}x{SIZE} image")
    if array.dtype == np.uint8:
        pixels = np.ascontiguousarray(array)
    elif array.dtype.kind == "f":
        if not np.isfinite(array).all() or array.min() < 0 or array.max() > 1:
            raise DrawingRefused("the picture's values must lie between 0 and 1")
        pixels = np.rint(array.astype(np.float64) * 255).astype(np.uint8)
    else:
        raise DrawingRefused("the picture must be uint8 (0 to 255) or float (0 to 1)")
    if np.count_nonzero(pixels > INK_THRESHOLD * 255) < MIN_INK_PIXELS:
        raise DrawingRefused("the drawing is blank: draw a digit first")
    return pixels


def picture_key(pixels: np.ndarray) -> str:
    """What makes two drawings duplicates: the same 28x28 picture, byte for byte (SHA-256, hex)."""
    return hashlib.sha256(np.ascontiguousarray(pixels, dtype=np.uint8).tobytes()).hexdigest()


def strokes_text(strokes: list, canvas: int) -> str:
    """Checked strokes as the registry keeps them (compact JSON, with the canvas side)."""
    return json.dumps({"canvas": canvas, "strokes": strokes}, separators=(",", ":"))
