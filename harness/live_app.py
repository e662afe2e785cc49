"""A real Streamlit server running app.py, and the system's Chromium, for tests and benchmarks.

    server = StreamlitServer(tmp).start()      # free port, tmp/runs, tmp/checkpoints, tmp/streamlit.log
    with sync_playwright() as pw:
        browser = launch_chromium(pw)          # /usr/bin/chromium (or $E2E_CHROMIUM), headless
        page = browser.new_page(viewport=VIEWPORT)
        page.goto(server.url + "/draw")
    server.stop()                              # its training workers first, then the server

The server runs in its own process group (start_new_session) so stop() ends it with everything it
started; its registry and checkpoint folders are its own (the committed default checkpoints are still
found), MNIST_DATA_DIR is left alone so it uses the real data. start() waits, without a fixed sleep,
until /_stcore/health answers and raises ServerError with the log's tail if the server exits or does
not answer in time. Nothing here is pytest- or benchmark-specific: the e2e conftest turns ServerError
into a test failure, a benchmark lets it end the run.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from mnist_core.paths import REPO_ROOT

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--no-first-run", "--disable-sync"]
VIEWPORT = {"width": 1400, "height": 1000}
START_TIMEOUT_S = 90  # streamlit imports torch & co.: slow on a busy machine


class ServerError(RuntimeError):
    """The Streamlit server exited or did not come up; the message ends with its log's tail."""


def find_chromium() -> str | None:
    """The Chromium to drive: $E2E_CHROMIUM, `chromium` on PATH, /usr/bin/chromium, `chromium-browser`; or None."""
    for candidate in (os.environ.get("E2E_CHROMIUM"), shutil.which("chromium"), "/usr/bin/chromium",
                      shutil.which("chromium-browser")):
        if candidate and os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return None


def launch_chromium(playwright, executable: str | None = None, headless: bool = True):
    """A Playwright Browser on the system's Chromium (Playwright's own browsers are not installed)."""
    executable = executable or find_chromium()
    if executable is None:
        raise FileNotFoundError("no Chromium found (looked for $E2E_CHROMIUM, `chromium` on PATH and "
                                "/usr/bin/chromium): install it, e.g. `apt-get install chromium`")
    return playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS, headless=headless)


def free_port() -> int:
    """A TCP port nobody listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def log_tail(path: Path | None, lines: int = 150) -> str:
    if path is None or not Path(path).exists():
        return "(no log)"
    text = Path(path).read_text(errors="replace").splitlines()
    return "\n".join(text[-lines:]) or "(empty)"


class StreamlitServer:
    """`streamlit run app.py` headless on a free port, its own registry and checkpoint folders, its log in a file.

    root      where runs/, checkpoints/ and streamlit.log go (created)
    app_dir   the folder holding app.py (default the repository; a benchmark may run a modified copy,
              mnist_core is then still imported from the repository)
    env       extra environment variables for the server
    """

    def __init__(self, root: Path, app_dir: Path = REPO_ROOT, env: dict | None = None,
                 start_timeout: float = START_TIMEOUT_S):
        self.root = Path(root)
        self.app_dir = Path(app_dir)
        self.runs_dir, self.ckpt_dir = self.root / "runs", self.root / "checkpoints"
        self.log_path = self.root / "streamlit.log"
        self.extra_env = dict(env or {})
        self.start_timeout = start_timeout
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self.startup_seconds: float | None = None  # from the process start to the first healthy answer
        self._log = None

    @property
    def pid(self) -> int | None:
        return None if self.proc is None else self.proc.pid

    def start(self) -> "StreamlitServer":
        self.runs_dir.mkdir(parents=True, exist_ok=True)
        self.ckpt_dir.mkdir(parents=True, exist_ok=True)
        python_path = os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p)
        env = dict(os.environ, MNIST_RUNS_DIR=str(self.runs_dir), MNIST_CHECKPOINT_DIR=str(self.ckpt_dir),
                   PYTHONUNBUFFERED="1", PYTHONPATH=python_path, **self.extra_env)
        cmd = [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(self.port),
               "--server.address", "127.0.0.1", "--server.headless", "true", "--server.fileWatcherType", "none",
               "--browser.gatherUsageStats", "false"]
        self._log = open(self.log_path, "wb")
        started = time.perf_counter()
        self.proc = subprocess.Popen(cmd, cwd=self.app_dir, env=env, stdout=self._log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + self.start_timeout
        while True:
            if self.proc.poll() is not None:
                self.stop()
                raise ServerError(f"streamlit exited with {self.proc.returncode} before it was up:\n"
                                  f"{log_tail(self.log_path)}")
            try:
                with urllib.request.urlopen(f"{self.url}/_stcore/health", timeout=5) as resp:
                    if resp.status == 200:
                        self.startup_seconds = time.perf_counter() - started
                        return self
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise ServerError(f"streamlit did not answer /_stcore/health within {self.start_timeout:.0f} s:\n"
                                  f"{log_tail(self.log_path)}")
            time.sleep(0.25)

    def stop(self) -> None:
        """End the training workers and runners it launched, then the server and its process group."""
        stop_workers(self.runs_dir)
        stop_runners(self.runs_dir)
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=15)
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> "StreamlitServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def stop_workers(runs_dir: Path) -> None:
    """Cancel, then end, any training worker still live in this registry (workers run in their own sessions)."""
    try:
        from mnist_core import registry
        live = [r for r in registry.list_runs(root=runs_dir) if r.is_live]
    except Exception:  # noqa: BLE001 - best effort at teardown
        return
    for r in live:
        try:
            registry.request_cancel(r.id, root=runs_dir)
        except Exception:  # noqa: BLE001
            pass
    deadline = time.monotonic() + 15
    for r in live:
        if not r.pid:
            continue
        try:
            cmdline = Path(f"/proc/{r.pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue  # already gone
        if "mnist_core" not in cmdline or r.id not in cmdline:
            continue  # the pid was reused by something that is not ours
        while time.monotonic() < deadline and Path(f"/proc/{r.pid}").exists():
            time.sleep(0.2)
        for sig in (signal.SIGTERM, signal.SIGKILL):
            if not Path(f"/proc/{r.pid}").exists():
                break
            try:
                os.kill(r.pid, sig)
            except ProcessLookupError:
                break
            time.sleep(2)


def stop_runners(runs_dir: Path) -> None:
    """End the local runners serving this registry (mnist_core.runner: each in its own session, the
    workers it forks in its process group), which would otherwise wait for work long after the server.
    Only processes whose MNIST_RUNS_DIR is this folder are touched."""
    wanted = str(Path(runs_dir).resolve())
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue  # gone, or not ours to read
        if b"mnist_core.runner" not in cmdline or f"MNIST_RUNS_DIR={wanted}".encode() not in environ:
            continue
        try:
            os.killpg(os.getpgid(int(pid)), signal.SIGTERM)
        except (ProcessLookupError, PermissionError):
            pass
