"""Limits for a shared, hosted server: how many trainings run at once, how many a visitor may queue,
and the public-demo bounds on what a training may ask for.

Read from the environment each time (so a test or an operator can change them without a restart):

    MNIST_MAX_CONCURRENT        trainings running at once (default 1); further runs wait in a queue
    MNIST_MAX_QUEUED_PER_OWNER  runs one browser session may have queued or running (default 3)
    MNIST_DEMO=1                turn on the public-demo bounds below (off by default)
    MNIST_MAX_EPOCHS            demo bound on epochs (default 5)
    MNIST_MAX_TRAIN_IMAGES      demo bound on train_size; 0 = all is refused under it (default 20000)
    MNIST_MAX_BATCH_SIZE        demo bound on batch_size (default 1024)
    MNIST_ALLOWED_MODELS        demo list of models, comma-separated (default: every model but cnn-strong)

The demo bounds are checked in TrainConfig.validate(), so the form, the CLI and the worker (which
re-validates what the registry holds) all enforce them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from .errors import ConfigError


def _int(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name, default))
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {os.environ[name]!r}") from None


@dataclass(frozen=True)
class Limits:
    max_concurrent: int
    max_queued_per_owner: int
    demo: bool
    max_epochs: int
    max_train_images: int
    max_batch_size: int
    allowed_models: tuple[str, ...]


def current() -> Limits:
    from .models import list_models

    allowed = os.environ.get("MNIST_ALLOWED_MODELS")
    models = tuple(m.strip() for m in allowed.split(",") if m.strip()) if allowed else \
        tuple(m for m in list_models() if m != "cnn-strong")
    return Limits(
        max_concurrent=max(1, _int("MNIST_MAX_CONCURRENT", 1)),
        max_queued_per_owner=max(1, _int("MNIST_MAX_QUEUED_PER_OWNER", 3)),
        demo=os.environ.get("MNIST_DEMO", "").lower() in ("1", "true", "yes", "on"),
        max_epochs=_int("MNIST_MAX_EPOCHS", 5),
        max_train_images=_int("MNIST_MAX_TRAIN_IMAGES", 20_000),
        max_batch_size=_int("MNIST_MAX_BATCH_SIZE", 1024),
        allowed_models=models,
    )


def check_demo_bounds(config) -> None:
    """Raise ConfigError, naming the field, when a config exceeds the public-demo bounds."""
    limits = current()
    if not limits.demo:
        return
    if config.model not in limits.allowed_models:
        raise ConfigError(f"model: this demo allows {', '.join(limits.allowed_models)}")
    if config.epochs > limits.max_epochs:
        raise ConfigError(f"epochs: this demo allows at most {limits.max_epochs}")
    if config.train_size == 0 or config.train_size > limits.max_train_images:
        raise ConfigError(f"train_size: this demo allows at most {limits.max_train_images} training images "
                          "(0 = all is not allowed)")
    if config.batch_size > limits.max_batch_size:
        raise ConfigError(f"batch_size: this demo allows at most {limits.max_batch_size}")
