"""What a visitor sees when a page fails in a way nobody caught: no stack trace, no server paths.

Pages turn every error a user can cause into one st.error line; this is the net under them.
.streamlit/config.toml sets client.showErrorDetails = "type": the browser gets the exception's type
and Streamlit's generic message, while the message and traceback go only to the server's log.
"""

from __future__ import annotations

import os

from streamlit.testing.v1 import AppTest

from mnist_core.paths import REPO_ROOT

PAGE = """
from pathlib import Path
raise ValueError(f"cannot read {Path.cwd() / 'checkpoints' / 'secret.safetensors'}")
"""


def test_an_uncaught_error_shows_the_visitor_no_stack_trace_and_no_server_path(monkeypatch):
    monkeypatch.chdir(REPO_ROOT)  # Streamlit reads .streamlit/config.toml from the folder it starts in
    at = AppTest.from_string(PAGE, default_timeout=60)
    at.run()
    assert len(at.exception) == 1
    shown = at.exception[0]
    assert not shown.stack_trace
    assert str(REPO_ROOT) not in shown.message and "secret" not in shown.message
    assert os.sep + "checkpoints" not in str(shown.proto)


CAUGHT = """
from app_pages._errors import show_error
from mnist_core.errors import CheckpointError
show_error(OSError(2, "No such file or directory", "/srv/lab/checkpoints/secret.safetensors"))
show_error(CheckpointError("cannot read /srv/lab/runs/registry.sqlite: disk I/O error"))
"""


def test_an_error_a_page_catches_shows_one_line_with_no_server_path(monkeypatch):
    monkeypatch.chdir(REPO_ROOT)
    at = AppTest.from_string(CAUGHT, default_timeout=60)
    at.run()
    assert not at.exception
    lines = [e.value for e in at.error]
    assert len(lines) == 2
    for line in lines:
        assert "/srv" not in line and "\n" not in line
    assert "secret.safetensors" in lines[0] and lines[0].startswith("Something went wrong: FileNotFoundError")
    assert "registry.sqlite" in lines[1]
