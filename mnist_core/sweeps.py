"""Sweeps: many runs that differ in one to three knobs, so a student sees what a knob does.

A sweep is a base config, up to three fields to vary (each a list of values, or a range: the
learning rate, weight decay and batch size on a log scale), grid or random (N samples drawn with a
seed), and "repeat each with k seeds" so the spread a seed alone causes is visible. Read in order:

    Param, parse_param        one varied field: "lr=0.001,0.003,0.01" or "lr=1e-4..1e-1:4"
    SweepSpec, count, expand  the spec; how many runs it is (counted, nothing built); its points x seeds as
                              validated, admitted TrainConfigs
    plan                      the caps (MNIST_MAX_SWEEP_RUNS, the visitor's queue room) on the count, then
                              expand, then the estimate
    estimate                  "N runs x ~T s ~= total" from the images/s earlier runs of each model reached
                              (estimate_one: the same for the Train form's single run, "~T s")
    submit, cancel            each run an ordinary run tagged with the sweep id (Executor.submit), all or none
    analyse                   per run the varied values, test / best / last validation accuracy; per point the
                              mean and spread over seeds; a few plain-words sentences of what it showed
    cli                       `python -m mnist_core sweep ...`

Everything here is bounded before it is built: a value list's text (MAX_PARAM_TEXT characters) and
its values (MAX_VALUES) when it is parsed, the number of runs (points x seeds, a product of counts)
before a single config is made, so a sweep far over the cap costs a multiplication, not its expansion.

A sweep's spec is not stored anywhere: its runs carry the sweep id, and the fields that were varied
are the ones whose values differ between its runs (`varied_fields`). So a sweep launched from the
CLI reads the same on the page, and nothing needs a schema of its own.
"""

from __future__ import annotations

import math
import random as _random
import secrets
import statistics
import sys
import time
from dataclasses import dataclass, field
from itertools import product
from typing import Callable, Optional, Sequence

from . import executors, form, limits, live, registry
from .errors import ConfigError, MnistLabError, RunError
from .live import Collapse
from .training import TrainConfig, admit

MAX_PARAMS = 3
LOG_FIELDS = ("lr", "weight_decay", "batch_size")  # spaced and sampled on a log scale
DEFAULT_RANGE_POINTS = 3                           # grid points of a range given without ":N"
MAX_VALUES = 50                 # values one field may list (a range's grid points are bounded alike)
MAX_PARAM_TEXT = 1000           # characters of one "NAME=V1,V2,..." (a form's text box can be forged)
FALLBACK_IMAGES_PER_S = 3000.0  # a cautious guess for a small CPU host, used until a model has a finished run
WORKER_START_SECONDS = 1.0      # an allowance for starting each run (BENCHMARKS.md measures it)
EVAL_SHARE = 1 / 3              # a validation or test image costs about a third of a training one (forward only)
TEST_IMAGES = 10_000            # every completed run ends with one pass over MNIST's test set
_FIELDS = {f.name: f for f in TrainConfig.fields()}


