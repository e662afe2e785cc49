"""The visitors' drawings in a run: mixed into its training images, and its test on the held-out ones.

`drawings_weight` (TrainConfig) is the share of the training images that are drawings: that many
MNIST images make room (a random subset of them stays out), and the drawings of the set's training
part fill the places, each repeated as often as the share needs, in a shuffled order. So the run's
steps are what they would be without drawings (progress, ETA and a host's bounds on steps hold as
they are), and validation stays on MNIST. The held-out part (drawings.givers: a fifth of the givers,
by giver) is never trained on; a completed run is tested on it beside the MNIST test set, and that
accuracy is recorded as a "drawings" metric row and in the checkpoint's metrics.

A run with drawings_weight 0 never reads the set, nor draws a random number for it: it is the run it
was before drawings existed.
"""

from __future__ import annotations

from typing import Optional

import torch

from ..drawings import drawing_set
from ..errors import ConfigError


def mix_in(weight: float, x_train: torch.Tensor, y_train: torch.Tensor,
           gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """MNIST's training images and labels with a `weight` share of them replaced by the set's training
    drawings (see the module docstring); ConfigError when the set has none to train on."""
    images, labels, _ = drawing_set(part="train")
    if not len(images):
        raise ConfigError("drawings_weight: the drawing set has no drawings to train on yet (set it to 0)")
    n = len(x_train)
    k = min(n - 1, max(1, round(weight * n)))
    kept = torch.randperm(n, generator=gen)[:n - k].sort().values
    picks = torch.randperm(len(images), generator=gen)[torch.arange(k) % len(images)]
    return (torch.cat([x_train[kept], torch.from_numpy(images)[picks].to(x_train.device)]),
            torch.cat([y_train[kept], torch.from_numpy(labels)[picks].to(y_train.device)]))


def held_out() -> Optional[tuple[torch.Tensor, torch.Tensor]]:
    """(uint8 pictures, int64 digits) of the set's held-out part, or None when it has none yet."""
    images, labels, _ = drawing_set(part="held-out")
    return (torch.from_numpy(images), torch.from_numpy(labels)) if len(images) else None
