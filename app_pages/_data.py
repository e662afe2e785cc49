"""What pages read, cached: MNIST's images and labels, and checkpoints loaded from disk.

Heavy read-only things are loaded once per server with st.cache_resource and shared by every
session (nothing mutates them: code that hooks a model works on a private copy). On a hosted demo
(MNIST_AUTO_FETCH=1) the data is fetched once per server, the first time a page asks.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from mnist_core import data
from mnist_core.checkpoints import load_checkpoint
from mnist_core.errors import MnistLabError


@st.cache_resource(show_spinner="Loading MNIST...")
def load_split(split: str):
    """(uint8 images [N,28,28], int64 labels [N]) as numpy, shared by every session."""
    images, labels = data.load_mnist(split)
    return images.numpy(), labels.numpy()


@st.cache_resource(show_spinner="Fetching and verifying MNIST (once per server)...")
def auto_fetch() -> str | None:
    """With MNIST_AUTO_FETCH=1 (a hosted demo), fetch the data once per server; the error, if any.

    The outcome is cached either way, so a failing fetch is not retried on every page view.
    """
    try:
        data.fetch()
    except MnistLabError as exc:
        return str(exc)
    return None


def require_data() -> None:
    """Stop the page with a clear message when MNIST is not on disk."""
    if not data.is_present():
        st.error("MNIST is not downloaded yet. Fetch it from the Home page, or run `python -m mnist_core fetch-data`.")
        st.page_link("app_pages/home.py", label="Go to Home", icon=":material/home:")
        st.stop()


@st.cache_resource(show_spinner="Loading checkpoint...", max_entries=16)
def _load_model(path: str, mtime: float):
    return load_checkpoint(path)


def load_model(path: str | Path):
    """(model, meta) for a checkpoint, cached per file version. Raises CheckpointError."""
    p = Path(path)
    return _load_model(str(p), p.stat().st_mtime if p.exists() else 0.0)