# --- one varied field -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Param:
    """One field a sweep varies: explicit `values`, or a range `low`..`high` (`points` grid points)."""
    name: str
    values: tuple = ()
    low: Optional[float] = None
    high: Optional[float] = None
    points: int = DEFAULT_RANGE_POINTS

    def __post_init__(self):
        if self.name not in _FIELDS:
            raise ConfigError(f"{self.name!r} is not a training field: choose from {', '.join(_FIELDS)}")
        if self.name == "seed":
            raise ConfigError("seed: use 'repeat each with k seeds' to vary the seed")
        if self.is_range:
            if _FIELDS[self.name].metadata["choices"] is not None:
                raise ConfigError(f"{self.name}: give a list of values, not a range")
            if isinstance(_FIELDS[self.name].default, int) and not (float(self.low).is_integer()
                                                                    and float(self.high).is_integer()):
                # its points are rounded to whole numbers: 2.5 must not quietly become 2
                raise ConfigError(f"{self.name}: a range of whole numbers needs whole ends, not "
                                  f"{self.low:g}..{self.high:g}")
            if not self.low < self.high:
                raise ConfigError(f"{self.name}: a range needs low < high, got {self.low:g}..{self.high:g}")
            if self.log and self.low <= 0:
                raise ConfigError(f"{self.name}: a range on a log scale must start above 0")
            if not 2 <= self.points <= MAX_VALUES:
                raise ConfigError(f"{self.name}: a range takes 2 to {MAX_VALUES} grid points, got {self.points}")
        elif not self.values:
            raise ConfigError(f"{self.name}: give at least one value")
        elif len(self.values) > MAX_VALUES:
            raise ConfigError(f"{self.name}: at most {MAX_VALUES} values, got {len(self.values)}")

    @property
    def is_range(self) -> bool:
        return self.low is not None

    @property
    def log(self) -> bool:
        return self.name in LOG_FIELDS

    def _cast(self, x: float):
        return round(x) if isinstance(_FIELDS[self.name].default, int) else float(f"{x:.4g}")

    def grid(self) -> list:
        """The values a grid tries: the list, or `points` values evenly spaced (log-spaced for LOG_FIELDS)."""
        if not self.is_range:
            return list(self.values)
        lo, hi = (math.log(self.low), math.log(self.high)) if self.log else (self.low, self.high)
        xs = [lo + (hi - lo) * i / (self.points - 1) for i in range(self.points)]
        return list(dict.fromkeys(self._cast(math.exp(x) if self.log else x) for x in xs))

    def sample(self, rng: _random.Random):
        """One random value: a pick from the list, or uniform over the range (log-uniform for LOG_FIELDS)."""
        if not self.is_range:
            return rng.choice(self.values)
        if self.log:
            return self._cast(math.exp(rng.uniform(math.log(self.low), math.log(self.high))))
        return self._cast(rng.uniform(self.low, self.high))


def _value(name: str, text: str):
    kind = type(_FIELDS[name].default)
    text = text.strip()
    if kind is str:
        return text
    try:
        number = float(text)
    except ValueError:
        raise ConfigError(f"{name}: {text!r} is not a number") from None
    if kind is int:
        if not number.is_integer():
            raise ConfigError(f"{name}: {text!r} is not a whole number")
        return int(number)
    return number


def parse_param(text: str) -> Param:
    """`NAME=V1,V2,...` (a list) or `NAME=LOW..HIGH[:POINTS]` (a range) as a Param; ConfigError otherwise
    (a text over MAX_PARAM_TEXT characters before it is read at all)."""
    if len(text) > MAX_PARAM_TEXT:
        raise ConfigError(f"--param: at most {MAX_PARAM_TEXT:,} characters, got {len(text):,}")
    name, sep, rest = text.partition("=")
    name = name.strip().replace("-", "_")
    if not sep or not rest.strip():
        raise ConfigError(f"--param {text!r}: write NAME=V1,V2,... or NAME=LOW..HIGH[:POINTS], e.g. lr=0.001,0.01")
    if name not in _FIELDS:
        raise ConfigError(f"{name!r} is not a training field: choose from {', '.join(_FIELDS)}")
    if ".." in rest:
        if isinstance(_FIELDS[name].default, str):
            raise ConfigError(f"{name}: give a list of values, not a range")
        span, _, points = rest.partition(":")
        low, _, high = span.partition("..")
        try:
            count = int(points) if points.strip() else DEFAULT_RANGE_POINTS
        except ValueError:
            raise ConfigError(f"{name}: the number of points after ':' must be a whole number") from None
        return Param(name, low=float(_value(name, low)), high=float(_value(name, high)), points=count)
    values = tuple(dict.fromkeys(_value(name, v) for v in rest.split(",") if v.strip()))
    return Param(name, values=values)


# --- the spec and its runs --------------------------------------------------------------------------

@dataclass(frozen=True)
class SweepSpec:
    base: dict                      # the config every run starts from (TrainConfig fields)
    params: tuple                   # up to MAX_PARAMS Param
    random: int = 0                 # 0: the full grid; N: N random points
    seeds: int = 1                  # each point run with seeds base seed, +1, ..., +seeds-1
    sample_seed: int = 0            # the random points' own seed (same seed, same points)


@dataclass(frozen=True)
class PlannedRun:
    values: dict                    # the varied fields' values of this run
    config: TrainConfig


