"""Who gave a drawing, without keeping who they are; and the held-out part, split by giver.

A drawing is kept with its giver: a hash of the visitor's owner token (the cookie that already lets
a browser cancel its own runs), never the token itself, and nothing else about the person. The hash
does all a giver is needed for: the same browser finds its own drawings ("mine") and may remove
them (it sends its token; the hash of that must match), and drawings group by giver for the split.
The token is random (secrets.token_urlsafe), so its hash cannot be turned back into it; someone who
reads the registry learns which drawings came from one browser, and nothing that would let them
act as it.

The held-out part is chosen by giver, never by drawing: one person's drawings look alike, so a
split by drawing would put their twins on both sides and flatter the model. A giver is held out when
a hash of their giver id falls below HELD_OUT; that depends on the giver alone, so as the set grows
nobody changes side, and every run (any seed, any day) holds out the same people.
"""

from __future__ import annotations

import hashlib
import re
from typing import Iterable

import numpy as np

from ..errors import DrawingRefused

HELD_OUT = 0.2  # about this share of the givers (and so of the drawings) is never trained on
_TOKEN = re.compile(r"[A-Za-z0-9_-]{16,128}")  # an owner token as the pages make it (token_urlsafe)


def giver_of(token: object) -> str:
    """The giver id kept with a drawing given from the browser holding owner token `token`."""
    if not isinstance(token, str) or not _TOKEN.fullmatch(token):
        raise DrawingRefused("this browser has no owner token to give drawings with: reload the page")
    return _hash("giver", token)


def imported_giver(set_key: str, name: str) -> str:
    """The giver id of an imported set's giver `name` ("g3" in its strokes.jsonl): apart from every
    giver of that set and every giver here, and no browser's."""
    return _hash("imported giver", f"{set_key} {name}")


def _hash(purpose: str, text: str) -> str:
    return hashlib.sha256(f"mnist-lab drawings: {purpose}\0{text}".encode()).hexdigest()


def is_held_out(giver: str) -> bool:
    """Whether this giver's drawings belong to the held-out part (about HELD_OUT of the givers)."""
    return int(_hash("held out", giver)[:8], 16) < HELD_OUT * 2**32


def split_by_giver(givers: Iterable[str]) -> tuple[np.ndarray, np.ndarray]:
    """(training indices, held-out indices) into a list of drawings' givers: every drawing of one
    giver on the same side, the same side whatever else is in the list."""
    held = np.array([is_held_out(g) for g in givers], dtype=bool)
    return np.flatnonzero(~held), np.flatnonzero(held)
