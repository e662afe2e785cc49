"""Memory of a hosted demo with DEPLOY.md's settings: the server and every process it starts, in PSS.

A real server (harness.StreamlitServer) with the `KEY = "value"` lines of DEPLOY.md's Secrets block
(harness.deploy_settings) and nothing else, so MNIST_WARM_RUNNER keeps its default (on: the first
visit warms a local runner). Three visitors (harness.ws_visitor.Visitor: Streamlit's websocket
protocol, each with its own owner cookie) go round Home, Dataset, Draw (with a digit drawn: a test
image sent as the canvas's PNG, so the page predicts), Inside, Evaluate and Explain (the first time,
each asks for a t-SNE map of its own sample size: heavy jobs), each starting at its own place in the
round, staying `--think` seconds on a page. Meanwhile one run trains: the Train form's first run on
this host, submitted through the CLI and again whenever none is live (benchmarks.visitors.Training).

Once a second the process tree under the server is read from /proc and every process's memory from
/proc/PID/smaps_rollup. Processes are named by what started them: the server; the runner
(mnist_core.runner); its forkserver template (preloaded with mnist_core.warm); the worker it forks
for a run; the heavy-job template (mnist_core.heavy) and its jobs; multiprocessing's resource
trackers. Reported, per phase (the server up, no visitor yet; after one visitor opened every page,
the caches filled and the runner warm; three visitors and a run) and per kind of process:

- PSS: each page counted once, shared ones split between the processes that map them. The forked
  processes share most of torch with their template, so their RSS summed counts it several times;
  PSS summed over the tree is what the host's memory holds for it (page cache aside).
- RSS summed, for contrast, and USS (private pages only: what ending that process would give back).
- peak (the largest one-second sample) and steady (the median over the second half of the phase's
  samples; for a kind, of the samples in which it was there).

At the end of the loaded phase each process's /proc/PID/smaps is read once to say how much of the
PSS lies in CUDA's libraries: this machine has torch's CUDA build, a CPU host (deploy/requirements.txt)
does not map them. The load average is sampled along.

    python -m benchmarks.deploy_memory [--seconds 180] [--think 2] [--visitors 3]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import json
import os
import secrets
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from PIL import Image
from streamlit.proto.WidgetStates_pb2 import WidgetState

from benchmarks._common import LoadMonitor, machine_info, print_table, result_line, write_result
from benchmarks.visitors import REQUEST_TIMEOUT_S, Training, server_errors, summary, warm_up
from harness import StreamlitServer, deploy_settings, log_tail
from harness.ws_visitor import Visitor
from mnist_core import explain
from mnist_core.data import load_mnist
from mnist_core.preprocess import CANVAS_DATA_URL_PREFIX, CANVAS_SIZE

PAGES = ["", "dataset", "draw", "inside", "evaluate", "explain"]  # Home is ""
EMPTY_CANVAS = "Draw a digit on the canvas"  # Draw's prompt while nothing is drawn
TSNE_SHOWN = "t-SNE maps at most"  # Explain's caption under MNIST_DEMO once t-SNE is the projection
MIB = 1024 * 1024
# Where torch's CUDA build keeps its GPU code: the nvidia-* wheels and libtorch_cuda, triton's too.
CUDA_LIBRARIES = ("/nvidia/", "libtorch_cuda", "libcudnn", "libcublas", "libnccl", "libcusparse", "libcufft",
                  "libcurand", "libcusolver", "libnvrtc", "libnvJitLink", "/triton/", "libc10_cuda")


# --- the process tree and its memory -----------------------------------------------------------------

def _parents() -> dict[int, int]:
    """pid -> parent pid of every process we can see."""
    parents = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            stat = Path(f"/proc/{name}/stat").read_text()
        except OSError:
            continue  # gone meanwhile
        parents[int(name)] = int(stat.rsplit(")", 1)[1].split()[1])
    return parents


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def process_kinds(server_pid: int) -> dict[int, str]:
    """The server and every process under it, each named by what started it.

    A forked child keeps its template's command line, so a child of a template is named by its parent
    first; a template is multiprocessing's forkserver, named by who started it (the runner, or the
    server for the heavy jobs)."""
    children: dict[int, list[int]] = {}
    for pid, parent in _parents().items():
        children.setdefault(parent, []).append(pid)
    kinds, todo = {server_pid: "server"}, [server_pid]
    while todo:
        parent = todo.pop()
        for pid in children.get(parent, []):
            cmd, above = _cmdline(pid), kinds[parent]
            if above == "runner template":
                kind = "worker"
            elif above == "heavy template":
                kind = "heavy job"
            elif "mnist_core.runner" in cmd:
                kind = "runner"
            elif "multiprocessing.forkserver" in cmd:
                kind = "runner template" if above == "runner" else "heavy template"
            elif "multiprocessing.resource_tracker" in cmd:
                kind = "resource tracker"
            else:
                kind = f"other ({cmd.split(' ')[0].rsplit('/', 1)[-1] or '?'})"
            kinds[pid] = kind
            todo.append(pid)
    return kinds


def memory(pid: int) -> dict[str, int] | None:
    """Rss, Pss and Uss (private clean + dirty) in bytes from /proc/PID/smaps_rollup; None once gone."""
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return None
    kb = {}
    for line in text.splitlines()[1:]:
        name, _, rest = line.partition(":")
        if rest.strip().endswith("kB"):
            kb[name] = int(rest.split()[0])
    return {"rss": kb.get("Rss", 0) * 1024, "pss": kb.get("Pss", 0) * 1024,
            "uss": (kb.get("Private_Clean", 0) + kb.get("Private_Dirty", 0)) * 1024}


def cuda_pss(pid: int) -> int:
    """Bytes of the process's PSS in mappings of CUDA's libraries (/proc/PID/smaps, read once)."""
    try:
        text = Path(f"/proc/{pid}/smaps").read_text()
    except OSError:
        return 0
    total, in_cuda = 0, False
    for line in text.splitlines():
        first = line.split(" ", 1)[0]
        if "-" in first and not first.endswith(":"):  # a mapping's header: start-end perms offset dev inode path
            in_cuda = any(lib in line for lib in CUDA_LIBRARIES)
        elif in_cuda and first == "Pss:":
            total += int(line.split()[1]) * 1024
    return total


class TreeSampler:
    """Once a second: every process under the server, its kind and its memory, under the phase set now."""

    def __init__(self, server_pid: int, interval: float = 1.0):
        self.server_pid, self.interval = server_pid, interval
        self.phase = "starting"
        self.samples: list[dict] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def sample(self) -> dict:
        by_kind: dict[str, dict[str, int]] = {}
        for pid, kind in process_kinds(self.server_pid).items():
            mem = memory(pid)
            if mem is None:
                continue
            row = by_kind.setdefault(kind, {"count": 0, "rss": 0, "pss": 0, "uss": 0})
            row["count"] += 1
            for key, value in mem.items():
                row[key] += value
        total = {key: sum(row[key] for row in by_kind.values()) for key in ("count", "rss", "pss", "uss")}
        return {"t": time.monotonic(), "phase": self.phase, "total": total, "kinds": by_kind}

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.samples.append(self.sample())

    def __enter__(self) -> "TreeSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def phase_summary(samples: list[dict]) -> dict:
    """Peak and steady of the tree's PSS, RSS sum and USS, total and per kind of process.

    Steady: the median over the second half of the phase's samples; for a kind, of the samples in which
    it was there (a worker between two runs, a heavy job between two requests, is not "0 MiB")."""

    def figures(rows: list[dict]) -> dict:
        steady = rows[len(rows) // 2:]
        return {f"{m}_peak_mib": round(max(r[m] for r in rows) / MIB) for m in ("pss", "rss", "uss")} | \
               {f"{m}_steady_mib": round(statistics.median(r[m] for r in steady) / MIB) for m in ("pss", "rss", "uss")}

    kinds = sorted({k for s in samples for k in s["kinds"]})
    return {
        "samples": len(samples), "seconds": round(samples[-1]["t"] - samples[0]["t"], 1),
        "total": figures([s["total"] for s in samples]),
        "kinds": {k: {"processes_max": max(s["kinds"][k]["count"] for s in samples if k in s["kinds"]),
                      "seen_in_samples": sum(k in s["kinds"] for s in samples),
                      **figures([s["kinds"][k] for s in samples if k in s["kinds"]])} for k in kinds},
    }


# --- three visitors ------------------------------------------------------------------------------------

def digit_drawing(index: int = 0) -> str:
    """A test image as the Draw canvas sends a drawing: a CANVAS_SIZE-square PNG data URL, grey on black."""
    images, _ = load_mnist("test")
    digit = Image.fromarray(np.asarray(images[index], dtype=np.uint8))
    grey = digit.resize((CANVAS_SIZE, CANVAS_SIZE), Image.Resampling.BILINEAR)
    out = io.BytesIO()
    Image.merge("RGBA", (grey, grey, grey, Image.new("L", grey.size, 255))).save(out, format="PNG")
    return CANVAS_DATA_URL_PREFIX + base64.b64encode(out.getvalue()).decode()


async def draw(tab: Visitor, drawing: str):
    """A stroke on the Draw page shown: the canvas component's value set to `drawing`, the page rerun."""
    canvas = next((w for w in tab.widgets.values() if w.key == "draw_canvas" or w.kind == "bidi_component"), None)
    if canvas is None:
        raise RuntimeError("the Draw page drew no canvas")
    return await tab.rerun(forged={canvas.id: WidgetState(id=canvas.id, json_value=json.dumps({"drawing": drawing}))})