def describe(values: dict) -> str:
    """Varied values in the form's words: "learning rate 0.003, batch size 64"."""
    return ", ".join(f"{form.noun(k)} {fmt_value(v)}" for k, v in values.items())


def fmt_value(v) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def _check_shape(spec: SweepSpec) -> None:
    if not 1 <= len(spec.params) <= MAX_PARAMS:
        raise ConfigError(f"a sweep varies 1 to {MAX_PARAMS} fields, got {len(spec.params)}")
    names = [p.name for p in spec.params]
    if len(set(names)) != len(names):
        raise ConfigError(f"{next(n for n in names if names.count(n) > 1)}: varied twice")
    if not 1 <= spec.seeds <= 20:
        raise ConfigError(f"seeds: repeat each run 1 to 20 times, got {spec.seeds}")
    if spec.random and not 1 <= spec.random <= 10_000:
        raise ConfigError(f"random: draw 1 to 10,000 samples, got {spec.random:,}")


def count(spec: SweepSpec) -> int:
    """How many runs the sweep is, points x seeds, from the counts alone: the product of each field's
    number of values (grid) or the number of samples (random). No point or config is built."""
    _check_shape(spec)
    n_points = spec.random or math.prod(len(p.grid()) for p in spec.params)
    return n_points * spec.seeds


def points(spec: SweepSpec) -> list[dict]:
    """The sweep's points: every combination (grid) or `random` seeded draws, each {field: value}."""
    _check_shape(spec)
    names = [p.name for p in spec.params]
    if spec.random:
        rng = _random.Random(spec.sample_seed)
        return [{p.name: p.sample(rng) for p in spec.params} for _ in range(spec.random)]
    grids = [p.grid() for p in spec.params]
    if math.prod(len(g) for g in grids) > 10_000:
        raise ConfigError("this grid has more than 10000 points: fewer values")
    return [dict(zip(names, combo)) for combo in product(*grids)]


def expand(spec: SweepSpec) -> list[PlannedRun]:
    """Every run of the sweep as a validated, admitted TrainConfig; the first bad one is a one-line
    ConfigError that says which values made it ("learning rate 20: ..."). A sweep over
    MNIST_MAX_SWEEP_RUNS is refused by its count before anything is built."""
    check_size(count(spec), None, ())
    base = TrainConfig.from_dict(spec.base)  # a bad base is said once, not once per point
    planned = []
    for point in points(spec):
        for k in range(spec.seeds):
            values = {**base.to_dict(), **point, "seed": base.seed + k}
            try:
                config = admit(TrainConfig.from_dict(values))
            except ConfigError as exc:
                raise ConfigError(f"{describe(point)}: {form.plain(str(exc))}") from None
            planned.append(PlannedRun(point, config))
    return planned


# --- caps and the estimate --------------------------------------------------------------------------

def check_size(n_runs: int, owner: Optional[str], all_runs: Sequence) -> None:
    """Refuse, in one line, a sweep above MNIST_MAX_SWEEP_RUNS, or (a visitor's) one that does not fit
    in their room in the queue (MNIST_MAX_QUEUED_PER_OWNER, MNIST_MAX_QUEUED): all runs or none."""
    bounds = limits.current()
    fewer = "fewer values, samples or seeds"
    if n_runs > bounds.max_sweep_runs:
        raise ConfigError(f"this sweep is {n_runs:,} runs; at most {bounds.max_sweep_runs:,} are allowed here "
                          f"({fewer})")
    if owner is None:
        return  # the operator's runs are never refused by the queue limits
    live = [r for r in all_runs if r.is_live]
    mine = sum(1 for r in live if r.owner == owner)
    if n_runs > bounds.max_queued_per_owner - mine:
        already = f", {mine} already" if mine else ""
        raise ConfigError(f"this sweep is {n_runs:,} runs; you may have at most {bounds.max_queued_per_owner:,} queued "
                          f"or running{already} ({fewer})")
    if n_runs > bounds.max_queued - len(live):
        raise ConfigError(f"this sweep is {n_runs:,} runs; the training queue has room for "
                          f"{max(0, bounds.max_queued - len(live)):,} now (try again later, or {fewer})")


