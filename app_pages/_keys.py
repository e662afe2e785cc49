"""The session-state keys that more than one page reads or writes, named once.

A page's own keys (its widgets', what it keeps between its reruns) stay in that page. These are the
threads between pages: one page leaves a value and another picks it up, so both must spell the key
the same way.
"""

from __future__ import annotations

# The image Inside the network shows: {"kind": "dataset", "split": "test", "index": 7} or {"kind": "drawing"}.
# Dataset, Draw, Evaluate and Explain set it to send an image there (_frame.open_in_inside); Inside keeps it
# up to date, so coming back shows the same image.
INSPECT_SOURCE = "inspect_source"

# The Draw page's last drawing as the model sees it (float32 [28, 28] in [0, 1]); absent while the canvas is
# blank. Inside the network shows it when INSPECT_SOURCE is a drawing.
DRAWING = "drawing"

# The model choosers start on this one when it is set (a checkpoint's file name, or "run:<id>" for a run whose
# checkpoint the registry holds): the sweep view's "use this model" sets it.
DEFAULT_MODEL = "mnist_default_model"

# The run the Train page's live panel watches, and a flag that brings the panel to the top of the screen once.
# Set by Start and by the sweep view's "watch it in the live panel".
WATCH_RUN = "watch_run"
SCROLL_TO_RUN = "scroll_to_run"

# The One run form's values ({field: value}) under a key no widget owns, kept while the Train page is not
# shown (Streamlit drops a widget's value when its page is left); the Sweep tab starts every run from them.
TRAIN_FORM = "train_form"

# This browser's owner token (_frame.visitor_token): the runs it starts carry it.
VISITOR_TOKEN = "visitor_token"


def field_key(name: str) -> str:
    """The One run form's widget key for a TrainConfig field ("cfg_lr"), which the Sweep tab reads too."""
    return f"cfg_{name}"