async def browse(url: str, start: int, seconds: float, think: float, drawing: str, tsne_size: int,
                 seen: dict) -> None:
    """One visitor: Home, then the round of PAGES from `start` on, until `seconds` pass. On Draw it draws a
    digit; on its first visit to Explain it asks for the t-SNE map of `tsne_size` test images (two heavy
    jobs: the network over the sample, then the projection; cached for the server afterwards)."""
    end, visited, mapped = time.monotonic() + seconds, 0, False
    async with Visitor(url, cookies={"mnist_lab_visitor": secrets.token_urlsafe(24)}, timeout=REQUEST_TIMEOUT_S) as tab:
        while time.monotonic() < end:
            page = "" if visited == 0 else PAGES[(start + visited - 1) % len(PAGES)]
            visited += 1
            try:
                views = [await tab.open(page)]
                if page == "draw":
                    views.append(await draw(tab, drawing))
                    predicted = views[-1]  # the empty canvas's prompt gone, no error: the page predicted
                    seen["predictions"] += not (predicted.shows(EMPTY_CANVAS) or predicted.exceptions or
                                                any(kind == "ERROR" for kind, _ in predicted.alerts))
                if page == "explain" and not mapped:
                    views.append(await tab.rerun(forged={"explain_method": "t-SNE", "explain_size": [str(tsne_size)]}))
                    mapped = views[-1].shows(TSNE_SHOWN) and not any(kind == "ERROR" for kind, _ in views[-1].alerts)
                    seen["tsne_maps"] += mapped
                await tab.dwell(think)
            except (asyncio.TimeoutError, OSError) as exc:
                seen["errors"].append(f"{page or 'home'}: {type(exc).__name__} {exc}")
                return
            seen["pages"].setdefault(page or "home", []).extend(v.seconds for v in views)
            seen["errors"].extend(f"{page or 'home'}: {e.split(':')[0]}" for v in views for e in v.exceptions)
            for _, body in (alert for v in views for alert in v.alerts if alert[0] == "ERROR"):
                # A heavy job refused while another runs (MNIST_MAX_HEAVY is 1 under MNIST_DEMO) is the
                # demo's bound at work, counted apart; any other error box is an error.
                seen["busy" if "busy" in body else "errors"].append(f"{page or 'home'}: {body[:80]}")