@dataclass(frozen=True)
class Estimate:
    runs: int
    seconds_per_run: float          # the mean over the sweep's runs
    total_seconds: float            # with `slots` runs at a time
    slots: int
    basis: str                      # where the speed came from, in words

    def text(self) -> str:
        if self.runs == 1:
            return f"~{_duration(self.total_seconds)} ({self.basis})"
        return (f"{self.runs} runs × ~{_duration(self.seconds_per_run)} ≈ {_duration(self.total_seconds)} "
                f"({self.slots} at a time; {self.basis})")


def _duration(s: float) -> str:
    s = round(s)
    if s < 60:
        return f"{s} s"
    return f"{s // 60} min {s % 60:02d} s" if s < 3600 else f"{s / 3600:.1f} h"


def work_images(config: dict) -> Optional[float]:
    """The images a run goes through, in training images: its training steps' images plus its
    validation and test images at EVAL_SHARE each; None for a config that no longer parses."""
    try:
        parsed = TrainConfig.from_dict(config)
    except ConfigError:
        return None
    steps, val_images = limits.planned_work(parsed)
    return steps * parsed.batch_size + (val_images + TEST_IMAGES) * EVAL_SHARE


def images_per_second(model: str, all_runs: Sequence) -> Optional[tuple[float, int]]:
    """(images/s, runs it comes from) that completed runs of `model` reached start to end (their
    work_images over their duration), the median of the ten newest; None when the model has no
    completed run."""
    speeds = []
    for r in reversed(all_runs):
        if r.status != "completed" or r.config.get("model") != model or not r.duration:
            continue
        work = work_images(r.config)
        if work:
            speeds.append(work / r.duration)
        if len(speeds) == 10:
            break
    return (statistics.median(speeds), len(speeds)) if speeds else None


def estimate(planned: Sequence[PlannedRun], all_runs: Sequence, slots: Optional[int] = None) -> Estimate:
    """How long the sweep takes here: each run's work_images over its model's measured images/s
    (FALLBACK_IMAGES_PER_S, said so, for a model never run), plus starting it; `slots` runs at a
    time (MNIST_MAX_CONCURRENT by default)."""
    slots = slots or limits.current().max_concurrent
    speeds = {m: images_per_second(m, all_runs) for m in {p.config.model for p in planned}}
    seconds = []
    for p in planned:
        measured = speeds[p.config.model]
        seconds.append(work_images(p.config.to_dict()) / (measured[0] if measured else FALLBACK_IMAGES_PER_S)
                       + WORKER_START_SECONDS)
    unknown = sorted(m for m, s in speeds.items() if s is None)
    known = {m: s for m, s in speeds.items() if s is not None}
    parts = [f"{m} at {s[0]:,.0f} images/s from {s[1]} earlier run{'s' * (s[1] > 1)}" for m, s in sorted(known.items())]
    if unknown:
        parts.append(f"no finished {', '.join(unknown)} run to go by: assumed {FALLBACK_IMAGES_PER_S:,.0f} images/s")
    n = len(planned)
    return Estimate(n, sum(seconds) / n if n else 0.0, sum(seconds) / min(slots, max(n, 1)) if n else 0.0, slots,
                    "; ".join(parts))


def estimate_one(config: TrainConfig, all_runs: Sequence) -> Estimate:
    """How long one run of `config` takes here, as `estimate` reckons a sweep's runs (the Train form
    says it before Start). The time it may wait in the queue is not in it."""
    return estimate([PlannedRun({}, config)], all_runs, slots=1)


@dataclass(frozen=True)
class Plan:
    runs: list                      # PlannedRun, in launch order
    estimate: Estimate


def plan(spec: SweepSpec, owner: Optional[str] = None, all_runs: Sequence = ()) -> Plan:
    """The sweep's runs, checked (the caps on its count first, then each run admitted) and estimated;
    ConfigError in one line."""
    check_size(count(spec), owner, all_runs)
    planned = expand(spec)
    return Plan(planned, estimate(planned, all_runs))


# --- launching and cancelling -----------------------------------------------------------------------

def new_sweep_id() -> str:
    return "sweep-" + time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(3)


