"""Server memory while several visitors upload a picture to Draw at once.

Starts `streamlit run app.py` under the demo settings (MNIST_DEMO=1, no warm runner, so the server's
process tree is the web server alone) and opens the Draw page in `--visitors` Chromium pages, each its
own session. Once every page is up, the server's peak-resident mark is reset (/proc/PID/clear_refs)
and each page's picture input is handed the same file, one right after the other, so the uploads and
their decodes overlap; each page then waits until it shows a prediction or a one-line error. The
server's memory is sampled every 20 ms meanwhile (RSS of its process tree), and its kernel-kept peak
(VmHWM, exact however short the spike) is read at the end. Target: the server's peak < 1.5 GB.

--picture  the file every visitor uploads:
           webp   a lossless WebP of 3840x2160, the costliest picture load_image accepts (default)
           png16  the issue's 16-bit 4096x4096 PNG (37 KB; +400 MB per decode before it was bounded)
           jpeg   a 4096x4096 JPEG, the largest accepted (it decodes reduced)
--app-dir  another checkout's folder (app.py and its mnist_core), e.g. an older commit from
           `git archive COMMIT | tar -x -C DIR`, to measure it the same way

    python -m benchmarks.upload_memory [--visitors 6] [--picture webp] [--app-dir DIR --variant before]
"""

from __future__ import annotations

import argparse
import io
import os
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import psutil

from benchmarks._common import REPO_ROOT, LoadMonitor, machine_info, print_table, result_line, write_result
from harness import VIEWPORT, StreamlitServer, launch_chromium

TARGET_MB = 1500
MB = 1 << 20

# Resolves once the page shows a prediction (a digit) or an error (a refusal, or "try again").
ANSWERED = """() => {
  const error = document.querySelector('[data-testid=stAlertContentError]');
  if (error) return 'error: ' + error.textContent.trim();
  for (const m of document.querySelectorAll('[data-testid=stMetric]')) {
    const v = m.querySelector('[data-testid=stMetricValue]');
    if (m.textContent.includes('Prediction') && v && /^[0-9]$/.test(v.textContent.trim())
        && document.body.textContent.includes('your uploaded picture')) return 'digit ' + v.textContent.trim();
  }
  return false;
}"""


