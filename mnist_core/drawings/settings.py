"""A host's settings for the drawing set, read from the environment each time (as limits.py's are):

    MNIST_DRAWINGS            on | off (default on): whether visitors may give drawings. Off, nothing
                              is added (add_drawing and import_set refuse), and what the set holds
                              stays readable: evaluation on it, the Dataset page, the export
    MNIST_DRAWINGS_PER_HOUR   drawings one browser may give in an hour (default 30)
    MNIST_DRAWINGS_MAX        drawings the whole set may hold (default 10000); past it nobody can add
                              (the operator exports and removes, or raises it); an import must fit too
    MNIST_DRAWINGS_LICENCE    the licence the export's datasheet and the consent line name (default
                              CC0-1.0: anyone may use the drawings for anything)
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Optional

from ..errors import ConfigError

DEFAULT_PER_HOUR = 30
DEFAULT_MAX = 10_000
DEFAULT_LICENCE = "CC0-1.0"
MAX_LICENCE_CHARS = 200


@dataclass(frozen=True)
class Settings:
    enabled: bool
    per_hour: int
    max_drawings: int
    licence: str


def current() -> Settings:
    """The settings now, or ConfigError (one line) naming the variable that is wrong."""
    switch = os.environ.get("MNIST_DRAWINGS", "on").strip().lower()
    if switch not in ("on", "off"):
        raise ConfigError(f"MNIST_DRAWINGS must be on or off, not {switch[:20]!r}")
    licence = " ".join(os.environ.get("MNIST_DRAWINGS_LICENCE", "").split()) or DEFAULT_LICENCE
    if len(licence) > MAX_LICENCE_CHARS or not licence.isprintable():
        raise ConfigError(f"MNIST_DRAWINGS_LICENCE must be one line of at most {MAX_LICENCE_CHARS} characters")
    return Settings(enabled=switch == "on", per_hour=_count("MNIST_DRAWINGS_PER_HOUR", DEFAULT_PER_HOUR),
                    max_drawings=_count("MNIST_DRAWINGS_MAX", DEFAULT_MAX), licence=licence)


def _count(name: str, default: int) -> int:
    text = os.environ.get(name, "").strip()
    try:
        value = int(text) if text else default
    except ValueError:
        value = -1
    if value < 0:
        raise ConfigError(f"{name} must be a whole number, 0 or more, not {text[:20]!r}")
    return value


def consent_line(licence: Optional[str] = None) -> str:
    """What a visitor is told beside "Add to the drawing set", and what the datasheet says they were told."""
    licence = licence or current().licence
    return ("Adds to the lab's drawing set the 28x28 picture the model saw, your strokes (points, times, and "
            "whether you drew with a mouse, a finger or a pen), the digit and the model's answer. Nothing about "
            "you is kept: no IP address, no user agent, no name. Everyone using this lab can see the set, and "
            f"it may be shared under {licence}. You can remove your drawings later from this browser.")