def submit(planned: Sequence[PlannedRun], owner: Optional[str] = None, root=None, class_code: Optional[str] = None,
           student: Optional[str] = None) -> tuple[str, list[str]]:
    """Queue every run, tagged with a new sweep id (and a class, when launched inside one) and owned by
    `owner`, through the host's executor (executors.for_host); return (sweep id, run ids). All or none:
    when one is refused (the queue filled meanwhile), the ones already queued are cancelled and the
    refusal is raised."""
    executor = executors.for_host()
    sweep_id, run_ids = new_sweep_id(), []
    for p in planned:
        try:
            run_ids.append(executor.submit(p.config.to_dict(), owner=owner, root=root, sweep=sweep_id,
                                           class_code=class_code, student=student))
        except MnistLabError:
            for run_id in run_ids:
                try:
                    executor.cancel(run_id, root=root, by=owner)
                except MnistLabError:
                    pass
            raise
    return sweep_id, run_ids


def sweep_runs(sweep_id: str, root=None) -> list:
    """The sweep's runs, oldest first."""
    return registry.list_runs(root=root, sweep=sweep_id)


def cancel(sweep_id: str, root=None, by: Optional[str] = None) -> int:
    """Ask every live run of the sweep to stop; return how many were asked. A visitor (`by`) may only
    cancel a sweep of their own (a RunError otherwise, and nothing is cancelled)."""
    live = [r for r in sweep_runs(sweep_id, root) if r.is_live]
    if by is not None and any(r.owner != by for r in live):
        raise RunError("this sweep was started by someone else: only they can cancel it")
    executor = executors.for_host()
    for r in live:
        executor.cancel(r.id, root=root, by=by)
    return len(live)


def list_sweeps(all_runs: Sequence) -> list[tuple[str, list]]:
    """(sweep id, its runs) for every sweep in `all_runs`, newest first."""
    by_sweep: dict[str, list] = {}
    for r in all_runs:
        if getattr(r, "sweep", None):
            by_sweep.setdefault(r.sweep, []).append(r)
    return sorted(by_sweep.items(), key=lambda kv: kv[1][0].created_at, reverse=True)


# --- what the sweep showed --------------------------------------------------------------------------

def varied_fields(configs: Sequence[dict]) -> list[str]:
    """The fields (not the seed) whose values differ between the configs, in TrainConfig's order."""
    return [name for name in _FIELDS
            if name != "seed" and len({repr(c.get(name)) for c in configs}) > 1]


@dataclass
class RunResult:
    run_id: str
    status: str
    values: dict                     # the varied fields' values
    seed: int
    test_accuracy: Optional[float]
    best_val_accuracy: Optional[float]   # the best validation (the weights it kept)
    last_val_accuracy: Optional[float]   # the last validation (where training ended)
    problem: Optional[str]           # why not to trust it (diverged, near chance, failed, collapsed), one line
    diverged: bool
    collapse: Optional[Collapse] = None  # it learned, then collapsed (its model is from before): live.collapse


@dataclass
class Group:
    """The runs of one point (same varied values, different seeds)."""
    values: dict
    run_ids: list
    accuracies: list                 # test accuracies of its completed runs
    diverged: int                    # how many of its runs diverged or stayed near chance

    @property
    def mean(self) -> Optional[float]:
        return statistics.fmean(self.accuracies) if self.accuracies else None

    @property
    def spread(self) -> Optional[float]:
        """The standard deviation over seeds (0 for one run; None for none)."""
        if not self.accuracies:
            return None
        return statistics.stdev(self.accuracies) if len(self.accuracies) > 1 else 0.0


@dataclass
class Analysis:
    fields: list                     # the varied fields
    results: list                    # RunResult, oldest first
    groups: list                     # Group, in the order their first run was launched
    counts: dict                     # status -> number of runs
    summary: list = field(default_factory=list)   # plain-words sentences


