"""Input conventions of MNIST classifiers made elsewhere, and how the lab finds the one a model uses.

Every lab model takes float [N,1,28,28] with pixels in [0,1], ink bright on black. A classifier trained
in Keras, PyTorch or scikit-learn may expect another layout, another scale, or ink inverted:

    layout   NCHW [N,1,28,28] | NHWC [N,28,28,1] | NHW [N,28,28] | flat [N,784]
    scale    0..1 | 0..255 | mean/std ((x - 0.1307) / 0.3081, MNIST's own) | -1..1
    ink      normal | inverted (1 - x before the scale: dark digits on white)
    output   logits (log-probabilities read as logits too) | probabilities

A `Convention` turns the lab's [N,1,28,28] in [0,1] into the model's input (`model_input`). The
layouts a model admits follow from its input shape (`admitted_layouts`); the scale and ink cannot be
read from a file, so `find` scores every admitted convention on the same fixed sample of training
images (`SAMPLE_SIZE`) and takes the most accurate; the output kind is read from what the model
returns on them (rows of numbers in [0,1] that sum to 1 are probabilities). A best score below
`NEAR_CHANCE` is said to be near chance (ten classes: 10%) rather than shown as a finding.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable, Iterable, Optional

import numpy as np
import torch

from ..data import MNIST_MEAN, MNIST_STD

LAYOUTS = {"NCHW": (1, 28, 28), "NHWC": (28, 28, 1), "NHW": (28, 28), "flat": (784,)}
SCALES = ("0..1", "0..255", "mean/std", "-1..1")
INKS = ("normal", "inverted")
OUTPUTS = ("logits", "log-probabilities", "probabilities")
SAMPLE_SIZE = 512     # training images each convention is scored on
SAMPLE_SEED = 0
NEAR_CHANCE = 0.2     # ten classes: guessing scores 10%


@dataclass(frozen=True)
class Convention:
    layout: str = "NCHW"
    scale: str = "0..1"
    ink: str = "normal"
    output: str = "logits"

    def model_input(self, x: torch.Tensor) -> torch.Tensor:
        """The lab's float [N,1,28,28] in [0,1] as this convention's input."""
        if self.ink == "inverted":
            x = 1 - x
        if self.scale == "0..255":
            x = x * 255
        elif self.scale == "mean/std":
            x = (x - MNIST_MEAN) / MNIST_STD
        elif self.scale == "-1..1":
            x = x * 2 - 1
        return x.reshape((len(x),) + LAYOUTS[self.layout])  # one channel: NHWC is the same numbers

    @property
    def text(self) -> str:
        """In a reader's words: "NHWC, pixels 0..1, logits"."""
        ink = " inverted (dark ink on white)" if self.ink == "inverted" else ""
        return f"{self.layout}, pixels {self.scale}{ink}, {self.output}"

    @property
    def key(self) -> tuple[str, str, str]:
        """What tells it apart from the other candidates (the output kind is read, not chosen)."""
        return self.layout, self.scale, self.ink


def admitted_layouts(dims: list[Optional[int]]) -> tuple[str, ...]:
    """The layouts an input shape (its dimensions after the batch; None where a name stands) admits."""
    return tuple(name for name, shape in LAYOUTS.items()
                 if len(shape) == len(dims) and all(d is None or d == s for d, s in zip(dims, shape)))


def candidates(layouts: Iterable[str], layout: str | None = None, scale: str | None = None,
               ink: str | None = None) -> list[Convention]:
    """Every convention of the admitted layouts that agrees with what the user fixed."""
    return [Convention(lay, sc, ik) for lay in layouts for sc in SCALES for ik in INKS
            if layout in (None, lay) and scale in (None, sc) and ink in (None, ik)]


@dataclass(frozen=True)
class Reading:
    """The convention a model was read with, and how well it reads the sample."""
    convention: Convention
    accuracy: float                      # on the sample, with this convention
    sample: int                          # images scored
    scores: tuple[tuple[str, float], ...]   # every candidate scored: (text without output, accuracy)
    chosen: bool = False                 # the user picked it rather than the score

    @property
    def near_chance(self) -> bool:
        return self.accuracy < NEAR_CHANCE

    def describe(self) -> str:
        """"NHWC, pixels 0..1, logits: 97.9% on 512 training images" (and a warning near chance)."""
        line = f"{self.convention.text}: {self.accuracy:.1%} on {self.sample} training images"
        if self.near_chance:
            best = "" if self.chosen else "the best convention the lab knows, "
            line += f" ({best}near chance: 10% is guessing)"
        return line


def output_kind(raw: np.ndarray) -> str:
    """"probabilities" for rows in [0,1] summing to 1, "log-probabilities" for rows whose exponentials
    do, else "logits"."""
    raw = np.asarray(raw, np.float64)
    if len(raw) == 0 or not np.isfinite(raw).all():
        return "logits"
    if raw.min() >= -1e-6 and raw.max() <= 1 + 1e-6 and np.allclose(raw.sum(1), 1, atol=1e-3):
        return "probabilities"
    if raw.max() <= 1e-6 and np.allclose(np.exp(raw).sum(1), 1, atol=1e-3):
        return "log-probabilities"
    return "logits"


def find(run: Callable[[Convention, torch.Tensor], torch.Tensor], images_u8: np.ndarray, labels: np.ndarray,
         options: list[Convention], among: Optional[list[Convention]] = None) -> Reading:
    """Score each of `options` on the images and take the most accurate of `among` (default: all of
    them; the first on a tie), its output kind read from its answers.

    `run(convention, x)` returns the model's raw scores [N,10] for the lab's input x [N,1,28,28] in [0,1].
    """
    x = torch.as_tensor(np.asarray(images_u8)).float().div(255)[:, None]
    labels = np.asarray(labels)
    scored = []
    for convention in options:
        with torch.inference_mode():
            raw = run(convention, x).float().numpy()
        acc = float((raw.argmax(1) == labels).mean()) if np.isfinite(raw).all() else 0.0
        scored.append((convention, acc, raw))
    pool = [s for s in scored if among is None or s[0] in among]
    if not pool:
        raise ValueError("no convention to choose from")
    best, acc, raw = max(pool, key=lambda s: s[1])  # max keeps the first of equals
    scores = tuple((c.text.rsplit(", ", 1)[0], a) for c, a, _ in scored)
    return Reading(replace(best, output=output_kind(raw)), acc, len(labels), scores,
                   chosen=among is not None and len(among) == 1)
