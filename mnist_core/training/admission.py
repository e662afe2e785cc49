"""Admission: whether a valid config may run here, now.

`TrainConfig.from_dict` / `validate()` answer "is this a config?" (schema and ranges, the same
answer everywhere and forever). `admit(config)` answers "may it run on this host, under this
hosting policy?", which depends on the engine, the machine and the environment, and so can change:

    engine support   the NumPy engine trains a subset (its MLPs, plain SGD, no augmentation...)
    host support     the device exists here; no more CPU threads than the host has cores
    hosting bounds   under MNIST_DEMO, the public demo's bounds on the work (limits.py)

It is applied where a run is asked for (Executor.submit for the dashboard, the CLI's `train`) and
again where a worker starts one (the host or the policy may have changed while it waited). A run
recorded under an older policy is still a valid config: it displays, it just would not be admitted.
Every refusal is a one-line ConfigError that starts with the field it is about.
"""

from __future__ import annotations

from .. import limits
from ..errors import ConfigError
from .config import TrainConfig
from .numpy_engine import SUPPORTED as NUMPY_SUPPORTED
from .torch_engine import pick_device

ENGINE_SUPPORT = {"numpy": NUMPY_SUPPORTED}  # backend -> {field: allowed values}; torch takes every value


def check_engine(config: TrainConfig) -> None:
    """Raise ConfigError, naming the field, for a setting the config's engine does not support."""
    for name, allowed in ENGINE_SUPPORT.get(config.backend, {}).items():
        value = getattr(config, name)
        if value not in allowed:
            raise ConfigError(f"{name}: the {config.backend} backend supports {', '.join(allowed)}, not {value!r}")


def check_host(config: TrainConfig) -> None:
    """Raise ConfigError, naming the field, when this machine cannot run the config."""
    pick_device(config.device)  # a device this machine lacks is refused here, by name
    cores = limits.host_cores()
    if config.threads > cores:
        raise ConfigError(f"threads: this machine has {cores} core(s); ask for at most {cores} (0 = one per core)")


def admit(config: TrainConfig) -> TrainConfig:
    """Return `config` when it may run here under the current hosting bounds; else raise ConfigError."""
    config.validate()
    check_engine(config)
    check_host(config)
    limits.check_demo_bounds(config)
    return config
