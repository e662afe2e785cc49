"""Draw page latency: from lifting the mouse at the end of a stroke to the updated prediction on screen.

Starts `streamlit run app.py` on a free port with its registry in a temporary folder, opens the Draw
page in headless Chromium (the system's, or $E2E_CHROMIUM; both through harness/) and repeats: Clear,
wait until the prediction reads "–", draw a digit-like stroke with the mouse, and time, inside the page, from the
pointerup event to the moment the Prediction metric shows a digit (a MutationObserver on the page,
performance.now() at both ends: no Playwright round trip is counted). p50 and p95 over the strokes,
after a few warm-up strokes that are not counted. The server and the browser share the machine, so
the load average is recorded beside the figures.

    python -m benchmarks.draw_latency [--strokes 30] [--warmup 3]
    python -m benchmarks.draw_latency --draw-page OLD.py --variant old   # another draw.py, same app around it

--draw-page runs the app from a temporary copy of app.py, .streamlit/ and app_pages/ whose
app_pages/draw.py is the given file (e.g. `git show HEAD~5:app_pages/draw.py > /tmp/old_draw.py`), so
an older page can be measured against today's code without touching the working tree. A page from
before the canvas component (app_pages/_canvas.py) needs `pip install streamlit-drawable-canvas==0.13.0`,
which the project no longer installs.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
from pathlib import Path

from benchmarks._common import (REPO_ROOT, LoadMonitor, machine_info, percentile, print_table, result_line,
                                wait_for_quiet, write_result)
from harness import VIEWPORT, StreamlitServer, launch_chromium

CANVAS = "[data-testid=drawCanvas], canvas.upper-canvas"  # ours; streamlit-drawable-canvas's (an older page)

# Resolves window.__seen (performance.now()) the first time the Prediction metric shows a digit.
WATCH_PREDICTION = """() => {
  const digit = () => {
    for (const m of document.querySelectorAll('[data-testid=stMetric]')) {
      if (!m.textContent.includes('Prediction')) continue;
      const v = m.querySelector('[data-testid=stMetricValue]');
      return v !== null && /^\\d$/.test(v.textContent.trim());
    }
    return false;
  };
  window.__seen = null;
  window.__up = null;
  const obs = new MutationObserver(() => {
    if (window.__up !== null && digit()) { window.__seen = performance.now(); obs.disconnect(); }
  });
  obs.observe(document.body, {subtree: true, childList: true, characterData: true});
}"""
RECORD_POINTERUP = """() => { if (!window.__upHooked) { window.__upHooked = true;
  window.addEventListener('pointerup', () => { window.__up = performance.now(); }, true);
  window.addEventListener('mouseup', () => { if (window.__up === null) window.__up = performance.now(); }, true); } }"""


def app_tree(draw_page: Path | None, tmp: Path) -> Path:
    """The folder to run app.py from: the repository, or a copy whose app_pages/draw.py is draw_page."""
    if draw_page is None:
        return REPO_ROOT
    root = tmp / "app"
    shutil.copytree(REPO_ROOT / "app_pages", root / "app_pages", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO_ROOT / "app.py", root / "app.py")
    if (REPO_ROOT / ".streamlit").is_dir():
        shutil.copytree(REPO_ROOT / ".streamlit", root / ".streamlit")
    shutil.copy(draw_page, root / "app_pages" / "draw.py")
    return root


def stroke(k: int) -> list[tuple[float, float]]:
    """A vertical stroke (a 1), a little further right each time, in the canvas's own 280-pixel space."""
    x = 110 + 6 * (k % 10)
    return [(x, 40 + 10 * i) for i in range(21)]


def measure(base_url: str, strokes: int, warmup: int, timeout_ms: float) -> list[float]:
    from playwright.sync_api import expect, sync_playwright

    latencies: list[float] = []
    with sync_playwright() as pw:
        browser = launch_chromium(pw)
        try:
            page = browser.new_context(viewport=VIEWPORT).new_page()
            page.set_default_timeout(timeout_ms)
            expect.set_options(timeout=timeout_ms)
            page.goto(f"{base_url}/draw")
            app = page.get_by_test_id("stApp")
            idle = lambda: expect(app).to_have_attribute("data-test-script-state", "notRunning")  # noqa: E731
            expect(app).to_have_attribute("data-test-connection-state", "CONNECTED")
            idle()
            value = page.get_by_test_id("stMetric").filter(has_text="Prediction").get_by_test_id("stMetricValue")
            canvas = page.locator(CANVAS)
            expect(canvas).to_have_count(1)
            page.evaluate(RECORD_POINTERUP)
            for k in range(warmup + strokes):
                expect(value).to_have_text("–")
                idle()
                box = canvas.bounding_box()
                scale = box["width"] / canvas.evaluate("c => c.width")
                points = [(box["x"] + x * scale, box["y"] + y * scale) for x, y in stroke(k)]
                page.evaluate(WATCH_PREDICTION)
                page.mouse.move(*points[0])
                page.mouse.down()
                for x, y in points[1:]:
                    page.mouse.move(x, y, steps=2)
                page.mouse.up()
                page.wait_for_function("() => window.__seen !== null")
                ms = page.evaluate("() => window.__seen - window.__up")
                if k >= warmup:
                    latencies.append(ms)
                print(f"  stroke {k + 1 - warmup if k >= warmup else 'warm-up'}: {ms:.0f} ms", flush=True)
                idle()
                page.get_by_role("button", name="Clear", exact=True).click()
        finally:
            browser.close()
    return latencies


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--strokes", type=int, default=30, help="strokes measured (at least 20 for a p95)")
    ap.add_argument("--warmup", type=int, default=3, help="strokes drawn first and not counted")
    ap.add_argument("--draw-page", type=Path, help="measure this draw.py instead of app_pages/draw.py")
    ap.add_argument("--variant", default="", help="results go to draw_latency.VARIANT.json")
    ap.add_argument("--timeout", type=float, default=120.0, help="seconds allowed for the server to start")
    ap.add_argument("--wait-quiet", type=float, default=0.0, metavar="S",
                    help="wait up to S seconds for the other processes to leave the cores idle first")
    args = ap.parse_args()

    quiet = wait_for_quiet(args.wait_quiet)
    with tempfile.TemporaryDirectory(prefix="mnist-draw-latency-") as tmp_name:
        tmp = Path(tmp_name)
        with StreamlitServer(tmp, app_dir=app_tree(args.draw_page, tmp), start_timeout=args.timeout) as server:
            with LoadMonitor() as load:
                latencies = measure(server.url, args.strokes, args.warmup, 60_000)

    summary = {"strokes": len(latencies), "p50_ms": percentile(latencies, 50), "p95_ms": percentile(latencies, 95),
               "min_ms": min(latencies), "max_ms": max(latencies), "mean_ms": statistics.fmean(latencies)}
    print_table([{k: round(v, 1) if isinstance(v, float) else v for k, v in summary.items()}],
                title="mouse-up -> updated prediction on screen (ms)")
    write_result("draw_latency", {"machine": machine_info(), "load": load.summary(), "wait_for_quiet": quiet,
                                  "draw_page": str(args.draw_page or "app_pages/draw.py"), **summary,
                                  "latencies_ms": [round(x, 1) for x in latencies]}, variant=args.variant)
    result_line(p50_ms=summary["p50_ms"], p95_ms=summary["p95_ms"], strokes=len(latencies),
                load=load.summary()["mean_1min"])


if __name__ == "__main__":
    main()
