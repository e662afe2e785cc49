"""The types that cross processes: a run's status and its metric rows.

The training loop (in the worker process) reports metric rows; the worker writes them to the
registry; pages and the CLI read them back. It is one row type all the way, with one name per split:
"train" (one row per step), "val" (at each validation), "test" (once, at the end of a completed
run) and "drawings" (after "test", for a run trained on the visitors' drawings: their held-out
part). A run's status is a `RunStatus`, a str enum, so it compares equal to the plain strings the
registry stores ("queued", "running", ...).
"""

from __future__ import annotations

from enum import StrEnum
from typing import NotRequired, Optional, TypedDict


class RunStatus(StrEnum):
    QUEUED = "queued"          # waiting in line, or starting once claimed (registry.queue: Run.state)
    RUNNING = "running"
    COMPLETED = "completed"    # trained to the end, checkpoint saved, test accuracy known
    FAILED = "failed"          # with a one-line error
    CANCELLED = "cancelled"    # asked to stop (or SIGTERM); no test accuracy

    @property
    def is_live(self) -> bool:
        return self in LIVE


LIVE = (RunStatus.QUEUED, RunStatus.RUNNING)
ENDED = (RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED)

SPLITS = ("train", "val", "test", "drawings")


class MetricRow(TypedDict):
    """One point of a run's curves: a training step, a validation or the test pass."""

    split: str                      # one of SPLITS
    step: int                       # training steps done when it was measured
    epoch: float                    # epochs done, fractional
    loss: Optional[float]
    accuracy: Optional[float]       # train: the batch's; val and test: the whole set's
    images_per_s: Optional[float]   # train rows: over the last couple of seconds; else None
    time: NotRequired[float]        # when the registry recorded it (rows read back from it carry it)


def metric_row(split: str, step: int, epoch: float, loss: Optional[float], accuracy: Optional[float],
               images_per_s: Optional[float] = None) -> MetricRow:
    return MetricRow(split=split, step=step, epoch=epoch, loss=loss, accuracy=accuracy, images_per_s=images_per_s)
