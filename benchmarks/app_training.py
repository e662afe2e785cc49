"""Training from the dashboard against training from the CLI: the same run, alternating.

App  a real server (`streamlit run app.py`, its own registry and checkpoint folders) and a tab in
     headless Chromium on the Train page: the preset is picked in the form and "Start training"
     pressed. The worker is the process the page launches (`python -m mnist_core train --run-id ID`).
     Two ways to wait for it:
       watching  the tab stays on the Train page, its live panel and charts refreshing every second
                 as a user sees them (the server and the browser share the machine with the worker,
                 as they would on a laptop running the dashboard);
       away      right after the start the tab goes to Home (no live panel), so the app's own
                 training path is measured without the page's drawing.
CLI  `python -m mnist_core train --preset NAME --quiet` in a subprocess, the same folders.

Both are timed from the registry: train()'s own wall time (the checkpoint's `train_seconds`: data
already loaded, the loop and the final test pass) and the worker's whole time (started ->
finished: imports, data loading, snapshots and the checkpoint too). Each round runs the three
sides, in a rotating order. The CPU the server and the browser use while a run lasts is read from
/proc. Goal (issue 5): the app's training at most 10% slower than the CLI's.

    python -m benchmarks.app_training [--preset fast] [--rounds 3] [--threads N] [--wait-quiet S]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks._common import (REPO_ROOT, LoadMonitor, machine_info, print_table, result_line, wait_for_quiet,
                                write_result)
from harness import VIEWPORT, StreamlitServer, find_chromium, launch_chromium
from mnist_core import registry
from mnist_core.checkpoints import read_meta

RUN_TIMEOUT_S = 600


def timings(run_id: str, root: Path) -> dict:
    run = registry.get_run(run_id, root=root)
    if run.status != "completed":
        raise RuntimeError(f"run {run_id} ended {run.status}: {run.error}")
    meta = read_meta(run.checkpoint)
    return {"run_id": run_id, "train_seconds": meta["metrics"]["train_seconds"], "worker_seconds": run.duration,
            "test_accuracy": run.test_accuracy}


class AppSide:
    """The server and one browser tab on the Train page, kept across rounds (as a user would)."""

    def __init__(self, root: Path, preset: str, threads: int):
        from playwright.sync_api import sync_playwright

        if find_chromium() is None:
            raise SystemExit("no Chromium found (apt-get install chromium): this benchmark drives the real page")
        self.root = root
        self.server = StreamlitServer(root, start_timeout=120).start()
        self.pw = sync_playwright().start()
        self.browser = launch_chromium(self.pw)
        self.page = self.browser.new_page(viewport=VIEWPORT)
        self.page.set_default_timeout(60_000)
        self.page.goto(f"{self.server.url}/train")
        self.page.get_by_role("heading", name="Train", exact=True).wait_for()
        self._select("Preset", preset)
        if threads:
            box = self._widget("stNumberInput", "threads").locator("input")
            box.fill(str(threads))
            box.press("Enter")
        self.page.wait_for_timeout(500)

    def _widget(self, testid: str, label: str):
        return self.page.get_by_test_id(testid).filter(
            has=self.page.get_by_test_id("stWidgetLabel").get_by_text(label, exact=True))

    def _select(self, label: str, option: str) -> None:
        self._widget("stSelectbox", label).locator("input").click()
        self.page.get_by_role("option", name=option, exact=True).click()

    def _nav(self, label: str, title: str) -> None:
        self.page.get_by_test_id("stSidebarNavLink").filter(has=self.page.get_by_text(label, exact=True)).click()
        self.page.get_by_role("heading", name=title, exact=True).wait_for()

    def run(self, watch: bool) -> dict:
        before = {r.id for r in registry.list_runs(root=self.root / "runs")}
        ui_cpu = ui_cpu_seconds(self.server.pid)
        self.page.get_by_role("button", name="Start training", exact=True).click()
        deadline = time.monotonic() + 60
        while not (new := [r.id for r in registry.list_runs(root=self.root / "runs") if r.id not in before]):
            if time.monotonic() > deadline:
                raise TimeoutError("pressing Start training queued no run")
            self.page.wait_for_timeout(100)
        run_id = new[0]
        if not watch:
            self._nav("Home", "MNIST Lab")
        # wait on the registry, keeping the page alive (and, watching, polling)
        deadline = time.monotonic() + RUN_TIMEOUT_S
        while registry.get_run(run_id, root=self.root / "runs").is_live:
            if time.monotonic() > deadline:
                raise TimeoutError(f"run {run_id} did not finish within {RUN_TIMEOUT_S} s")
            self.page.wait_for_timeout(200)
        result = timings(run_id, self.root / "runs")
        used = ui_cpu_seconds(self.server.pid)
        result.update({f"{k}_cpu_seconds": used[k] - ui_cpu[k] for k in used})
        if not watch:
            self._nav("Train", "Train")
        self.page.get_by_role("heading", name=f"Run {run_id} · lenet5 · completed").wait_for()
        return result

    def close(self) -> None:
        self.browser.close()
        self.pw.stop()
        self.server.stop()


def ui_cpu_seconds(server_pid: int) -> dict:
    """CPU seconds (user + system) used so far by the Streamlit server and by every Chromium process."""
    tick = os.sysconf("SC_CLK_TCK")
    used = {"server": 0.0, "browser": 0.0}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        side = "server" if int(pid) == server_pid else "browser" if b"chrom" in cmdline.split(b"\0")[0] else None
        if side:
            used[side] += (int(fields[11]) + int(fields[12])) / tick
    return used


def cli_run(root: Path, preset: str, threads: int) -> dict:
    env = dict(os.environ, MNIST_RUNS_DIR=str(root / "runs"), MNIST_CHECKPOINT_DIR=str(root / "checkpoints"))
    before = {r.id for r in registry.list_runs(root=root / "runs")}
    cmd = [sys.executable, "-m", "mnist_core", "train", "--preset", preset, "--quiet"]
    if threads:
        cmd += ["--threads", str(threads)]
    subprocess.run(cmd, cwd=REPO_ROOT, env=env, check=True, stdout=subprocess.DEVNULL, timeout=RUN_TIMEOUT_S)
    (run_id,) = [r.id for r in registry.list_runs(root=root / "runs") if r.id not in before]
    return timings(run_id, root / "runs")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="fast")
    ap.add_argument("--rounds", type=int, default=3, help="runs on each side")
    ap.add_argument("--threads", type=int, default=0, help="the run's threads (0 = the preset's: one per core)")
    ap.add_argument("--wait-quiet", type=float, default=0.0, metavar="S",
                    help="before each run, wait up to S seconds for other processes to leave the cores idle")
    args = ap.parse_args()

    root = Path(tempfile.mkdtemp(prefix="mnist-app-training-"))
    (root / "runs").mkdir()
    (root / "checkpoints").mkdir()
    sides: dict[str, list] = {"app, watching": [], "app, away": [], "cli": []}
    app = AppSide(root, args.preset, args.threads)
    try:
        with LoadMonitor() as load:
            for k in range(args.rounds):
                names = list(sides)
                for side in names[k % 3:] + names[:k % 3]:
                    quiet = wait_for_quiet(args.wait_quiet)
                    if side == "cli":
                        result = cli_run(root, args.preset, args.threads)
                    else:
                        result = app.run(watch=side == "app, watching")
                    result["quiet"] = quiet
                    sides[side].append(result)
                    ui = (f", server {result['server_cpu_seconds']:.2f} CPU s, browser "
                          f"{result['browser_cpu_seconds']:.2f} CPU s" if "server_cpu_seconds" in result else "")
                    print(f"  round {k + 1} {side}: train {result['train_seconds']:.2f} s, worker "
                          f"{result['worker_seconds']:.2f} s, test {result['test_accuracy']:.2%}{ui}, "
                          f"load {os.getloadavg()[0]:.2f}", flush=True)
    finally:
        app.close()
        shutil.rmtree(root, ignore_errors=True)

    med = {side: {key: statistics.median(r[key] for r in rs) for key in ("train_seconds", "worker_seconds")}
           for side, rs in sides.items()}
    for side in ("app, watching", "app, away"):
        for key in ("server_cpu_seconds", "browser_cpu_seconds"):
            med[side][key] = statistics.median(r[key] for r in sides[side])
    cli = med["cli"]["train_seconds"]
    ratios = {side: med[side]["train_seconds"] / cli for side in ("app, watching", "app, away")}
    print_table([{"side": side, "train() s (median)": med[side]["train_seconds"],
                  "x CLI": round(med[side]["train_seconds"] / cli, 3),
                  "worker s (median)": med[side]["worker_seconds"],
                  "server CPU s": med[side].get("server_cpu_seconds", ""),
                  "browser CPU s": med[side].get("browser_cpu_seconds", ""),
                  "runs": ", ".join(f"{r['train_seconds']:.2f}" for r in sides[side])} for side in sides],
                title=f"{args.preset}: started from the Train page (Chromium) vs the CLI, {args.rounds} runs each")
    for side, ratio in ratios.items():
        print(f"{side} / CLI: {ratio:.3f}; goal <= 1.10: {'met' if ratio <= 1.10 else 'MISSED'}")
    write_result("app_training", {"machine": machine_info(), "load": load.summary(), "preset": args.preset,
                                  "threads": args.threads, "rounds": args.rounds, "runs": sides, "medians": med,
                                  "ratios": ratios, "goal": "app <= 1.10 x CLI"},
                 variant=f"threads{args.threads}" if args.threads else "")
    result_line(watching=round(ratios["app, watching"], 3), away=round(ratios["app, away"], 3),
                cli_s=round(cli, 2), watching_s=round(med["app, watching"]["train_seconds"], 2),
                away_s=round(med["app, away"]["train_seconds"], 2), load=load.summary()["mean_1min"])


if __name__ == "__main__":
    main()