async def crowd(url: str, visitors: int, seconds: float, think: float, drawing: str) -> dict:
    seen: dict = {"pages": {}, "errors": [], "busy": [], "predictions": 0, "tsne_maps": 0}
    sizes = explain.map_sizes("tsne")  # what this server offers t-SNE on: each visitor asks another
    await asyncio.gather(*(browse(url, i * len(PAGES) // visitors, seconds, think, drawing,
                                  sizes[-1 - i % len(sizes)], seen) for i in range(visitors)))
    return seen


# --- the run -------------------------------------------------------------------------------------------

def hold(sampler: TreeSampler, phase: str, seconds: float) -> None:
    sampler.phase = phase
    print(f"{phase}: sampling {seconds:g} s ...", flush=True)
    time.sleep(seconds)


def wait_for_runner_template(sampler: TreeSampler, timeout: float = 180) -> bool:
    """Until the warm runner's forkserver template is up (DEPLOY's default, MNIST_WARM_RUNNER on)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if "runner template" in process_kinds(sampler.server_pid).values():
            return True
        time.sleep(1)
    return False


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=180.0, help="how long the visitors browse while the run trains")
    ap.add_argument("--think", type=float, default=2.0, help="seconds a visitor stays on a page")
    ap.add_argument("--visitors", type=int, default=3)
    ap.add_argument("--idle", type=float, default=20.0, help="seconds sampled in each quiet phase")
    args = ap.parse_args()

    settings = deploy_settings()
    # The default run is the one DEPLOY.md quotes: anything else (another pace, MNIST_WARM_RUNNER set) is "custom".
    as_deploy_says = ((args.visitors, args.seconds, args.think, args.idle) == (3, 180.0, 2.0, 20.0)
                      and "MNIST_WARM_RUNNER" not in os.environ)
    os.environ.update(settings)  # form.first_run() fits the starting values to these bounds
    drawing = digit_drawing()
    with tempfile.TemporaryDirectory(prefix="mnist-deploy-memory-") as tmp, LoadMonitor() as load:
        server = StreamlitServer(Path(tmp), env=settings)
        try:
            server.start()
            env = dict(os.environ, MNIST_RUNS_DIR=str(server.runs_dir), MNIST_CHECKPOINT_DIR=str(server.ckpt_dir))
            with TreeSampler(server.pid) as sampler:
                hold(sampler, "server up, no visitor", args.idle)
                sampler.phase = "one visitor opens every page"
                cold = asyncio.run(warm_up(server.url))
                runner_warm = wait_for_runner_template(sampler)
                hold(sampler, "every page opened once, runner warm", args.idle)
                with Training(env) as training:
                    sampler.phase = "a run starting"
                    training.submit()
                    training.wait_until_running()
                    sampler.phase = f"{args.visitors} visitors and a run"
                    print(f"{sampler.phase}: browsing {args.seconds:g} s ...", flush=True)
                    seen = asyncio.run(crowd(server.url, args.visitors, args.seconds, args.think, drawing))
                    cuda: dict[str, int] = {}
                    for pid, kind in process_kinds(server.pid).items():
                        cuda[kind] = cuda.get(kind, 0) + cuda_pss(pid)
                    steps = training.steps()
        except Exception:
            print(log_tail(server.log_path, 40), file=sys.stderr)
            raise
        finally:
            server.stop()
            logged = server_errors(server.log_path)

    phases = {}
    for s in sampler.samples:
        phases.setdefault(s["phase"], []).append(s)
    summaries = {phase: phase_summary(samples) for phase, samples in phases.items()}
    loaded = summaries[f"{args.visitors} visitors and a run"]
    rows = [{"phase": p, "samples": s["samples"], "PSS peak MiB": s["total"]["pss_peak_mib"],
             "PSS steady MiB": s["total"]["pss_steady_mib"], "RSS-sum peak MiB": s["total"]["rss_peak_mib"],
             "RSS-sum steady MiB": s["total"]["rss_steady_mib"], "USS steady MiB": s["total"]["uss_steady_mib"]}
            for p, s in summaries.items()]
    print_table(rows, title="the server and every process it started (DEPLOY.md's settings)")
    print_table([{"process": k, "n": v["processes_max"], "PSS peak MiB": v["pss_peak_mib"],
                  "PSS steady MiB": v["pss_steady_mib"], "RSS peak MiB": v["rss_peak_mib"],
                  "USS steady MiB": v["uss_steady_mib"], "CUDA libs PSS MiB": round(cuda.get(k, 0) / MIB)}
                 for k, v in loaded["kinds"].items()], title=f"{args.visitors} visitors and a run, per process kind")
    pages = [t for times in seen["pages"].values() for t in times]
    top = max(sampler.samples, key=lambda s: s["total"]["pss"])  # the largest sample of any phase
    peak = {"pss_mib": round(top["total"]["pss"] / MIB), "rss_sum_mib": round(top["total"]["rss"] / MIB),
            "phase": top["phase"], "kinds_pss_mib": {k: round(v["pss"] / MIB) for k, v in top["kinds"].items()}}
    print(f"peak of any phase: PSS {peak['pss_mib']} MiB (RSS summed {peak['rss_sum_mib']} MiB), "
          f"during '{peak['phase']}': {peak['kinds_pss_mib']}")
    write_result("deploy_memory", {
        "machine": machine_info(), "settings": settings,
        "warm_runner": os.environ.get("MNIST_WARM_RUNNER", "1 (default)"), "runner_warm_before_visitors": runner_warm,
        "visitors": args.visitors, "pages": PAGES, "think_s": args.think, "seconds": args.seconds,
        "community_cloud_memory_gb": [0.69, 2.7],
        "phases": summaries, "peak_of_any_phase": peak,
        "cuda_libraries_pss_mib": {k: round(v / MIB) for k, v in sorted(cuda.items())},
        "cold_pages_s": cold, "page": summary(pages),
        "per_page": {p: summary(t) for p, t in sorted(seen["pages"].items())},
        "draw_predictions": seen["predictions"], "tsne_maps": seen["tsne_maps"],
        "heavy_busy_refusals": len(seen["busy"]), "errors": len(seen["errors"]),
        "error_samples": sorted(set(seen["errors"]))[:10], "server_log_errors": logged,
        "runs_submitted": len(training.submitted), "training_steps": steps, "load": load.summary(),
        "samples": [{"t": round(s["t"] - sampler.samples[0]["t"], 1), "phase": s["phase"],
                     "pss_mib": round(s["total"]["pss"] / MIB), "rss_sum_mib": round(s["total"]["rss"] / MIB),
                     "processes": s["total"]["count"]} for s in sampler.samples],
    }, variant="" if as_deploy_says else "custom")
    result_line(pss_peak_any_phase_mib=peak["pss_mib"], pss_peak_mib=loaded["total"]["pss_peak_mib"],
                pss_steady_mib=loaded["total"]["pss_steady_mib"], rss_sum_peak_mib=loaded["total"]["rss_peak_mib"],
                page_p95_s=summary(pages)["p95_s"], load_1min_max=load.summary()["max_1min"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