def picture(kind: str) -> tuple[str, bytes]:
    from PIL import Image

    def one(height, width, dtype=np.uint8, ink=255):
        img = np.zeros((height, width), dtype)
        img[height // 4: 3 * height // 4, width // 2 - width // 40: width // 2 + width // 40] = ink
        return img

    buf = io.BytesIO()
    if kind == "webp":
        rgba = np.dstack([one(1600, 2560)] * 3 + [np.full((1600, 2560), 200, np.uint8)])
        Image.fromarray(rgba).save(buf, format="WEBP", lossless=True)
        return "digit.webp", buf.getvalue()
    if kind == "png16":
        Image.fromarray(one(4096, 4096, np.uint16, 65535)).save(buf, format="PNG")
        return "digit.png", buf.getvalue()
    Image.fromarray(one(4096, 4096)).convert("RGB").save(buf, format="JPEG", quality=90)
    return "digit.jpg", buf.getvalue()


def tree(pid: int) -> list[psutil.Process]:
    root = psutil.Process(pid)
    return [root, *root.children(recursive=True)]


def tree_mb(pid: int, field: str = "rss") -> float:
    total = 0
    for proc in tree(pid):
        try:
            info = proc.memory_full_info() if field == "pss" else proc.memory_info()
            total += getattr(info, field)
        except psutil.Error:
            pass  # ended meanwhile
    return total / MB


def peak_resident_mb(pid: int) -> float:
    """The kernel's high-water mark of the process's resident memory (VmHWM)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM")


class Sampler(threading.Thread):
    def __init__(self, pid: int, every: float = 0.02):
        super().__init__(daemon=True)
        self.pid, self.every, self.peak, self.stop = pid, every, 0.0, threading.Event()

    def run(self) -> None:
        while not self.stop.wait(self.every):
            self.peak = max(self.peak, tree_mb(self.pid))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--visitors", type=int, default=6)
    parser.add_argument("--picture", choices=["webp", "png16", "jpeg"], default="webp")
    parser.add_argument("--app-dir", type=Path, default=REPO_ROOT)
    parser.add_argument("--variant", default="")
    parser.add_argument("--timeout", type=float, default=180, help="seconds each page may take to answer")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    name, data = picture(args.picture)
    env = {"MNIST_DEMO": "1", "MNIST_WARM_RUNNER": "0", "MNIST_DATA_DIR": os.environ.get(
        "MNIST_DATA_DIR", str(REPO_ROOT / "data"))}
    with tempfile.TemporaryDirectory(prefix="upload_memory_") as tmp, LoadMonitor() as load:
        upload = Path(tmp) / name
        upload.write_bytes(data)
        with StreamlitServer(Path(tmp) / "app", app_dir=args.app_dir, env=env) as server, sync_playwright() as pw:
            browser = launch_chromium(pw)
            pages = []
            for _ in range(args.visitors):
                page = browser.new_context(viewport=VIEWPORT).new_page()
                page.goto(f"{server.url}/draw")
                pages.append(page)
            inputs = [p.get_by_test_id("stFileUploader").filter(has_text="picture of a digit")
                      .locator("input[type=file]") for p in pages]
            for field in inputs:
                field.wait_for(state="attached", timeout=args.timeout * 1000)
            time.sleep(2)  # the pages' first runs settle
            idle_rss, idle_pss = tree_mb(server.pid), tree_mb(server.pid, "pss")
            Path(f"/proc/{server.pid}/clear_refs").write_text("5")  # VmHWM := VmRSS from here on
            sampler = Sampler(server.pid)
            sampler.start()
            started = time.perf_counter()
            for field in inputs:
                field.set_input_files(str(upload))
            outcomes = []
            for page in pages:
                handle = page.wait_for_function(ANSWERED, timeout=args.timeout * 1000, polling=100)
                outcomes.append(handle.json_value())
            seconds = time.perf_counter() - started
            time.sleep(1)
            sampler.stop.set()
            sampler.join()
            peak_hwm = peak_resident_mb(server.pid)
            after_rss, after_pss = tree_mb(server.pid), tree_mb(server.pid, "pss")
            browser.close()
    rows = [{"what": "server idle, Draw open in every page", "RSS MB": round(idle_rss), "PSS MB": round(idle_pss)},
            {"what": f"peak during {args.visitors} uploads (sampled every 20 ms)", "RSS MB": round(sampler.peak)},
            {"what": "peak (VmHWM, the kernel's)", "RSS MB": round(peak_hwm)},
            {"what": "after the uploads", "RSS MB": round(after_rss), "PSS MB": round(after_pss)}]
    print_table(rows, title=f"{args.visitors} visitors upload {name} ({len(data) / 1024:.0f} KB) at once")
    for k, outcome in enumerate(outcomes):
        print(f"  visitor {k + 1}: {outcome}")
    peak = max(peak_hwm, sampler.peak)
    write_result("upload_memory", {
        "machine": machine_info(), "load": load.summary(), "visitors": args.visitors, "picture": name,
        "picture_bytes": len(data), "app_dir": str(args.app_dir), "idle_rss_mb": idle_rss, "idle_pss_mb": idle_pss,
        "peak_sampled_rss_mb": sampler.peak, "peak_hwm_mb": peak_hwm, "after_rss_mb": after_rss,
        "after_pss_mb": after_pss, "seconds_to_all_answers": seconds, "outcomes": outcomes, "target_mb": TARGET_MB,
    }, variant=args.variant)
    result_line(peak_mb=peak, idle_mb=idle_rss, added_mb=peak - idle_rss, answered_s=seconds,
                digits=sum(o.startswith("digit") for o in outcomes),
                errors=sum(o.startswith("error") for o in outcomes), load_1min=load.summary()["max_1min"])
    if peak >= TARGET_MB:
        raise SystemExit(f"the server peaked at {peak:.0f} MB, over the {TARGET_MB} MB target")


if __name__ == "__main__":
    main()
