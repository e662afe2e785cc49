"""The live read model: what the Train page, Home and the sidebar show about runs, computed here so
the pages only draw.

- `smooth(values, weight, log)`: the bold curve over a noisy per-step series. A debiased
  exponential moving average, as TensorBoard draws it: the plain EMA starts from 0 and so lags and
  sags at the start; dividing by (1 - weight^n) removes that bias. The loss is smoothed in log space
  (its axis is logarithmic): a linear average of 1e5 and 2.3 is 5e4 for a long while, a geometric one
  follows the loss down as fast as the eye does.
- `smoothing_weight(n)`, `thin(rows)`, `decades(values)`: how much to smooth, how many points to
  send to the browser, the loss axis in whole decades (so it rarely changes during a run).
- `progress(run, last_row)`: the fraction done and one line of text (epoch, step, ETA, images/s).
- `watch_choices(...)`, `pick_watched(...)`: which runs a visitor may watch, and the default one.
- `health(run, metrics)` and `outcome(run, metrics)`: a run that diverged or stayed near chance ends
  with a warning, never with a green success box; the box shows a checkpoint's file name, never a
  server path.
- `collapse(metrics)`: a run that learned, then collapsed. The loop keeps the weights that did best
  on validation (training/loop.py), so such a run's checkpoint and test accuracy can look fine while
  the training itself ended broken: its box is a warning that says when it collapsed and which step
  the saved model is from; the sweep summary and the class leaderboard mark it too.
- `for_visitor(text)`: text from a run (its error) in the form's words, with server paths cut to
  file names.
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass, replace
from pathlib import PurePath
from typing import Iterable, Optional, Sequence

from . import executors, form
from .registry import Run

CHANCE_ACCURACY = 0.2  # guessing gets 10% on MNIST; below 20% a network has not learned to read digits
COLLAPSE_DROP = 0.2    # validation this far (20 points) below its best, to the end: training collapsed
GUESS_LOSS = math.log(10)  # the cross-entropy of a network that gives every digit the same odds


# --- chart maths ----------------------------------------------------------------------------------

def smoothing_weight(n_points: int) -> float:
    """The EMA weight for a series of n points: a time constant of about 2% of the run (at least 2
    points, at most 100), so a short run is barely smoothed and a long one reads as a curve."""
    tau = min(100.0, max(2.0, n_points / 50))
    return 1.0 - 1.0 / tau


def smooth(values: Sequence[Optional[float]], weight: float, log: bool = False) -> list[Optional[float]]:
    """Debiased exponential moving average (TensorBoard's): out[i] = EMA / (1 - weight^k) after k finite
    points. Non-finite or missing values pass through unchanged and do not disturb the average. With
    `log`, the average runs over log(value) (values must be positive; others pass through)."""
    out: list[Optional[float]] = []
    acc, k = 0.0, 0
    for v in values:
        usable = v is not None and math.isfinite(v) and (not log or v > 0)
        if not usable:
            out.append(v)
            continue
        x = math.log(v) if log else v
        acc = weight * acc + (1 - weight) * x
        k += 1
        y = acc / (1 - weight ** k) if weight > 0 else acc
        out.append(math.exp(y) if log else y)
    return out


def thin(rows: list, limit: int = 1500) -> list:
    """At most about `limit` evenly spaced rows, the last one always kept (a long run's every step would
    only slow the browser)."""
    step = max(1, math.ceil(len(rows) / limit))
    if step == 1:
        return list(rows)
    kept = rows[::step]
    if kept[-1] is not rows[-1]:
        kept.append(rows[-1])
    return kept


def decades(values: Iterable[Optional[float]]) -> list[int]:
    """A log axis' range in whole decades (log10 units) around the positive finite values."""
    positive = [v for v in values if v is not None and math.isfinite(v) and v > 0]
    if not positive:
        return [-2, 1]
    return [math.floor(math.log10(min(positive))), math.ceil(math.log10(max(positive)))]


class RunRows:
    """A run's metric rows as one page session holds them, topped up with only the newer rows.

    A live chart redraws every couple of seconds; re-reading a long run's whole history each time
    would cost the server more with every step. The worker writes a validation row right after the
    training row of its step, so asking for the rows from the last step held onwards (and dropping
    the ones already held) misses none.
    """

    def __init__(self, run_id: str):
        self.run_id = run_id
        self.rows: list[dict] = []
        self._held: set[tuple[str, int]] = set()

    def top_up(self, fetch) -> list[dict]:
        """`fetch(run_id, after_step=N)` returns rows with step > N in step order (registry.get_metrics)."""
        after = self.rows[-1]["step"] - 1 if self.rows else -1
        for row in fetch(self.run_id, after_step=after):
            key = (row["split"], row["step"])
            if key not in self._held:
                self._held.add(key)
                self.rows.append(row)
        return self.rows


# --- progress -------------------------------------------------------------------------------------

def fmt_seconds(s: Optional[float]) -> str:
    if s is None:
        return "–"
    s = int(s)
    return f"{s // 60}m {s % 60:02d}s" if s >= 60 else f"{s}s"


@dataclass
class Progress:
    fraction: float
    text: str


def places_in_line(all_runs: list[Run], executor: Optional[executors.Executor] = None) -> dict[str, int]:
    """1-based place in line of each run that waits in the queue of the executor in use (the local
    slots, or a Ray cluster's scheduler): executors.for_host().places_in_line."""
    return (executor or executors.for_host()).places_in_line(all_runs)


def progress(run: Run, last: Optional[dict], all_runs: Optional[list[Run]] = None,
             now: Optional[float] = None) -> Progress:
    """Where a run is: queued (its place in line), starting, or epoch / step / ETA / images per second
    from its newest training row; a finished run is at its end."""
    now = time.time() if now is None else now
    if run.status == "completed":
        return Progress(1.0, "completed")
    if not run.is_live:
        return Progress(run.progress, run.status)
    executor = executors.for_host()
    position = places_in_line(all_runs or [run], executor).get(run.id)
    if position:
        room = f"a training slot frees ({cap} at a time)" if (cap := executor.capacity()) else "the cluster has room"
        return Progress(0.0, f"Queued: number {position} in line. It starts by itself when {room}.")
    if run.status == "queued" or not last:
        return Progress(0.0, "Starting: loading data and building the model...")
    # One step count for the bar, the text, the ETA and the sidebar (short_progress): the run record's (its
    # heartbeat counts steps before their rows are written), or the newest row's when that is ahead. The text
    # took the row's and the bar the record's, so "step 1679" stood beside the sidebar's "step 1,661".
    run = replace(run, steps=max(run.steps or 0, last["step"]))
    total = run.total_steps
    text = (f"epoch {last['epoch']:.2f} / {run.config.get('epochs')} · step {run.steps:,}"
            + (f" / {total:,}" if total else "")
            + f" · ETA {fmt_seconds(run.eta(now))} · {last.get('images_per_s') or 0:,.0f} images/s")
    return Progress(run.progress, text)


def short_progress(run: Run, all_runs: Optional[list[Run]] = None) -> Progress:
    """One short line for the sidebar and Home: model, status (or place in line), percent and step."""
    position = places_in_line(all_runs or [run]).get(run.id)
    state = f"queued, number {position} in line" if position else ("starting" if run.status == "queued" else run.status)
    text = f"{run.config.get('model')} · {state} · {run.progress:.0%}"
    if run.status == "running" and run.steps:
        text += f" · step {run.steps:,}"  # moves visibly even when a long run's percentage does not
    return Progress(run.progress, text)


# --- which run to watch ---------------------------------------------------------------------------

def watch_choices(all_runs: list[Run], owner: Optional[str], keep: Optional[str] = None) -> list[Run]:
    """The runs a visitor can pick to watch, newest first: every live run, the visitor's own runs and
    the one being watched (`keep`, so a run someone else started stays on screen after it ends); with
    none of those, the newest run (so a first visit shows what the lab did last)."""
    chosen = [r for r in reversed(all_runs)
              if r.is_live or (owner is not None and r.owner == owner) or (keep is not None and r.id == keep)]
    if not chosen and all_runs:
        chosen = [all_runs[-1]]
    return chosen


def pick_watched(choices: list[Run], wanted: Optional[str], owner: Optional[str]) -> Optional[Run]:
    """The run to show: the one asked for if it can be watched; else the visitor's newest live run, the
    newest live run, the visitor's newest run, the newest run."""
    by_id = {r.id: r for r in choices}
    if wanted in by_id:
        return by_id[wanted]
    for keep in (lambda r: r.is_live and r.owner == owner and owner is not None, lambda r: r.is_live,
                 lambda r: r.owner == owner and owner is not None, lambda r: True):
        for r in choices:  # newest first
            if keep(r):
                return r
    return None


def can_change(run: Run, owner: Optional[str]) -> bool:
    """Whether this visitor may cancel or delete the run: only its owner. A run without an owner was
    started from the command line: it is the operator's, read-only to visitors."""
    return owner is not None and run.owner == owner


# --- how a run ended ------------------------------------------------------------------------------

def health(run: Run, metrics: list[dict]) -> Optional[str]:
    """Why a run's result should not be trusted, in one sentence, or None: its loss went non-finite,
    or it ended near chance."""
    for m in metrics:
        loss = m.get("loss")
        if m.get("split") == "train" and (loss is None or not math.isfinite(loss)):
            return (f"The loss stopped being a number at step {m['step']}: the run diverged. "
                    "Try a smaller learning rate.")
    if run.status == "completed" and run.test_accuracy is not None and run.test_accuracy < CHANCE_ACCURACY:
        return (f"Test accuracy {run.test_accuracy:.2%} is close to guessing (10%): the network did not learn. "
                "Try a smaller learning rate, or another optimizer.")
    return None


@dataclass(frozen=True)
class Collapse:
    """A run whose validation accuracy fell more than COLLAPSE_DROP below its best and stayed there to
    its last validation. Its saved model is the best validation's (the loop keeps those weights)."""

    best_step: int                # the validation the saved model is from
    best_accuracy: float
    step: int                     # the first validation of the low stretch that lasts to the end
    accuracy: float               # that validation's accuracy
    last_accuracy: float          # the last validation's
    end_step: int                 # the run's last step
    stuck_loss: Optional[float]   # the median training loss from `step` on, when it sat at GUESS_LOSS

    def text(self) -> str:
        """What happened, in full sentences (the Train page's box)."""
        share = (self.end_step - self.step) / self.end_step if self.end_step else 0.0
        said = (f"Training collapsed by step {self.step:,}: validation accuracy, {self.best_accuracy:.2%} at step "
                f"{self.best_step:,}, fell to {self.accuracy:.2%} and stayed far below it to the end (last "
                f"validation {self.last_accuracy:.2%}; {share:.0%} of the run was after the collapse).")
        if self.stuck_loss is not None:
            said += f" The training loss sat at {self.stuck_loss:.2f}, about ln 10: it gave every digit the same odds."
        return said + (f" The saved model is from step {self.best_step:,}, the best validation, not from the end (a "
                       "smaller learning rate usually avoids a collapse).")

    def note(self) -> str:
        """The same, short, for a table's cell."""
        return (f"collapsed by step {self.step:,} (validation {self.best_accuracy:.1%} → {self.last_accuracy:.1%}); "
                f"model from step {self.best_step:,}")


def collapse(metrics: Sequence[dict]) -> Optional[Collapse]:
    """The run's collapse, or None. Collapsed: its last validation accuracy is more than COLLAPSE_DROP
    below its best, and so is every validation between the first low one after the best and the end (a
    dip it recovered from is not a collapse; neither is noise of a few points). Validation rows alone
    decide (a run without two has none); training rows, when given, say where the run ended and
    whether its loss sat at GUESS_LOSS."""
    val = [m for m in metrics if m.get("split") == "val" and m.get("accuracy") is not None]
    if len(val) < 2:
        return None
    best = max(range(len(val)), key=lambda i: val[i]["accuracy"])  # the first best, as the loop keeps it
    floor = val[best]["accuracy"] - COLLAPSE_DROP
    start = len(val)
    while start > best + 1 and val[start - 1]["accuracy"] < floor:
        start -= 1
    if start == len(val):
        return None  # the last validation is within COLLAPSE_DROP of the best
    low = val[start]["step"]
    losses = sorted(m["loss"] for m in metrics if m.get("split") == "train" and m["step"] >= low
                    and m.get("loss") is not None and math.isfinite(m["loss"]))
    median = losses[len(losses) // 2] if losses else None
    return Collapse(best_step=val[best]["step"], best_accuracy=val[best]["accuracy"], step=low,
                    accuracy=val[start]["accuracy"], last_accuracy=val[-1]["accuracy"],
                    end_step=max(m["step"] for m in metrics),
                    stuck_loss=median if median is not None and abs(median - GUESS_LOSS) < 0.05 else None)


def outcome(run: Run, metrics: list[dict]) -> Optional[tuple[str, str]]:
    """(kind, text) for the box under a finished run: "success", "warning" or "error"; None while live."""
    if run.is_live:
        return None
    if run.status == "failed":
        return "error", f"This run failed: {for_visitor(run.error or 'no reason was recorded')}"
    if run.status == "cancelled":
        return "warning", "This run was cancelled" + (f": {for_visitor(run.error)}" if run.error else ".")
    accuracy = f"{run.test_accuracy:.2%}" if run.test_accuracy is not None else "–"
    text = f"Test accuracy **{accuracy}**"
    if run.best_val_accuracy is not None:
        text += f" (best validation {run.best_val_accuracy:.2%})"
    text += f" in {fmt_seconds(run.duration)}."
    if run.checkpoint:
        text += f" Checkpoint: `{PurePath(run.checkpoint).name}`"
    problem = health(run, metrics)
    if problem:
        return "warning", f"{problem} {text}"
    fell = collapse(metrics)
    if fell:
        return "warning", f"{fell.text()} {text}"
    return "success", text


_ABSOLUTE_PATH = re.compile(r"(?<![\w.])(?:[A-Za-z]:)?[/\\](?:[^\s/\\:'\"`]+[/\\])+([^\s/\\:'\"`]+)")


def for_visitor(text: Optional[str]) -> str:
    """Text from a run (an error) fit for any visitor: config names in the form's words, server paths
    cut to their file name, one line."""
    if not text:
        return ""
    line = text.splitlines()[0]
    return form.plain(_ABSOLUTE_PATH.sub(lambda m: m.group(1), line))
