"""What every benchmark shares: machine facts, load sampling, tables, the JSON result, the RESULT line.

The machine these run on is often shared, so every result records the load average (os.getloadavg)
at the start, at the end and sampled once a second in between: a figure taken with a 1-minute load
well above the core count was taken under contention and says so.
"""

from __future__ import annotations

import json
import math
import os
import platform
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any, Iterable, Optional

from mnist_core.paths import REPO_ROOT, atomic_write

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def loadavg() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:  # pragma: no cover
        return [float("nan")] * 3


def machine_info() -> dict[str, Any]:
    info: dict[str, Any] = {
        "cpu_model": cpu_model(),
        "logical_cores": os.cpu_count(),
        "usable_cores": usable_cores(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
    try:
        import torch
        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
        info["cuda_available"] = torch.cuda.is_available()
        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
    except ImportError:  # pragma: no cover
        pass
    return info


class LoadMonitor:
    """Samples the 1-minute load average once a second in a daemon thread while the benchmark runs."""

    def __init__(self, interval: float = 1.0):
        self.interval = interval
        self.samples: list[float] = []
        self.start = loadavg()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.samples.append(loadavg()[0])

    def __enter__(self) -> "LoadMonitor":
        print(f"load average at start: {' '.join(map(str, self.start))} "
              f"({usable_cores()} usable cores)", flush=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=2 * self.interval)
        self.end = loadavg()
        print(f"load average at end: {' '.join(map(str, self.end))}", flush=True)

    def summary(self) -> dict[str, Any]:
        samples = self.samples or [self.start[0]]
        cores = usable_cores()
        peak = max(samples + [self.start[0], getattr(self, "end", self.start)[0]])
        return {
            "start": self.start,
            "end": getattr(self, "end", None),
            "mean_1min": round(statistics.fmean(samples), 2),
            "max_1min": round(peak, 2),
            "samples": len(samples),
            "cores": cores,
            # More runnable work than cores at some point: the timings include waiting for a core.
            "under_load": peak > cores * 0.75,
        }


def _cpu_ticks() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return sum(fields) - idle, sum(fields)


def busy_fraction(seconds: float = 2.0) -> float:
    """Fraction of all cores busy over the next `seconds` (this process sleeps meanwhile)."""
    try:
        b0, t0 = _cpu_ticks()
        time.sleep(seconds)
        b1, t1 = _cpu_ticks()
    except (OSError, ValueError, IndexError):
        return float("nan")
    return (b1 - b0) / max(t1 - t0, 1)


def wait_for_quiet(max_wait: float, busy_below: float = 0.25, window: float = 2.0) -> dict[str, Any]:
    """Wait (up to max_wait seconds) until the other processes leave the cores mostly idle.

    Quiet = less than `busy_below` of all cores busy over two windows in a row. Returns what
    happened, for the JSON: the benchmark goes on either way, and says whether it was quiet.
    """
    if max_wait <= 0:
        return {"waited_s": 0.0, "quiet": None}
    start = time.perf_counter()
    calm, last = 0, float("nan")
    while True:
        last = busy_fraction(window)
        calm = calm + 1 if last < busy_below else 0
        waited = time.perf_counter() - start
        if calm >= 2 or waited >= max_wait:
            return {"waited_s": round(waited, 1), "quiet": calm >= 2, "busy_fraction": round(last, 3),
                    "load_1min": loadavg()[0]}


class OthersShare:
    """How much of the machine other processes used while a block ran.

    others = (CPU time all processes used, from /proc/stat) - (CPU time this process used), as a
    fraction of (wall time x cores). Near 0: the block had the machine to itself; 0.5 on 2 cores:
    someone else kept a whole core busy meanwhile, and the block's wall time shows it.
    """

    def __enter__(self) -> "OthersShare":
        self.fraction = float("nan")
        try:
            self._busy0, _ = _cpu_ticks()
        except (OSError, ValueError, IndexError):
            self._busy0 = None
        self._cpu0, self._t0 = time.process_time(), time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        wall = time.perf_counter() - self._t0
        own = time.process_time() - self._cpu0
        if self._busy0 is None or wall <= 0:
            return
        try:
            busy1, _ = _cpu_ticks()
        except (OSError, ValueError, IndexError):
            return
        all_busy = (busy1 - self._busy0) / os.sysconf("SC_CLK_TCK")
        self.fraction = round(max(0.0, all_busy - own) / (wall * usable_cores()), 3)


def percentile(values: Iterable[float], q: float) -> float:
    """The q-th percentile (0-100) with linear interpolation, like numpy's default."""
    data = sorted(values)
    if not data:
        return float("nan")
    pos = (len(data) - 1) * q / 100
    lo, hi = math.floor(pos), math.ceil(pos)
    return data[lo] + (data[hi] - data[lo]) * (pos - lo)


def fmt(value: Any, digits: int = 3) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "n/a"
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        return f"{value:.{digits}g}" if abs(value) < 1 else f"{value:.{digits}f}".rstrip("0").rstrip(".")
    return str(value)


def print_table(rows: list[dict[str, Any]], columns: Optional[list[str]] = None, title: str = "") -> None:
    if not rows:
        return
    columns = columns or list(rows[0])
    cells = [[fmt(r.get(c, "")) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    if title:
        print(f"\n{title}")
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths)))
    print("  ".join("-" * w for w in widths))
    for row in cells:
        print("  ".join(v.rjust(w) if _numeric(v) else v.ljust(w) for v, w in zip(row, widths)))
    print(flush=True)


def _numeric(text: str) -> bool:
    return text.replace(",", "").replace(".", "", 1).replace("-", "", 1).replace("%", "").isdigit()


def write_result(name: str, payload: dict[str, Any], variant: str = "") -> Path:
    """benchmarks/results/NAME.json (NAME.VARIANT.json for a non-default run, e.g. other thread
    counts), written to a temporary name and renamed."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / (f"{name}.{variant}.json" if variant else f"{name}.json")
    body = {"benchmark": name, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "command": " ".join([f"python -m benchmarks.{name}", *sys.argv[1:]]), **payload}
    text = json.dumps(body, indent=2, sort_keys=False, default=_json_default) + "\n"
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))
    print(f"wrote {path.relative_to(REPO_ROOT)}")
    return path


def _json_default(value: Any):
    if hasattr(value, "item"):
        return value.item()
    return str(value)


def result_line(**values: Any) -> str:
    """The last line every benchmark prints: RESULT key=value ..."""
    parts = []
    for key, value in values.items():
        if isinstance(value, float):
            value = f"{value:.4g}" if abs(value) < 1e4 else f"{value:.0f}"
        parts.append(f"{key}={str(value).replace(' ', '_')}")
    line = "RESULT " + " ".join(parts)
    print(line, flush=True)
    return line
