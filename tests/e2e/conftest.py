"""Browser end-to-end tests: a real `streamlit run app.py` driven by Chromium through Playwright.

One Streamlit server per session (harness/live_app.py, shared with the benchmarks that drive the
app), on a free port, with MNIST_RUNS_DIR and MNIST_CHECKPOINT_DIR pointed at temporary folders (the
committed default checkpoints in checkpoints/ are still found; MNIST_DATA_DIR is left alone, so the
tests use the real data). Each test gets a fresh browser context (a fresh Streamlit session) and an
`app` driver with the few gestures the tests need.

The browser is the system's Chromium (Playwright's own browsers cannot be downloaded here). Where
none is installed the tests skip, unless CI=true, where they fail: CI must run them.

When a test fails its report gets the tail of the server's log, the browser console's errors and
the newest training worker's log, and a screenshot lands in test-results/e2e/.

Everything waits on conditions (Playwright's auto-waiting `expect`), never on fixed sleeps: the
machine these run on may have two busy cores.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest

from harness import VIEWPORT, ServerError, StreamlitServer, find_chromium, launch_chromium, log_tail
from mnist_core.paths import REPO_ROOT

DOCS = REPO_ROOT / "docs"
FAILURE_SHOTS = REPO_ROOT / "test-results" / "e2e"

TIMEOUT_MS = 30_000          # default for every Playwright wait and expect


def page_title(nav_label: str) -> str:
    """A page's st.title, from its label in the sidebar navigation."""
    return "MNIST Lab" if nav_label == "Home" else nav_label


_state: dict = {}  # server log and runs folder, for the failure report


# --- skip or fail: is there a browser? -------------------------------------------------------------

def _unavailable(reason: str):
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: the browser tests must run in CI)", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def chromium_executable() -> str:
    path = find_chromium()
    if path is None:
        _unavailable("no Chromium found (looked for `chromium` on PATH and /usr/bin/chromium): "
                     "install it, e.g. `apt-get install chromium`, to run the browser tests")
    return path


# --- the Streamlit server (harness/live_app.py) ------------------------------------------------------

def _started(server: StreamlitServer) -> StreamlitServer:
    try:
        return server.start()
    except ServerError as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture(scope="session")
def app_server(chromium_executable, e2e_browser, tmp_path_factory):
    """The app's server for the whole session; yields its base URL.

    Warmed up with one visit to the root URL: until the root page has run once, Streamlit 1.67 treats
    the app as an old-style app_pages/ directory app and a deep link (/draw) runs app_pages/draw.py on its own,
    without app.py's st.navigation (see test_deep_link_on_a_fresh_server). Visiting the root first
    keeps the other tests independent of their order.
    """
    server = StreamlitServer(tmp_path_factory.mktemp("e2e"))
    _state.update(log=server.log_path, runs=server.runs_dir)
    _started(server)
    try:
        context = e2e_browser.new_context(viewport=VIEWPORT)
        try:
            App(context.new_page(), server.url).goto("")
        finally:
            context.close()
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def server_runs_dir(app_server) -> Path:
    """The session server's run registry folder (for a test to clean up runs it left going)."""
    return _state["runs"]


@pytest.fixture
def fresh_server(chromium_executable, tmp_path):
    """A second server, never visited yet; stopped after the test. Yields its base URL."""
    server = StreamlitServer(tmp_path / "fresh")
    _started(server)
    try:
        yield server.url
    finally:
        server.stop()


# --- the browser -----------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def e2e_playwright(chromium_executable):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        yield pw


@pytest.fixture(scope="session")
def e2e_browser(e2e_playwright, chromium_executable):
    browser = launch_chromium(e2e_playwright, chromium_executable)
    yield browser
    browser.close()


PHONE = "Pixel 7"  # a shared demo link is opened on phones: Playwright's descriptor (viewport, touch, mobile UA)


