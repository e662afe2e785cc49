"""Helpers for the AppTest page tests: open the real app and switch to one page."""

from pathlib import Path

from streamlit.testing.v1 import AppTest

APP = str(Path(__file__).resolve().parent.parent / "app.py")


def open_page(page: str, timeout: float = 120) -> AppTest:
    """Run app.py (navigation, sidebar) and switch to `page` (e.g. "app_pages/train.py")."""
    at = AppTest.from_file(APP, default_timeout=timeout)
    at.run()
    at.switch_page(page)
    at.run()
    return at


def messages(at: AppTest) -> dict:
    """Everything the page said, to assert on and to print when a test fails."""
    return {"exception": [e.value for e in at.exception], "error": [e.value for e in at.error],
            "warning": [w.value for w in at.warning], "success": [s.value for s in at.success]}
