"""How a page says something went wrong: one line in the reader's words, never a traceback or a server path.

Errors a visitor can cause come back from mnist_core as its own exception types (mnist_core.errors),
whose message already says what to do; anything else is named by its type. Either way the text goes
through live.for_visitor, which cuts any server path to its file name.
"""

from __future__ import annotations

import streamlit as st

from mnist_core.errors import MnistLabError
from mnist_core.live import for_visitor


def show_error(exc: Exception) -> None:
    """One st.error line for `exc`: our own errors as they are worded, anything else with its type first."""
    text = for_visitor(str(exc))
    if isinstance(exc, MnistLabError):
        st.error(text)
    else:
        st.error(f"Something went wrong: {type(exc).__name__}: {text}")
