"""A class code's one rule: what a teacher may call a class, checked wherever a code arrives.

Below both of its users: classes (a class's runs, names and leaderboard, a read model) and drawings
(each drawing tagged with the class it was drawn in, kept beside the registry), so that the drawing
set, which training reads, needs nothing from the read models above it.
"""

from __future__ import annotations

import re

from .errors import MnistLabError

CODE_MIN, CODE_MAX = 3, 32
_CODE = re.compile(rf"[a-z0-9](?:[a-z0-9-]{{{CODE_MIN - 2},{CODE_MAX - 2}}})[a-z0-9]")


class ClassError(MnistLabError):
    """A class code or display name that cannot be used."""


def check_code(text: object) -> str:
    """The class code as it is stored (lower case, trimmed), or ClassError in one line.

    3 to 32 letters, digits and dashes, starting and ending with a letter or digit: short enough to
    read out in a classroom, safe in a URL and in a cookie."""
    code = text.strip().lower() if isinstance(text, str) else ""
    if not _CODE.fullmatch(code) or "--" in code:
        raise ClassError(f"A class code is {CODE_MIN} to {CODE_MAX} letters, digits and single dashes, "
                         "like period-3.")
    return code
