"""The tutorials' from-scratch NumPy MLPs as a training backend (being written)."""

from .errors import ConfigError


def check_config(config) -> None:
    raise ConfigError("backend: the numpy backend is not available yet")


def train_numpy(config, on_event=None, should_stop=None, data_root=None):
    raise ConfigError("backend: the numpy backend is not available yet")
