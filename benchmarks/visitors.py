"""Page response times for 10 and 25 websocket visitors browsing while one training run trains.

A real server (harness.StreamlitServer) with DEPLOY.md's demo settings (the `KEY = "value"` lines of
its Secrets block: MNIST_DEMO=1 and its bounds), visited once at its root. One run trains all along:
the Train form's starting values on this host (mnist_core.form.first_run), submitted through the CLI
(`python -m mnist_core submit`) into the server's registry, and submitted again whenever none is live.

Each visitor is a harness.ws_visitor.Visitor (a tab without a browser: Streamlit's websocket
protocol, its own owner cookie): it lands on Home, then goes round the pages, starting at its own
place in the round: open a page (timed: the request until script_finished), stay `--think` seconds
on it answering its polling fragments as a browser's timers do (Train's live panel every second and
charts every two, the sidebar's runs; these fragment runs are timed apart), next page. All visitors
start together and browse for `--seconds`. Reported per visitor count: p50 / p95 / max of a page, per
page too, of a fragment run; errors (an exception box, a timeout); the load average sampled every
second, the server process's CPU time and peak RSS; how far the training run got meanwhile. Before
the crowds, one visitor opens every page once (the caches a page fills once per server), timed apart
as "cold".

    python -m benchmarks.visitors [--visitors 10 25] [--seconds 60] [--think 2] [--wait-quiet S]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import secrets
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from benchmarks._common import (LoadMonitor, REPO_ROOT, machine_info, percentile, print_table, result_line,
                                usable_cores, wait_for_quiet, write_result)
from harness import StreamlitServer, deploy_settings, log_tail
from harness.ws_visitor import Visitor

PAGES = ["", "dataset", "train", "inside", "draw", "evaluate", "explain"]  # Home is ""
REQUEST_TIMEOUT_S = 120.0


# --- the server's side: its CPU time and memory, and one run always training -------------------------

def process_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM"):
            return int(line.split()[1]) / 1024
    return float("nan")


class Training:
    """Keeps one run live in the server's registry: submits the form's starting values whenever none is."""

    def __init__(self, env: dict[str, str]):
        self.env = env
        self.submitted: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _live(self) -> list:
        from mnist_core import registry
        return [r for r in registry.list_runs(root=Path(self.env["MNIST_RUNS_DIR"])) if r.is_live]

    def submit(self) -> str:
        from mnist_core import form
        flags = [f"--{k.replace('_', '-')}={v}" for k, v in form.first_run().values.items()]
        out = subprocess.run([sys.executable, "-m", "mnist_core", "submit", *flags], cwd=REPO_ROOT, env=self.env,
                             capture_output=True, text=True, timeout=120)
        if out.returncode != 0:
            raise RuntimeError(f"submit failed: {out.stderr.strip()[-500:]}")
        self.submitted.append(out.stdout.strip().splitlines()[-1])
        return self.submitted[-1]

    def wait_until_running(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while not any(r.status == "running" for r in self._live()):
            if time.monotonic() > deadline:
                raise RuntimeError(f"no run started within {timeout:.0f} s")
            time.sleep(0.5)

    def _run(self) -> None:
        while not self._stop.wait(2.0):
            try:
                if not self._live():
                    self.submit()
            except Exception as exc:  # noqa: BLE001 - the report says how far the training got
                print(f"training: {exc}", flush=True)

    def steps(self) -> int:
        """Steps every submitted run has trained so far."""
        from mnist_core import registry
        done = 0
        for run_id in self.submitted:
            rows = registry.get_metrics(run_id, split="train", root=Path(self.env["MNIST_RUNS_DIR"]))
            done += max((m["step"] for m in rows), default=0)
        return done

    def __enter__(self) -> "Training":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


# --- the visitors ------------------------------------------------------------------------------------

async def browse(url: str, start: int, seconds: float, think: float, pages: dict, fragments: list,
                 errors: list) -> None:
    """One visitor: Home, then the round of pages from `start` on, until `seconds` have passed."""
    cookie = {"mnist_lab_visitor": secrets.token_urlsafe(24)}
    end = time.monotonic() + seconds
    async with Visitor(url, cookies=cookie, timeout=REQUEST_TIMEOUT_S) as tab:
        visited = 0
        while time.monotonic() < end:
            page = "" if visited == 0 else PAGES[(start + visited - 1) % len(PAGES)]
            visited += 1
            try:
                view = await tab.open(page)
                stay = await tab.dwell(think)
            except (asyncio.TimeoutError, OSError) as exc:
                errors.append(f"{page or 'home'}: {type(exc).__name__} {exc}")
                return  # a dead connection: a browser would reconnect; this visitor stops counting
            pages.setdefault(page or "home", []).append(view.seconds)
            fragments.extend(v.seconds for v in stay)
            errors.extend(f"{page or 'home'}: {e.split(':')[0]}" for v in [view, *stay] for e in v.exceptions)


async def crowd(url: str, visitors: int, seconds: float, think: float) -> dict:
    pages: dict[str, list[float]] = {}
    fragments: list[float] = []
    errors: list[str] = []
    await asyncio.gather(*(browse(url, i % len(PAGES), seconds, think, pages, fragments, errors)
                           for i in range(visitors)))
    return {"pages": pages, "fragments": fragments, "errors": errors}


def summary(values: list[float]) -> dict:
    return {"n": len(values), "p50_s": round(percentile(values, 50), 3), "p95_s": round(percentile(values, 95), 3),
            "max_s": round(max(values, default=float("nan")), 3)}


def measure(server: StreamlitServer, training: Training, visitors: int, seconds: float, think: float) -> dict:
    steps0, cpu0, t0 = training.steps(), process_cpu_seconds(server.pid), time.perf_counter()
    own0 = time.process_time()
    with LoadMonitor() as load:
        seen = asyncio.run(crowd(server.url, visitors, seconds, think))
    wall = time.perf_counter() - t0
    own = time.process_time() - own0
    every_page = [s for times in seen["pages"].values() for s in times]
    return {
        "visitors": visitors, "seconds": round(wall, 1), "think_s": think,
        "page": summary(every_page),
        "per_page": {page: summary(times) for page, times in sorted(seen["pages"].items())},
        "fragment": summary(seen["fragments"]),
        "errors": len(seen["errors"]), "error_samples": sorted(set(seen["errors"]))[:10],
        "load": load.summary(),
        "server_cpu_share": round((process_cpu_seconds(server.pid) - cpu0) / wall, 2),  # cores it kept busy
        "client_cpu_share": round(own / wall, 2),  # this process: the visitors reading what the server sent
        "server_peak_rss_mib": round(peak_rss_mib(server.pid)),
        "training_steps_per_s": round((training.steps() - steps0) / wall, 1),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--visitors", type=int, nargs="+", default=[10, 25])
    ap.add_argument("--seconds", type=float, default=60.0, help="how long each crowd browses")
    ap.add_argument("--think", type=float, default=2.0, help="seconds a visitor stays on a page")
    ap.add_argument("--wait-quiet", type=float, default=0.0, metavar="S",
                    help="before each crowd, wait up to S seconds for the other processes to leave the cores idle")
    args = ap.parse_args()

    settings = deploy_settings()
    os.environ.update(settings)  # form.first_run() fits the starting values to these bounds
    results = []
    with tempfile.TemporaryDirectory(prefix="mnist-visitors-") as tmp:
        server = StreamlitServer(Path(tmp), env=settings)
        try:
            server.start()
            env = dict(os.environ, MNIST_RUNS_DIR=str(server.runs_dir), MNIST_CHECKPOINT_DIR=str(server.ckpt_dir))
            cold = asyncio.run(warm_up(server.url))
            print(f"cold pages (s): {cold}", flush=True)
            with Training(env) as training:
                training.submit()
                training.wait_until_running()
                for n in args.visitors:
                    # Quiet here: the others leave the cores idle but for the one the training run holds (1 thread).
                    quiet = wait_for_quiet(args.wait_quiet, busy_below=0.25 + 1 / usable_cores())
                    print(f"{n} visitors browsing for {args.seconds:g} s ...", flush=True)
                    results.append({**measure(server, training, n, args.seconds, args.think), "quiet_wait": quiet})
        except Exception:
            print(log_tail(server.log_path, 40), file=sys.stderr)
            raise
        finally:
            server.stop()
            logged = server_errors(server.log_path)

    rows = [{"visitors": r["visitors"], "page p50 s": r["page"]["p50_s"], "page p95 s": r["page"]["p95_s"],
             "page max s": r["page"]["max_s"], "pages": r["page"]["n"], "fragment p95 s": r["fragment"]["p95_s"],
             "errors": r["errors"], "load 1min mean/max": f"{r['load']['mean_1min']}/{r['load']['max_1min']}",
             "server cores": r["server_cpu_share"], "client cores": r["client_cpu_share"],
             "train steps/s": r["training_steps_per_s"]} for r in results]
    print_table(rows, title="visitors browsing while a run trains (DEPLOY.md's demo settings)")
    for r in results:
        print_table([{"page": p, **s} for p, s in r["per_page"].items()], title=f"{r['visitors']} visitors, per page")
    # Other visitor counts at the default pace go to visitors.n10-25-50.json and the like.
    same_pace = args.seconds == 60.0 and args.think == 2.0
    variant = ("" if args.visitors == [10, 25] else "n" + "-".join(map(str, args.visitors))) if same_pace else "custom"
    write_result("visitors", {"machine": machine_info(), "settings": settings, "pages": PAGES,
                              "cold_pages_s": cold, "runs_submitted": len(training.submitted),
                              "results": results, "server_log_errors": logged},
                 variant=variant)
    result_line(**{f"p95_{r['visitors']}_s": r["page"]["p95_s"] for r in results},
                **{f"p50_{r['visitors']}_s": r["page"]["p50_s"] for r in results})
    return 0


async def warm_up(url: str) -> dict[str, float]:
    """One visitor opens every page once, Home first (deep links need app.py's navigation to have run):
    the caches each page fills once per server (the dataset, the default models) are filled before the
    crowd comes. Seconds per page, cold."""
    async with Visitor(url, timeout=REQUEST_TIMEOUT_S) as tab:
        return {page or "home": round((await tab.open(page)).seconds, 2) for page in PAGES}


def server_errors(log: Path) -> list[str]:
    """The exception lines in the server's log (an uncaught error on a page), each once."""
    found = re.findall(r"^([A-Za-z_.]*(?:Error|Exception)\b.*)$", log.read_text(errors="replace"), flags=re.MULTILINE)
    return sorted(set(line[:200] for line in found))


if __name__ == "__main__":
    sys.exit(main())
