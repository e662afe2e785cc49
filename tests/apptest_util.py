"""Helpers for the AppTest page tests: open the real app and switch to one page."""

from streamlit.testing.v1 import AppTest

from mnist_core.paths import REPO_ROOT

APP = str(REPO_ROOT / "app.py")


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
