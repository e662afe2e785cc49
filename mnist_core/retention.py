"""Retention: how many finished runs a host keeps, and for how long.

A hosted demo makes runs all day: the cheapest allowed run takes two seconds and leaves about 2 MB
(its checkpoint, replay and log, and the registry's rows and copies of those files). Without a bound
the disk fills, and everything that reads the registry grows with it. The policy, read from the
environment at each pass:

    MNIST_KEEP_RUNS       keep at most this many finished runs, the newest (default 500 under
                          MNIST_DEMO; 0 = no limit, the default otherwise)
    MNIST_KEEP_RUN_DAYS   remove a finished run this many days after it ended (default 7 under
                          MNIST_DEMO; 0 = never, the default otherwise)

What it removes: finished runs (completed, failed, cancelled), oldest first, never a queued or
running one. Each goes through registry.delete_run, the one delete path (the Train page's Delete uses it
too): the run's row, its metric rows, its artifacts and its files (runfiles.remove_run_files: log,
replay, its own checkpoint). A run whose checkpoint is a file it was told to write (`train
--checkpoint PATH`: the committed defaults are made that way) is the operator's: it is kept, with its
file, and does not count against MNIST_KEEP_RUNS.

Who applies it: each local runner, when it starts and whenever it goes idle after a run (one pass of
at most PASS_LIMIT runs, so the queue never waits long on it), and the operator with `python -m
mnist_core runs prune [--dry-run]`. With the Ray executor no local runner exists: run that command
from cron on the web host.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from typing import Optional

import sqlalchemy as sa

from . import registry
from .errors import ConfigError, MnistLabError
from .records import ENDED

DEMO_KEEP_RUNS = 500
DEMO_KEEP_RUN_DAYS = 7.0
PASS_LIMIT = 50  # runs one runner's pass removes at most; the next pass takes the rest
DAY = 86_400.0


@dataclass(frozen=True)
class Policy:
    keep_runs: int = 0       # finished runs kept, the newest; 0 = no limit
    keep_days: float = 0.0   # days a finished run is kept after it ended; 0 = no limit

    @property
    def active(self) -> bool:
        return self.keep_runs > 0 or self.keep_days > 0

    def describe(self) -> str:
        parts = ([f"the newest {self.keep_runs} finished runs"] if self.keep_runs else []) \
            + ([f"finished runs for {self.keep_days:g} days"] if self.keep_days else [])
        return "keep " + " and ".join(parts) if parts else "keep every run (retention is off)"


def _setting(name: str, default: float) -> float:
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {text[:20]!r}") from None
    if not value >= 0 or value == float("inf"):
        raise ConfigError(f"{name} must be 0 (no limit) or a positive number, got {text[:20]!r}")
    return value


def policy() -> Policy:
    """The policy MNIST_KEEP_RUNS and MNIST_KEEP_RUN_DAYS set (their demo defaults under MNIST_DEMO)."""
    demo = os.environ.get("MNIST_DEMO", "").lower() in ("1", "true", "yes", "on")
    return Policy(keep_runs=int(_setting("MNIST_KEEP_RUNS", DEMO_KEEP_RUNS if demo else 0)),
                  keep_days=_setting("MNIST_KEEP_RUN_DAYS", DEMO_KEEP_RUN_DAYS if demo else 0))


# A run's own checkpoint is named MODEL-RUN_ID.safetensors (runfiles.default_checkpoint_path); any other
# recorded checkpoint is a file the operator named, which makes the run the operator's to keep.
_DEFAULT_NAME = sa.literal("%-") + registry.RUNS.c.id + sa.literal(".safetensors")
_REMOVABLE = [registry.RUNS.c.status.in_([str(s) for s in ENDED]),
              sa.or_(registry.RUNS.c.checkpoint.is_(None), registry.RUNS.c.checkpoint.like(_DEFAULT_NAME))]


def due(rules: Optional[Policy] = None, limit: Optional[int] = PASS_LIMIT, root=None,
        now: Optional[float] = None) -> list[registry.Run]:
    """The finished runs the policy removes now, oldest first, at most `limit` (None: all of them).
    Two bounded queries: the oldest runs over the count, and the oldest runs past the age."""
    rules = rules or policy()
    now = time.time() if now is None else now
    found: dict[str, registry.Run] = {}
    if rules.keep_runs:
        over = registry.count_runs(root, where=_REMOVABLE) - rules.keep_runs
        if over > 0:
            found.update((r.id, r) for r in registry.list_runs(root, where=_REMOVABLE,
                                                            limit=over if limit is None else min(over, limit)))
    if rules.keep_days:
        ended = sa.func.coalesce(registry.RUNS.c.finished_at, registry.RUNS.c.created_at)
        aged = [*_REMOVABLE, ended < now - rules.keep_days * DAY]
        found.update((r.id, r) for r in registry.list_runs(root, where=aged, limit=limit))
    oldest_first = sorted(found.values(), key=lambda r: (r.created_at, r.id))
    return oldest_first if limit is None else oldest_first[:limit]


@dataclass
class Pruned:
    removed: list[registry.Run]   # removed, or that would be with dry_run
    problems: list[str]       # one line for each run that could not be removed (it stays listed)


def prune(rules: Optional[Policy] = None, limit: Optional[int] = PASS_LIMIT, root=None, dry_run: bool = False,
          now: Optional[float] = None) -> Pruned:
    """Remove what the policy says is due (see `due`), each run through registry.delete_run; with
    `dry_run`, only say which."""
    result = Pruned([], [])
    for run in due(rules, limit, root, now):
        if not dry_run:
            try:
                registry.delete_run(run.id, root)
            except MnistLabError as exc:  # a file that cannot be removed, a run gone meanwhile: the next one
                result.problems.append(str(exc))
                continue
        result.removed.append(run)
    return result


def prune_pass(root=None) -> int:
    """One bounded pass, for a process that has other work (a runner going idle): never raises for a
    registry fault or a bad setting, says it in one line on stderr instead; how many runs it removed."""
    try:
        rules = policy()
        if not rules.active:
            return 0
        result = prune(rules, root=root)
    except MnistLabError as exc:
        print(f"retention: {exc}", file=sys.stderr, flush=True)
        return 0
    for problem in result.problems:
        print(f"retention: {problem}", file=sys.stderr, flush=True)
    return len(result.removed)