def analyse(sweep_runs: Sequence, metrics: Callable[[str], list[dict]]) -> Analysis:
    """What the sweep showed. `metrics(run_id)` gives a run's metric rows (registry.get_metrics)."""
    fields = varied_fields([r.config for r in sweep_runs])
    results, groups = [], {}
    counts: dict[str, int] = {}
    for r in sweep_runs:
        counts[str(r.status)] = counts.get(str(r.status), 0) + 1
        rows = metrics(r.id) if r.status != "queued" else []
        vals = [m["accuracy"] for m in rows if m["split"] == "val" and m.get("accuracy") is not None]
        problem = live.health(r, rows) if not r.is_live else None
        if r.status == "failed":
            problem = live.for_visitor(r.error or "failed")
        diverged = bool(problem) and ("diverged" in problem or "guessing" in problem)
        fell = live.collapse(rows) if r.status == "completed" and not problem else None
        values = {f: r.config.get(f) for f in fields}
        results.append(RunResult(r.id, str(r.status), values, r.config.get("seed", 0), r.test_accuracy,
                                 r.best_val_accuracy, vals[-1] if vals else None,
                                 problem or (fell.note() if fell else None), diverged, fell))
        key = repr(sorted(values.items()))
        g = groups.setdefault(key, Group(values, [], [], 0))
        g.run_ids.append(r.id)
        if diverged:
            g.diverged += 1
        elif r.status == "completed" and r.test_accuracy is not None:
            g.accuracies.append(r.test_accuracy)
    analysis = Analysis(fields, results, list(groups.values()), counts)
    analysis.summary = summarise(analysis)
    live_now = sum(r.is_live for r in sweep_runs)
    if live_now and analysis.summary != ["No run has finished yet."]:
        analysis.summary.insert(0, f"So far ({len(sweep_runs) - live_now} of {len(sweep_runs)} runs ended):")
    return analysis


def _pct(x: float) -> str:
    return f"{x:.1%}"


def summarise(a: Analysis) -> list[str]:
    """A few sentences a student can read: where accuracy peaks for each varied field (over the other
    fields' values), where training diverges, how much the seed alone moves it, the best run."""
    finished = [g for g in a.groups if g.accuracies]
    if not finished and not any(g.diverged for g in a.groups):
        return ["No run has finished yet."]
    sentences = []
    seed_spread = max((g.spread for g in finished if len(g.accuracies) > 1), default=None)
    for name in a.fields:
        sentences += _field_sentences(name, a.groups, seed_spread)
    if seed_spread is not None:
        sentences.append(f"The seed alone moves test accuracy by up to ±{seed_spread:.1%} (one standard deviation).")
    collapsed = [r for r in a.results if r.collapse]
    sentences += _collapse_sentences(collapsed)
    if finished:
        best = max(finished, key=lambda g: g.mean)
        sentences.append(f"Best: {describe(best.values)}, {_pct(best.mean)} test accuracy"
                         + (f" (mean of {len(best.accuracies)} seeds)" if len(best.accuracies) > 1 else "")
                         + (", from a run that collapsed: its model was saved before the collapse."
                            if any(r.run_id in best.run_ids for r in collapsed) else "."))
    return sentences


MAX_COLLAPSE_SENTENCES = 3


def _collapse_sentences(collapsed: Sequence[RunResult]) -> list[str]:
    """A sentence per run that learned, then collapsed (live.collapse): its test accuracy is its best
    validation's model, saved before the collapse, so the accuracy alone would not tell."""
    out = []
    for r in collapsed[:MAX_COLLAPSE_SENTENCES]:
        c = r.collapse
        where = describe(r.values) or f"run {r.run_id}"
        out.append(f"Training collapsed at {where} (seed {r.seed}): validation accuracy fell from "
                   f"{_pct(c.best_accuracy)} at step {c.best_step:,} to {_pct(c.accuracy)} by step {c.step:,} "
                   "and stayed low; its test accuracy"
                   + (f" ({_pct(r.test_accuracy)})" if r.test_accuracy is not None else "")
                   + f" is its saved model's, from step {c.best_step:,}.")
    if len(collapsed) > MAX_COLLAPSE_SENTENCES:
        out.append(f"{len(collapsed) - MAX_COLLAPSE_SENTENCES} more runs collapsed (see the note column).")
    return out


def by_value(groups: Sequence[Group], name: str) -> list[Group]:
    """The groups pooled by one field's value (over the other fields' values): a Group per value, in
    increasing order for numbers, as first met for text (its mean and spread are over all those runs)."""
    pooled: dict = {}
    for g in groups:
        v = g.values[name]
        p = pooled.setdefault(v, Group({name: v}, [], [], 0))
        p.run_ids += g.run_ids
        p.accuracies += g.accuracies
        p.diverged += g.diverged
    numeric = all(isinstance(v, (int, float)) for v in pooled)
    return [pooled[v] for v in (sorted(pooled) if numeric else pooled)]