class App:
    """A Streamlit session in a browser tab, and the gestures the tests use."""

    def __init__(self, page, base_url: str):
        from playwright.sync_api import expect

        self.page, self.base_url, self.expect = page, base_url, expect

    # -- loading and waiting

    @property
    def root(self):
        return self.page.get_by_test_id("stApp")

    def new_tab(self) -> "App":
        """Another tab of the same browser (same cookies), not yet on any page."""
        return App(self.page.context.new_page(), self.base_url)

    def goto(self, path: str = "") -> None:
        self.page.goto(f"{self.base_url}/{path}")
        self.expect(self.root).to_have_attribute("data-test-connection-state", "CONNECTED", timeout=60_000)
        self.wait_idle(timeout=60_000)

    def wait_idle(self, timeout: float = TIMEOUT_MS) -> None:
        """The script has run at least once and is not running now."""
        self.expect(self.root).to_have_attribute("data-test-script-state", "notRunning", timeout=timeout)

    def wait_for(self, probe, what: str, timeout: float = TIMEOUT_MS / 1000):
        """Call probe() until it returns something truthy (returned); an exception counts as not yet.

        For conditions Playwright's expect cannot state (plotly.js's data, numbers parsed from text).
        """
        deadline = time.monotonic() + timeout
        last_error = None
        while True:
            try:
                value = probe()
                if value:
                    return value
            except Exception as exc:  # noqa: BLE001 - e.g. an element re-rendered under us: try again
                last_error = exc
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout:g} s waiting for {what}"
                                     + (f" (last error: {last_error})" if last_error else ""))
            self.page.wait_for_timeout(200)

    page_title = staticmethod(page_title)

    def title(self, text: str):
        """The page's st.title (an h1), by its exact text."""
        return self.page.locator("h1").filter(has_text=re.compile(rf"^\s*{re.escape(text)}\s*$"))

    def heading(self, pattern: str | re.Pattern):
        return self.page.get_by_role("heading", name=re.compile(pattern) if isinstance(pattern, str) else pattern)

    def assert_no_exception(self) -> None:
        self.expect(self.page.get_by_test_id("stException")).to_have_count(0)

    def nav_link(self, label: str):
        return self.page.get_by_test_id("stSidebarNavLink").filter(has=self.page.get_by_text(label, exact=True))

    def nav(self, label: str) -> None:
        """Click a sidebar navigation link; wait until that page has drawn its title, with no exception box."""
        link = self.nav_link(label)
        href = link.get_attribute("href")
        link.click()
        self.expect(self.page).to_have_url(href)
        self.expect(self.title(page_title(label))).to_be_visible(timeout=60_000)
        self.wait_idle()
        self.assert_no_exception()

    def nav_while_rerunning(self, label: str) -> None:
        """Click a sidebar link, then ask for a rerun (Streamlit's "r" key) about every 25 ms for a second:
        the new page's first run is cut short by another, as when a polling fragment's rerun crosses the
        page switch. A widget whose value code sets must still show that value: code passes it as the
        widget's default too, so a browser that missed the run which set it draws the same."""
        link = self.nav_link(label)
        href = link.get_attribute("href")
        link.click()
        self.expect(self.page).to_have_url(href)
        for _ in range(40):
            self.page.keyboard.press("r")
            self.page.wait_for_timeout(25)
        self.wait_idle()
        self.assert_no_exception()

    # -- widgets

    def widget(self, testid: str, label: str):
        return self.page.get_by_test_id(testid).filter(
            has=self.page.get_by_test_id("stWidgetLabel").get_by_text(label, exact=True))

    def select(self, label: str, option: str) -> None:
        box = self.widget("stSelectbox", label).locator("input")
        box.click()
        self.page.get_by_role("option", name=option, exact=True).click()
        self.expect(box).to_have_value(option)

    def number(self, label: str, value) -> None:
        box = self.widget("stNumberInput", label).locator("input")
        box.fill(str(value))
        box.press("Enter")
        self.expect(box).to_have_value(str(value))

    def button(self, name: str):
        return self.page.get_by_role("button", name=name, exact=True)

    def metric_value(self, label: str):
        return self.page.get_by_test_id("stMetric").filter(has_text=label).get_by_test_id("stMetricValue")

    # -- the drawing canvas (the Draw page's own component, app_pages/_canvas.py, in an open shadow root)

    def canvas(self):
        return self.page.get_by_test_id("drawCanvas")

    def draw(self, points: list[tuple[float, float]]) -> None:
        """One stroke through `points` (canvas pixels, whatever size the canvas is shown at), with the mouse,
        in small steps."""
        canvas = self.canvas()
        self.expect(canvas).to_have_count(1)
        canvas.scroll_into_view_if_needed()
        box = canvas.bounding_box()
        assert box is not None, "the canvas has no box"
        scale = box["width"] / canvas.evaluate("c => c.width")
        self.drag([(box["x"] + x * scale, box["y"] + y * scale) for x, y in points], steps=3)

    def drag(self, path: list[tuple[float, float]], steps: int = 4) -> None:
        """Press the mouse at path[0] (page pixels), move through the rest in small steps, release."""
        mouse = self.page.mouse
        mouse.move(*path[0])
        mouse.down()
        for x, y in path[1:]:
            mouse.move(x, y, steps=steps)
        mouse.up()

    # -- plotly charts

    def plotly_data(self, locator) -> list[dict]:
        """The traces of a Plotly chart as plotly.js holds them: name, x, y, customdata (arrays made plain)."""
        return locator.evaluate("""g => (g._fullData || []).map(t => ({
            name: t.name, type: t.type,
            x: t.x ? Array.from(t.x) : null, y: t.y ? Array.from(t.y) : null,
            z: t.z ? Array.from(t.z, r => Array.from(r)) : null,
            customdata: t.customdata
                ? Array.from(t.customdata, r => Array.isArray(r) || ArrayBuffer.isView(r) ? Array.from(r) : r) : null,
            source: t.source || null }))""")

    # -- screenshots

    def screenshot(self, name: str) -> Path:
        """The whole page, stMain's scrolled-away part included, into docs/NAME.png."""
        self.wait_idle()
        page = self.page
        height = page.evaluate("() => document.querySelector('[data-testid=stMain]').scrollHeight")
        page.set_viewport_size({"width": VIEWPORT["width"], "height": min(max(int(height), VIEWPORT["height"]), 6000)})
        try:
            page.evaluate("() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")
            DOCS.mkdir(exist_ok=True)
            path = DOCS / f"{name}.png"
            page.screenshot(path=str(path), animations="disabled")
        finally:
            page.set_viewport_size(VIEWPORT)
        return path


