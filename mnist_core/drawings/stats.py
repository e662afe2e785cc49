"""How a set of 28x28 digits looks, measured the same way on MNIST and on the visitors' drawings.

For the Dataset page's "how the drawings differ from MNIST": per digit, the mean image, and three
measures of each picture, averaged:

- ink: how much ink the picture holds, in pixels' worth of full ink (its pixel sum / 255);
- stroke width: the ink's area over half its outline's length, in pixels (the ink at half
  intensity or more). A stroke of width w and length L has area wL and an outline of about 2L, so
  this reads w for a stroke much longer than it is wide (the outline is counted in pixel edges, so
  a diagonal stroke reads a little thinner: the same in both sets, so the comparison holds);
- slant: how far the digit leans, in degrees, positive when its top leans right: the angle whose
  tangent is the shear that would stand it upright (its intensity's second moments, -cov(x, y) /
  var(y), y pointing down), the measure MNIST's deslanting literature uses.

Plain numpy over uint8 [N,28,28]: a page caches what it computes for MNIST.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_HALF_INK = 128


def ink(images: np.ndarray) -> np.ndarray:
    """float [N]: each picture's ink, in pixels' worth of full ink."""
    return np.asarray(images, dtype=np.float64).reshape(len(images), -1).sum(1) / 255.0


def stroke_width(images: np.ndarray) -> np.ndarray:
    """float [N]: each picture's stroke width in pixels (NaN for a picture with no ink)."""
    mask = np.asarray(images) >= _HALF_INK
    padded = np.pad(mask, ((0, 0), (1, 1), (1, 1)))
    outline = (np.count_nonzero(padded[:, 1:, :] != padded[:, :-1, :], axis=(1, 2))
               + np.count_nonzero(padded[:, :, 1:] != padded[:, :, :-1], axis=(1, 2)))
    area = np.count_nonzero(mask, axis=(1, 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(outline > 0, area / (outline / 2), np.nan)


def slant(images: np.ndarray) -> np.ndarray:
    """float [N]: how far each digit leans, in degrees, positive when its top leans right (NaN for a
    picture with no ink)."""
    w = np.asarray(images, dtype=np.float64)
    n, h, wd = w.shape
    ys, xs = np.arange(h, dtype=np.float64), np.arange(wd, dtype=np.float64)
    total = w.sum((1, 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        cy = (w.sum(2) * ys).sum(1) / total
        cx = (w.sum(1) * xs).sum(1) / total
        dy = ys[None, :] - cy[:, None]
        dx = xs[None, :] - cx[:, None]
        var_y = (w.sum(2) * dy ** 2).sum(1) / total
        cov = np.einsum("nij,ni,nj->n", w, dy, dx) / total
        return np.degrees(np.arctan(-cov / var_y))


@dataclass
class SetStats:
    """A set of digits measured: per digit 0-9 (index = digit), and over the whole set."""

    count: np.ndarray         # int [10]: pictures of each digit
    mean_image: np.ndarray    # float32 [10,28,28] in [0,1]: zeros for a digit with no picture
    ink: np.ndarray           # float [10]: mean ink per digit (NaN for a digit with no picture)
    stroke_width: np.ndarray  # float [10]
    slant: np.ndarray         # float [10]
    overall: dict             # {"ink", "stroke_width", "slant"}: means over every picture

    def rows(self) -> list[dict]:
        """One row per digit, for a table."""
        return [{"digit": d, "count": int(self.count[d]), "ink": _num(self.ink[d]),
                 "stroke width": _num(self.stroke_width[d]), "slant": _num(self.slant[d])} for d in range(10)]


def describe(images: np.ndarray, labels: np.ndarray) -> SetStats:
    """Measure a set of uint8 pictures [N,28,28] with their labels [N] (see the module docstring)."""
    images = np.asarray(images)
    labels = np.asarray(labels, dtype=np.int64)
    measures = {"ink": ink(images), "stroke_width": stroke_width(images), "slant": slant(images)}
    count = np.bincount(labels, minlength=10)[:10]
    mean_image = np.zeros((10, *images.shape[1:]), np.float32)
    per_digit = {name: np.full(10, np.nan) for name in measures}
    for d in range(10):
        of_d = labels == d
        if not of_d.any():
            continue
        mean_image[d] = images[of_d].mean(0, dtype=np.float64) / 255.0
        for name, values in measures.items():
            per_digit[name][d] = _mean(values[of_d])
    overall = {name: _num(_mean(values)) for name, values in measures.items()}
    return SetStats(count=count, mean_image=mean_image, overall=overall, **per_digit)


def _mean(values: np.ndarray) -> float:
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if len(finite) else float("nan")


def _num(value: float):
    """A measure as a table shows it: None where there is nothing to measure."""
    return None if not np.isfinite(value) else round(float(value), 3)