def _field_sentences(name: str, groups: Sequence[Group], seed_spread: Optional[float]) -> list[str]:
    words = form.noun(name)
    pooled = by_value(groups, name)
    numeric = all(isinstance(p.values[name], (int, float)) for p in pooled)
    means = {p.values[name]: p.mean for p in pooled if p.accuracies}
    broken = [p.values[name] for p in pooled if p.diverged and not p.accuracies]  # diverged, nothing healthy finished
    out = []
    if means:
        peak = max(means, key=means.get)
        low, high = min(means.values()), max(means.values())
        if len(means) > 1 and high - low <= max(0.002, 2 * (seed_spread or 0)):
            out.append(f"{words.capitalize()} barely matters here: test accuracy stays within "
                       f"{_pct(low)}–{_pct(high)}.")
        elif not numeric:
            ranked = sorted(means, key=means.get, reverse=True)
            out.append(f"{fmt_value(ranked[0])} does best ({_pct(means[ranked[0]])}), "
                       + ", ".join(f"then {fmt_value(v)} ({_pct(means[v])})" for v in ranked[1:]) + ".")
        elif len(means) > 1:
            tried = list(means)  # in increasing order
            where = ("the smallest" if peak == tried[0] else "the largest" if peak == tried[-1] else None)
            if where:
                out.append(f"Accuracy is highest at {where} {words} tried, {fmt_value(peak)} ({_pct(means[peak])}): "
                           "the best value may lie beyond it.")
            else:
                out.append(f"Accuracy peaks near {words} {fmt_value(peak)} ({_pct(means[peak])}).")
    if broken:
        if numeric and means and all(v > max(means) for v in broken):
            out.append(f"Above {words} {fmt_value(max(means))}, training diverges or stays near chance "
                       f"({', '.join(map(fmt_value, broken))}).")
        else:
            out.append(f"Training diverges or stays near chance at {words} {', '.join(map(fmt_value, broken))}.")
    return out


# --- the command line -------------------------------------------------------------------------------

def cli(param_texts: Sequence[str], base: dict, random: int = 0, seeds: int = 1, sample_seed: int = 0,
        wait: bool = False, out=sys.stdout, poll_seconds: float = 1.0) -> int:
    """`python -m mnist_core sweep`: plan, submit (the operator's runs: no owner), print the sweep id and
    the run ids; with `wait`, follow the runs to their end, print the summary, and return 0 only when
    every run completed."""
    if not param_texts:
        raise ConfigError("give at least one --param NAME=V1,V2,... (e.g. --param lr=0.001,0.003,0.01)")
    spec = SweepSpec(base, tuple(parse_param(t) for t in param_texts), random=random, seeds=seeds,
                     sample_seed=sample_seed)
    the_plan = plan(spec, owner=None, all_runs=registry.list_runs())
    print(f"plan: {the_plan.estimate.text()}", file=out)
    sweep_id, run_ids = submit(the_plan.runs, owner=None)
    print(f"sweep {sweep_id}", file=out)
    for p, run_id in zip(the_plan.runs, run_ids):
        print(f"run {run_id}: {describe(p.values)}, seed {p.config.seed}", file=out)
    if not wait:
        return 0
    while True:  # the executor runs them; a dead worker's run reads failed (registry.list_runs)
        current = sweep_runs(sweep_id)
        if not any(r.is_live for r in current):
            break
        time.sleep(poll_seconds)
    analysis = analyse(current, lambda run_id: registry.get_metrics(run_id))
    for res in analysis.results:
        acc = f"{res.test_accuracy:.4f}" if res.test_accuracy is not None else "-"
        print(f"{res.run_id} {res.status:9} {describe(res.values) or '-'}, seed {res.seed}: test accuracy {acc}"
              + (f" ({res.problem})" if res.problem else ""), file=out)
    for sentence in analysis.summary:
        print(sentence, file=out)
    return 0 if all(r.status == "completed" for r in current) else 1