@pytest.fixture
def new_app(e2e_browser, e2e_playwright, request):
    """new_app(base_url, phone=False) -> App in a fresh browser context (a fresh Streamlit session), on a
    desktop viewport or, with phone=True, as a Pixel 7 (its viewport, touch, mobile user agent); closed after
    the test."""
    from playwright.sync_api import expect

    expect.set_options(timeout=TIMEOUT_MS)
    contexts = []
    console: list[str] = []
    request.node._e2e_console = console

    def make(base_url: str, phone: bool = False) -> App:
        if phone:
            device = {k: v for k, v in e2e_playwright.devices[PHONE].items() if k != "default_browser_type"}
            context = e2e_browser.new_context(**device)
        else:
            context = e2e_browser.new_context(viewport=VIEWPORT)
        context.set_default_timeout(TIMEOUT_MS)
        contexts.append(context)
        page = context.new_page()
        page.on("console", lambda m: console.append(f"{m.type}: {m.text}") if m.type in ("error", "warning")
                else None)
        page.on("pageerror", lambda e: console.append(f"pageerror: {e}"))
        page.on("requestfailed", lambda r: console.append(f"request failed: {r.url} ({r.failure})"))
        page.on("response", lambda r: console.append(f"HTTP {r.status}: {r.url}") if r.status >= 400 else None)
        return App(page, base_url)

    try:
        yield make
    finally:
        rep = getattr(request.node, "rep_call", None)
        if rep is not None and rep.failed:
            FAILURE_SHOTS.mkdir(parents=True, exist_ok=True)
            for i, context in enumerate(contexts):
                for j, page in enumerate(context.pages):
                    try:
                        page.screenshot(path=str(FAILURE_SHOTS / f"{request.node.name}-{i}-{j}.png"), full_page=True)
                    except Exception:  # noqa: BLE001 - a failure screenshot must not hide the failure
                        pass
        for context in contexts:
            context.close()


@pytest.fixture
def app(new_app, app_server) -> App:
    """The app in a fresh browser context (a fresh Streamlit session), on the session's server."""
    return new_app(app_server)


@pytest.fixture
def phone_app(new_app, app_server) -> App:
    """The app on a phone (Pixel 7: narrow viewport, touch), in a fresh browser context, on the session's server."""
    return new_app(app_server, phone=True)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    setattr(item, f"rep_{report.when}", report)
    if report.failed and "log" in _state:
        report.sections.append(("streamlit server log (tail)", log_tail(_state["log"])))
        console = getattr(item, "_e2e_console", None)
        if console:
            report.sections.append(("browser console errors and warnings", "\n".join(console[-60:])))
        worker_logs = sorted(_state["runs"].glob("*.log"), key=lambda p: p.stat().st_mtime)
        if worker_logs:
            report.sections.append((f"training worker log {worker_logs[-1].name} (tail)",
                                    log_tail(worker_logs[-1], 40)))
    return report
