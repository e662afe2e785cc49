"""Limits for a shared, hosted server: how many trainings run at once, how many may wait, how much
work one training may ask for, and how long it may run.

Read from the environment each time (so a test or an operator can change them without a restart):

    MNIST_MAX_CONCURRENT        trainings running at once (default 1); further runs wait in a queue
    MNIST_MAX_QUEUED            runs queued or running, all visitors together (default 20); a visitor's
                                run beyond it is refused (the operator's CLI never is)
    MNIST_MAX_QUEUED_PER_OWNER  runs one visitor (one owner token) may have queued or running (default 3)
    MNIST_MAX_RUN_SECONDS       wall-clock limit of one run, in seconds: past it the worker stops and the
                                run ends failed ("time limit 10 min reached") with no checkpoint.
                                Default 600 under MNIST_DEMO, none otherwise; 0 = none
    MNIST_TIME_LIMIT_GRACE_SECONDS  how long past that limit a worker that has not stopped itself
                                (stopped, hung) is given before it is killed from outside (default 30)
    MNIST_DEMO=1                turn on the public-demo bounds below (off by default)
    MNIST_MAX_EPOCHS            demo bound on epochs (default 5)
    MNIST_MAX_TRAIN_IMAGES      demo bound on train_size; 0 = all is refused under it (default 20000)
    MNIST_MAX_BATCH_SIZE        demo bound on batch_size (default 1024)
    MNIST_MAX_STEPS             demo bound on the steps of a run, ceil(train images / batch_size) x epochs
                                (default 3000): a small batch makes many steps out of few images
    MNIST_MAX_VAL_IMAGES        demo bound on validation work over a run, val_size x the number of
                                validations (one per epoch, or one every eval_every steps; default 100000)
    MNIST_ALLOWED_MODELS        demo list of models, comma-separated (default: every model but cnn-strong)
    MNIST_MAX_SWEEP_RUNS        runs one sweep may launch (default 12 under MNIST_DEMO, 64 otherwise); a
                                visitor's sweep must also fit in their MNIST_MAX_QUEUED_PER_OWNER (sweeps.py)

Always, demo or not, a run may not ask for more CPU threads than the host has cores (threads = 0
means one per core).

The bounds on a config are checked by admission (training.admit, through check_demo_bounds), where a
run is asked for (the Train page's submit, the CLI) and again where a worker starts it; a config is
valid whatever they say, so runs recorded under other bounds still display. The queue limits are
checked when a run is created (registry.create_run), the time limit by the worker and, past the
grace, from outside: by the runner that forked it, or for a Ray job by the executor's reconcile.

`fit(config)` is the other side of the same bounds: what a form, a preset or a sweep starts from is
brought inside them before anyone sees it (fewer epochs, fewer images...), with one note per change,
so a host's own settings never greet a visitor with a refusal.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass

from .errors import ConfigError

TRAIN_IMAGES = 60_000  # MNIST's training set, from which val_size is carved


def _int(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name, default))
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {os.environ[name]!r}") from None


@dataclass(frozen=True)
class Limits:
    max_concurrent: int
    max_queued: int
    max_queued_per_owner: int
    max_run_seconds: int          # 0 = no time limit
    demo: bool
    max_epochs: int
    max_train_images: int
    max_batch_size: int
    max_steps: int
    max_val_images: int
    allowed_models: tuple[str, ...]
    max_sweep_runs: int = 64

    def time_limit_text(self) -> str:
        """The time limit in words, as a run stopped by it reports it: "time limit 10 min"."""
        return time_limit_text(self.max_run_seconds)


def time_limit_text(seconds: int) -> str:
    """A time limit in words: "time limit 10 min", "time limit 90 s"."""
    return f"time limit {seconds // 60} min" if seconds >= 60 and seconds % 60 == 0 else f"time limit {seconds} s"


TIME_LIMIT_GRACE_SECONDS = 30  # past the limit, for a worker to stop itself before it is killed from outside


def max_run_seconds() -> int:
    """MNIST_MAX_RUN_SECONDS alone (0 = none): what a runner enforces, without importing the model zoo."""
    return max(0, _int("MNIST_MAX_RUN_SECONDS", 600 if _demo() else 0))


def time_limit_grace() -> int:
    """MNIST_TIME_LIMIT_GRACE_SECONDS (default TIME_LIMIT_GRACE_SECONDS)."""
    return max(0, _int("MNIST_TIME_LIMIT_GRACE_SECONDS", TIME_LIMIT_GRACE_SECONDS))


def _demo() -> bool:
    return os.environ.get("MNIST_DEMO", "").lower() in ("1", "true", "yes", "on")


def max_concurrent() -> int:
    """MNIST_MAX_CONCURRENT alone: what a runner needs, without importing the model zoo (and torch)."""
    return max(1, _int("MNIST_MAX_CONCURRENT", 1))


def current() -> Limits:
    from .models import list_models  # here: models loads torch; a runner reads the other limits without it

    allowed = os.environ.get("MNIST_ALLOWED_MODELS")
    models = tuple(m.strip() for m in allowed.split(",") if m.strip()) if allowed else \
        tuple(m for m in list_models() if m != "cnn-strong")
    demo = _demo()
    return Limits(
        max_concurrent=max_concurrent(),
        max_queued=max(1, _int("MNIST_MAX_QUEUED", 20)),
        max_queued_per_owner=max(1, _int("MNIST_MAX_QUEUED_PER_OWNER", 3)),
        max_run_seconds=max_run_seconds(),
        demo=demo,
        max_epochs=_int("MNIST_MAX_EPOCHS", 5),
        max_train_images=_int("MNIST_MAX_TRAIN_IMAGES", 20_000),
        max_batch_size=_int("MNIST_MAX_BATCH_SIZE", 1024),
        max_steps=_int("MNIST_MAX_STEPS", 3000),
        max_val_images=_int("MNIST_MAX_VAL_IMAGES", 100_000),
        allowed_models=models,
        max_sweep_runs=max(1, _int("MNIST_MAX_SWEEP_RUNS", 12 if demo else 64)),
    )


def host_cores() -> int:
    """CPU cores this process may use: the affinity mask where there is one (taskset, cpusets)."""
    try:
        return max(1, min(len(os.sched_getaffinity(0)), os.cpu_count() or 1))
    except AttributeError:  # no sched_getaffinity (macOS)
        return os.cpu_count() or 1


def planned_work(config) -> tuple[int, int]:
    """(steps, validation images) a config asks for, counted as the training loop runs it.

    Steps: ceil(training images / batch_size) per epoch. Validation: val_size images at every
    eval_every-th step (once per epoch when 0), and once more at the end if the last step was not one.
    """
    images = config.train_size or TRAIN_IMAGES - config.val_size
    steps_per_epoch = math.ceil(images / config.batch_size)
    steps = steps_per_epoch * config.epochs
    validations = math.ceil(steps / (config.eval_every or steps_per_epoch))
    return steps, config.val_size * validations


def check_demo_bounds(config) -> None:
    """Raise ConfigError, naming the field, when a config exceeds the public-demo bounds."""
    limits = current()
    if not limits.demo:
        return
    if config.model not in limits.allowed_models:
        raise ConfigError(f"model: this demo allows {', '.join(limits.allowed_models)}")
    if config.epochs > limits.max_epochs:
        raise ConfigError(f"epochs: this demo allows at most {limits.max_epochs:,}")
    if config.train_size == 0 or config.train_size > limits.max_train_images:
        raise ConfigError(f"train_size: this demo allows at most {limits.max_train_images:,} training images "
                          "(0 = all is not allowed)")
    if config.batch_size > limits.max_batch_size:
        raise ConfigError(f"batch_size: this demo allows at most {limits.max_batch_size:,}")
    steps, val_images = planned_work(config)
    if steps > limits.max_steps:
        raise ConfigError(f"batch_size: {config.train_size:,} images in batches of {config.batch_size:,} for "
                          f"{config.epochs} epoch(s) is {steps:,} steps; this demo allows at most "
                          f"{limits.max_steps:,} steps (a larger batch_size, fewer epochs or fewer images)")
    if val_images > limits.max_val_images:
        raise ConfigError(f"val_size: {config.val_size:,} images at each of {val_images // config.val_size:,} "
                          f"validations is {val_images:,} validation images; this demo allows at most "
                          f"{limits.max_val_images:,} (a smaller val_size or a larger eval_every)")


def fit(config):
    """`config` brought inside this host's bounds where fewer of something can do it, and one note
    per change in the words of the refusal it avoids ("epochs 3: this demo allows at most 3").

    Threads above the host's cores come down to them, demo or not; under MNIST_DEMO, epochs,
    training images and batch size come down to their bounds, then epochs (or, when one epoch is
    already too many steps, a larger batch) to the step bound, and val_size to the validation bound.
    A model the demo does not allow cannot be fitted: it is left as it is, for admission to refuse.
    """
    notes = []

    def change(name: str, value: int, why: str) -> None:
        nonlocal config
        config = dataclasses.replace(config, **{name: value})
        notes.append(f"{name} {value:,}: {why}")

    cores = host_cores()
    if config.threads > cores:
        change("threads", cores, f"this machine has {cores} core(s)")
    bounds = current()
    if not bounds.demo:
        return config, notes
    if config.epochs > bounds.max_epochs >= 1:
        change("epochs", bounds.max_epochs, f"this demo allows at most {bounds.max_epochs:,}")
    if (config.train_size == 0 or config.train_size > bounds.max_train_images) and bounds.max_train_images >= 1:
        change("train_size", min(bounds.max_train_images, TRAIN_IMAGES - config.val_size),
               f"this demo allows at most {bounds.max_train_images:,}" + (", not all" if not config.train_size else ""))
    if config.batch_size > bounds.max_batch_size >= 1:
        change("batch_size", bounds.max_batch_size, f"this demo allows at most {bounds.max_batch_size:,}")
    steps, _ = planned_work(config)
    if steps > bounds.max_steps >= 1:
        per_epoch = steps // config.epochs
        why = f"this demo allows at most {bounds.max_steps:,} steps a run"
        if per_epoch <= bounds.max_steps:
            change("epochs", bounds.max_steps // per_epoch, f"{per_epoch:,} steps an epoch; {why}")
        else:
            if config.epochs > 1:
                change("epochs", 1, f"one epoch is {per_epoch:,} steps; {why}")
            images = config.train_size or TRAIN_IMAGES - config.val_size
            change("batch_size", math.ceil(images / bounds.max_steps), why)
    steps, val_images = planned_work(config)
    if val_images > bounds.max_val_images and config.val_size:
        validations = val_images // config.val_size
        change("val_size", bounds.max_val_images // validations,
               f"{validations} validations; this demo allows at most {bounds.max_val_images:,} validation images a run")
    return config, notes
