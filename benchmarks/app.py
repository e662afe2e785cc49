"""The dashboard: server memory with the dataset loaded, and cold / warm render time of every page.

Two measurements:

1. A real server. `streamlit run app.py` headless on a free port (harness.StreamlitServer, its
   registry in a temporary folder), driven over its websocket the way a browser
   tab drives it: connect to /_stcore/stream, ask for each page in turn (rerun_script with the
   page's hash from the navigation message) and time the request until `script_finished`. Cold =
   first visit of that page in the fresh server, warm = the second visit in the same session.
   The server's RSS (VmRSS and VmHWM from /proc/PID/status) is read after start-up and after
   every page; after the Dataset page it holds the dataset. Custom components (the Draw page's
   canvas) have no frontend here, so they render with their empty default value.
2. streamlit.testing.v1.AppTest, as the brief asks: for each page a fresh Python process runs
   AppTest.from_file("app.py"), switch_page(page) and run() twice (cold, then warm), and reports
   its own RSS (labelled: this is the AppTest process, not a server).

A page that raises is reported with its exception (per page) and the others still run.

    python -m benchmarks.app [--skip-server] [--skip-apptest] [--timeout 180]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks._common import (REPO_ROOT, LoadMonitor, machine_info, print_table, result_line, wait_for_quiet,
                                write_result)
from harness import StreamlitServer, log_tail

APP = REPO_ROOT / "app.py"
FALLBACK_PAGES = ["app_pages/home.py", "app_pages/dataset.py", "app_pages/train.py", "app_pages/inside.py",
                  "app_pages/draw.py"]


def app_pages() -> list[str]:
    """The pages app.py registers with st.Page, in its order (the brief's five if none are found)."""
    found = re.findall(r"st\.Page\(\s*[\"']([\w\-/]+\.py)[\"']", APP.read_text())
    return list(dict.fromkeys(found)) or FALLBACK_PAGES


def default_page() -> str:
    """The page st.navigation opens first (st.Page(..., default=True)), else the first one."""
    for call in re.findall(r"st\.Page\(([^)]*)\)", APP.read_text()):
        m = re.match(r"\s*[\"']([\w\-/]+\.py)[\"']", call)
        if m and re.search(r"default\s*=\s*True", call):
            return m.group(1)
    return app_pages()[0]


def rss_kib(pid: int | str = "self") -> dict[str, int]:
    """VmRSS and VmHWM (peak) in KiB from /proc/PID/status."""
    out = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key = line.split(":", 1)[0]
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(line.split()[1])
    except OSError:
        pass
    return out


# --- 1. a real server, driven over its websocket -------------------------------------------------

async def _drive(port: int, pid: int, pages: list[str], timeout: float) -> dict:
    import websockets
    from streamlit.proto.BackMsg_pb2 import BackMsg
    from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

    status_names = {v: k for k, v in ForwardMsg.ScriptFinishedStatus.items()}
    url = f"ws://127.0.0.1:{port}/_stcore/stream"
    async with websockets.connect(url, subprotocols=["streamlit"], max_size=None, open_timeout=timeout) as ws:
        nav: dict[str, str] = {}
        default: list[str] = []

        async def rerun(page_hash: str = "") -> dict:
            msg = BackMsg()
            msg.rerun_script.query_string = ""
            msg.rerun_script.page_script_hash = page_hash
            t = time.perf_counter()
            await ws.send(msg.SerializeToString())
            errors, deltas = [], 0
            while True:
                raw = await asyncio.wait_for(ws.recv(), timeout=timeout)
                fwd = ForwardMsg()
                fwd.ParseFromString(raw)
                kind = fwd.WhichOneof("type")
                if kind == "navigation":
                    for p in fwd.navigation.app_pages:
                        nav[p.url_pathname or p.page_name] = p.page_script_hash
                        if p.is_default:
                            default[:] = [p.page_script_hash]
                elif kind == "delta":
                    deltas += 1
                    el = fwd.delta.new_element
                    if fwd.delta.WhichOneof("type") == "new_element" and el.WhichOneof("type") == "exception":
                        message = el.exception.message.splitlines()[0] if el.exception.message else ""
                        errors.append(f"{el.exception.type}: {message}")
                elif kind == "script_finished":
                    status = status_names.get(fwd.script_finished, str(fwd.script_finished))
                    if status == "FINISHED_EARLY_FOR_RERUN":
                        continue  # the page asked for a rerun (st.rerun); wait for the run after it
                    return {"seconds": time.perf_counter() - t, "status": status, "deltas": deltas, "errors": errors}

        first = await rerun("")  # the default page, and the navigation message with every page's hash
        first["rss_kib"] = rss_kib(pid)
        out = {"initial": first, "pages": {}}
        for page in pages:
            slug = Path(page).stem
            # The default page is served at "/" (empty url_pathname): known by its is_default flag.
            page_hash = default[0] if default and page == default_page() else nav.get(slug)
            if page_hash is None:
                out["pages"][page] = {"error": f"not in the navigation message ({', '.join(nav)})"}
                continue
            entry = {}
            if default and page_hash == default[0]:
                entry["cold"] = {**first, "note": "the first run of the session (app.py and the default page)"}
            for label in ("cold", "warm"):
                if label in entry:
                    continue
                try:
                    entry[label] = await rerun(page_hash)
                except asyncio.TimeoutError:
                    entry[label] = {"seconds": None, "status": "timeout",
                                    "errors": [f"no script_finished in {timeout} s"]}
                entry[label]["rss_kib"] = rss_kib(pid)
            out["pages"][page] = entry
        return out


def server_benchmark(pages: list[str], timeout: float) -> dict:
    with tempfile.TemporaryDirectory(prefix="mnist-bench-") as tmp:
        server = StreamlitServer(Path(tmp), start_timeout=timeout)
        try:
            server.start()
            result = {"port": server.port, "startup_seconds": server.startup_seconds,
                      "rss_after_start_kib": rss_kib(server.pid)}
            result.update(asyncio.run(_drive(server.port, server.pid, pages, timeout)))
            result["rss_final_kib"] = rss_kib(server.pid)
        except Exception as exc:  # noqa: BLE001 - report it, with the server's log
            result = {"error": f"{type(exc).__name__}: {exc}", "server_log_tail": log_tail(server.log_path, 40)}
        finally:
            server.stop()
        return result


# --- 2. AppTest, one fresh process per page ------------------------------------------------------

_APPTEST_CHILD = r"""
import json, os, sys, time
from pathlib import Path
page, timeout, is_default = sys.argv[1], float(sys.argv[2]), sys.argv[3] == "1"
def rss():
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        k = line.split(":", 1)[0]
        if k in ("VmRSS", "VmHWM"):
            out[k] = int(line.split()[1])
    return out
res = {"page": page}
t = time.perf_counter()
from streamlit.testing.v1 import AppTest
res["import_seconds"] = time.perf_counter() - t
at = AppTest.from_file("app.py", default_timeout=timeout)
t = time.perf_counter()
try:
    at.run(timeout=timeout)          # app.py and the default page: needed before switch_page
    res["app_first_run_seconds"] = time.perf_counter() - t
    if is_default:  # the first run was this page's cold run
        res["cold"] = {"seconds": res["app_first_run_seconds"], "errors": [f"{e.value}"[:300] for e in at.exception],
                       "note": "the first run (app.py and the default page)"}
    at.switch_page(page)
    for label in (("warm",) if is_default else ("cold", "warm")):
        t = time.perf_counter()
        try:
            at.run(timeout=timeout)
            res[label] = {"seconds": time.perf_counter() - t,
                          "errors": [f"{e.value}"[:300] for e in at.exception]}
        except Exception as exc:
            res[label] = {"seconds": time.perf_counter() - t, "errors": [f"{type(exc).__name__}: {exc}"[:300]]}
except Exception as exc:
    res["error"] = f"{type(exc).__name__}: {exc}"[:500]
res["rss_kib"] = rss()
print("APPTEST_JSON " + json.dumps(res))
"""


def apptest_benchmark(pages: list[str], timeout: float) -> dict:
    out = {}
    with tempfile.TemporaryDirectory(prefix="mnist-bench-") as tmp:
        env = {**os.environ, "MNIST_RUNS_DIR": tmp, "MNIST_CHECKPOINT_DIR": str(Path(tmp) / "checkpoints")}
        for page in pages:
            t = time.perf_counter()
            try:
                is_default = "1" if page == default_page() else "0"
                proc = subprocess.run([sys.executable, "-c", _APPTEST_CHILD, page, str(timeout), is_default],
                                      cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=4 * timeout + 60)
                line = [ln for ln in proc.stdout.splitlines() if ln.startswith("APPTEST_JSON ")]
                if line:
                    out[page] = json.loads(line[-1].removeprefix("APPTEST_JSON "))
                else:
                    out[page] = {"error": f"exit {proc.returncode}: {(proc.stderr or proc.stdout)[-500:]}"}
            except subprocess.TimeoutExpired:
                out[page] = {"error": "timeout"}
            out[page]["process_seconds"] = time.perf_counter() - t
            print(f"  AppTest {page}: " + ", ".join(
                f"{k} {out[page][k]['seconds']:.2f} s" for k in ("cold", "warm") if k in out[page])
                + (f" ERROR {out[page]['error']}" if "error" in out[page] else ""), flush=True)
    return out


def mib(kib: dict, key: str = "VmRSS") -> float | str:
    return round(kib[key] / 1024, 1) if kib and key in kib else "n/a"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--skip-server", action="store_true")
    ap.add_argument("--skip-apptest", action="store_true")
    ap.add_argument("--timeout", type=float, default=180.0, help="seconds allowed per page run")
    ap.add_argument("--wait-quiet", type=float, default=0.0, metavar="S",
                    help="wait up to S seconds for the other processes to leave the cores idle first")
    args = ap.parse_args()
    pages = app_pages()
    print("pages:", ", ".join(pages))

    server, apptest = {}, {}
    quiet = wait_for_quiet(args.wait_quiet)
    with LoadMonitor() as load:
        if not args.skip_server:
            server = server_benchmark(pages, args.timeout)
            if "error" in server:
                print(f"  server: ERROR {server['error']}")
        if not args.skip_apptest:
            apptest = apptest_benchmark(pages, args.timeout)

    rows, page_errors = [], {}
    for page in pages:
        s = server.get("pages", {}).get(page, {})
        a = apptest.get(page, {})
        errs = sorted({e for src in (s, a) for k in ("cold", "warm") for e in src.get(k, {}).get("errors", [])}
                      | {x for x in (s.get("error"), a.get("error")) if x})
        if errs:
            page_errors[page] = errs
        sec = lambda d, k: round(d[k]["seconds"], 3) if k in d and d[k].get("seconds") is not None else "n/a"  # noqa
        rows.append({"page": page, "server cold s": sec(s, "cold"), "server warm s": sec(s, "warm"),
                     "server RSS MiB": mib(s.get("warm", {}).get("rss_kib", {})),
                     "AppTest cold s": sec(a, "cold"), "AppTest warm s": sec(a, "warm"),
                     "AppTest proc RSS MiB": mib(a.get("rss_kib", {})), "errors": len(errs)})
    print_table(rows, title="Page render times (cold = first visit in a fresh process, warm = second)")
    if server and "error" not in server:
        print(f"server: up in {server['startup_seconds']:.1f} s, "
              f"RSS after start {mib(server['rss_after_start_kib'])} MiB, "
              f"after every page {mib(server['rss_final_kib'])} MiB (peak {mib(server['rss_final_kib'], 'VmHWM')} MiB)")
    for page, errs in page_errors.items():
        print(f"  {page}: {' | '.join(errs)}")

    write_result("app", {"machine": machine_info(), "load": load.summary(), "wait_for_quiet": quiet, "pages": pages,
                         "server": server, "apptest": apptest, "page_errors": page_errors})
    line = {}
    if server and "error" not in server:
        line["server_rss_start_mib"] = mib(server["rss_after_start_kib"])
        line["server_rss_mib"] = mib(server["rss_final_kib"])
    for page in pages:
        s = server.get("pages", {}).get(page, {})
        if "cold" in s and s["cold"].get("seconds") is not None:
            line[f"{Path(page).stem}_cold_s"] = round(s["cold"]["seconds"], 2)
            line[f"{Path(page).stem}_warm_s"] = round(s["warm"]["seconds"], 2)
    line["page_errors"] = len(page_errors)
    line["load"] = load.summary()["mean_1min"]
    result_line(**line)


if __name__ == "__main__":
    main()
