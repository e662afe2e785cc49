"""nginx in front of the live app (deploy/nginx.conf): the app works through it, and uploads are bounded.

Streamlit keeps every file PUT to /_stcore/upload_file/<session>/<any file id> in memory until the
visitor's session ends, and takes as many as it is sent: the bare server stores 100 uploads in a
row from one visitor (the last test shows it). deploy/nginx.conf is what a host puts in front. These
tests run that very file, templated only where a host edits it (the upstream's port, the listen
address), inside a minimal nginx main config of their own (its prefix, pid, logs and temp folders in
a temporary folder, a free port), in front of a real `streamlit run app.py` (harness/live_app.py).

A visitor here is what a browser is: it loads the page and /_stcore/health (which sets Streamlit's
XSRF cookie), opens the websocket and asks for a script run, which tells it its session id; its
uploads carry the cookie and the X-Xsrftoken header, so Streamlit's XSRF protection stays on, as
DEPLOY.md says.
What reached Streamlit is read from nginx's access log ($upstream_addr), not guessed from statuses.

Skipped where nginx is not installed (`apt-get install nginx`), unless CI=true: CI installs it.
Nothing here depends on the machine's speed: the bound on a burst counts the requests nginx's rate
lets through during however long the burst took.
"""

from __future__ import annotations

import functools
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import tomllib
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from streamlit.proto.BackMsg_pb2 import BackMsg
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
from urllib3 import encode_multipart_formdata
from websockets.sync.client import connect as websocket_connect

from harness import free_port, log_tail
from mnist_core.paths import REPO_ROOT

NGINX_CONF = REPO_ROOT / "deploy" / "nginx.conf"
STREAMLIT_CONF = REPO_ROOT / ".streamlit" / "config.toml"
UPLOAD_PATH = "/_stcore/upload_file/"
WAIT_S = 60  # how long a step may take before the test gives up on it (a busy machine), never asserted


def find_nginx() -> str | None:
    """nginx on PATH, or Debian's /usr/sbin/nginx (not on a non-root user's PATH)."""
    found = shutil.which("nginx") or "/usr/sbin/nginx"
    return found if os.access(found, os.X_OK) else None


@pytest.fixture(scope="module")
def nginx_binary() -> str:
    path = find_nginx()
    if path is None:
        reason = "nginx is not installed (looked on PATH and /usr/sbin/nginx): `apt-get install nginx`"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason} (CI=true: .ci/run installs it)", pytrace=False)
        pytest.skip(reason)
    return path


# --- the shipped config: what it says -----------------------------------------------------------------

@dataclass(frozen=True)
class UploadLimits:
    body_bytes: int         # client_max_body_size in the upload location
    rate_per_s: float       # limit_req_zone's rate
    burst: int              # limit_req's burst (nodelay)
    in_flight: int          # limit_conn


def _size_bytes(value: str) -> int:
    number, unit = re.fullmatch(r"(\d+)([kKmMgG]?)", value).groups()
    return int(number) * {"": 1, "k": 1024, "m": 1024 ** 2, "g": 1024 ** 3}[unit.lower()]


def upload_limits(conf: str) -> UploadLimits:
    """The limits deploy/nginx.conf puts on the upload path, read from the file itself."""
    location = re.search(r"location\s+" + re.escape(UPLOAD_PATH) + r"\s*\{(.*?)\n    \}", conf, re.S)
    assert location, f"deploy/nginx.conf has no `location {UPLOAD_PATH}` block"
    body = location.group(1)
    zone, burst = re.search(r"^\s*limit_req\s+zone=(\S+)\s+burst=(\d+)\s+nodelay;", body, re.M).groups()
    conn_zone, in_flight = re.search(r"^\s*limit_conn\s+(\S+)\s+(\d+);", body, re.M).groups()
    number, per = re.search(r"^limit_req_zone\s+\$binary_remote_addr\s+zone=" + re.escape(zone)
                            + r":\S+\s+rate=(\d+)r/([sm]);", conf, re.M).groups()
    assert re.search(r"^limit_conn_zone\s+\$binary_remote_addr\s+zone=" + re.escape(conn_zone) + ":", conf, re.M)
    size = re.search(r"^\s*client_max_body_size\s+(\S+);", body, re.M).group(1)
    return UploadLimits(body_bytes=_size_bytes(size), rate_per_s=int(number) / (1 if per == "s" else 60),
                        burst=int(burst), in_flight=int(in_flight))


LIMITS = upload_limits(NGINX_CONF.read_text())
# The largest file the app takes: server.maxUploadSize less room for the multipart framing.
CAP_BYTES = tomllib.loads(STREAMLIT_CONF.read_text())["server"]["maxUploadSize"] * 1024 * 1024
LARGEST_FILE = CAP_BYTES - 4096


# --- nginx from the shipped config, in a folder of its own --------------------------------------------

MAIN_CONF = """\
{user}worker_processes 1;
daemon off;
pid {root}/nginx.pid;
error_log {root}/error.log info;
events {{ worker_connections 512; }}
http {{
    client_body_temp_path {root}/tmp/body;
    proxy_temp_path {root}/tmp/proxy;
    fastcgi_temp_path {root}/tmp/fastcgi;
    uwsgi_temp_path {root}/tmp/uwsgi;
    scgi_temp_path {root}/tmp/scgi;
    log_format upstream '$request_method $uri $status upstream=$upstream_addr';
    access_log {root}/access.log upstream;
    include {root}/mnist-lab.conf;
}}
"""


def templated(conf: str, upstream_port: int, port: int) -> str:
    """The shipped file with the two edits DEPLOY.md tells a host to make (each must match once)."""
    for pattern, value in ((r"server 127\.0\.0\.1:8501;", f"server 127.0.0.1:{upstream_port};"),
                           (r"listen 80;", f"listen 127.0.0.1:{port};")):
        conf, n = re.subn(pattern, value, conf)
        assert n == 1, f"deploy/nginx.conf should hold `{pattern}` once (found {n})"
    return conf


class NginxFront:
    """nginx running deploy/nginx.conf on a free port in front of Streamlit on `upstream_port`."""

    def __init__(self, binary: str, root: Path, upstream_port: int):
        self.binary, self.root = binary, Path(root)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.conf = self.root / "nginx.conf"
        self.access_log, self.error_log = self.root / "access.log", self.root / "error.log"
        (self.root / "tmp").mkdir(parents=True, exist_ok=True)
        (self.root / "mnist-lab.conf").write_text(templated(NGINX_CONF.read_text(), upstream_port, self.port))
        # As root (CI), nginx's workers would run as `nobody`, which cannot enter pytest's folders.
        user = "user root;\n" if os.geteuid() == 0 else ""
        self.conf.write_text(MAIN_CONF.format(user=user, root=self.root))
        self.proc: subprocess.Popen | None = None

    def _cmd(self, *extra: str) -> list[str]:
        return [self.binary, "-p", str(self.root), "-c", str(self.conf), "-e", str(self.error_log), *extra]

    def start(self) -> "NginxFront":
        checked = subprocess.run(self._cmd("-t"), capture_output=True, text=True)
        assert checked.returncode == 0, f"nginx -t refused deploy/nginx.conf:\n{checked.stderr}"
        self.proc = subprocess.Popen(self._cmd(), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + WAIT_S
        while True:
            assert self.proc.poll() is None, f"nginx exited:\n{log_tail(self.error_log, 30)}"
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return self
            except OSError:
                assert time.monotonic() < deadline, f"nginx did not listen:\n{log_tail(self.error_log, 30)}"
                time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)  # graceful: the master ends its worker, then itself
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=15)

    def logged(self, count: int) -> list[tuple[str, str, int, bool]]:
        """The access log's first `count` requests (waiting for nginx to write them): method, path,
        status, and whether nginx passed the request on to Streamlit."""
        deadline = time.monotonic() + WAIT_S
        while True:
            lines = self.access_log.read_text().splitlines() if self.access_log.exists() else []
            if len(lines) >= count or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        entries = []
        for line in lines[:count]:
            method, path, status, upstream = line.split(" ", 3)
            entries.append((method, path, int(status), upstream != "upstream=-"))
        return entries


@pytest.fixture(scope="module")
def app_server(live_app):
    """The live server nginx fronts (conftest's live_app: no warm runner, nothing trains)."""
    return live_app


@pytest.fixture
def front(nginx_binary, app_server, tmp_path):
    """A fresh nginx per test, so every test starts with its rate and connection counts at zero."""
    nginx = NginxFront(nginx_binary, tmp_path / "nginx", app_server.port).start()
    yield nginx
    nginx.stop()


# --- a visitor, as a browser is one -------------------------------------------------------------------

@dataclass
class Visitor:
    base_url: str
    http: requests.Session
    xsrf: str
    session_id: str

    def upload(self, size: int, chunked: bool = False) -> int | None:
        """PUT one file of `size` bytes under a new file id, the way st.file_uploader does: the status,
        or None when the connection ended with no answer."""
        body, content_type = _multipart(size)
        data = iter([body[i:i + (1 << 20)] for i in range(0, len(body), 1 << 20)]) if chunked else body
        try:
            answer = self.http.put(f"{self.base_url}{UPLOAD_PATH}{self.session_id}/{uuid.uuid4().hex}", data=data,
                                   headers={"Content-Type": content_type, "X-Xsrftoken": self.xsrf}, timeout=WAIT_S)
        except requests.ConnectionError:
            return None
        return answer.status_code


@functools.lru_cache(maxsize=4)
def _multipart(size: int) -> tuple[bytes, str]:
    return encode_multipart_formdata({"file": ("digit.png", bytes(size), "image/png")})


@contextmanager
def visitor(base_url: str):
    """Open the page and its health check (which sets the XSRF cookie), then the websocket, and ask for a
    run: Streamlit's first answer names the session. The websocket stays open (the session stays
    active) until the block ends."""
    http = requests.Session()
    http.trust_env = False  # straight to 127.0.0.1, whatever proxy the environment names
    assert http.get(base_url + "/", timeout=WAIT_S).status_code == 200
    health = http.get(base_url + "/_stcore/health", timeout=WAIT_S)  # the page asks this first: it sets the cookie
    xsrf = http.cookies.get("_streamlit_xsrf")
    assert xsrf, f"no XSRF cookie from /_stcore/health: {health.headers}"
    # max_queue=None: the client keeps reading (and answering pings) however many messages we leave unread.
    with websocket_connect(base_url.replace("http://", "ws://") + "/_stcore/stream", origin=base_url,
                           subprotocols=["streamlit", xsrf], proxy=None, open_timeout=WAIT_S,
                           max_size=None, max_queue=None) as ws:
        assert ws.subprotocol == "streamlit"
        rerun = BackMsg()
        rerun.rerun_script.query_string = ""
        ws.send(rerun.SerializeToString())
        session_id = ""
        while not session_id:
            msg = ForwardMsg()
            msg.ParseFromString(ws.recv(timeout=WAIT_S))
            if msg.WhichOneof("type") == "new_session":
                session_id = msg.new_session.initialize.session_id
        yield Visitor(base_url, http, xsrf, session_id)
    http.close()


def burst_of_uploads(who: Visitor, count: int, size: int) -> tuple[list[int | None], float]:
    """`count` uploads one after another, as fast as they go: their statuses, and how long it took."""
    started = time.monotonic()
    statuses = [who.upload(size) for _ in range(count)]
    return statuses, time.monotonic() - started


# --- the tests ----------------------------------------------------------------------------------------

def test_the_upload_body_limit_is_the_apps_upload_cap():
    assert LIMITS.body_bytes == CAP_BYTES, (
        "client_max_body_size on the upload path must be server.maxUploadSize from .streamlit/config.toml")


def test_deploy_md_states_the_limits_the_config_sets():
    deploy = (REPO_ROOT / "DEPLOY.md").read_text()
    section = deploy.split("## In front of the server: nginx", 1)[1].split("\n## ", 1)[0]
    conf = NGINX_CONF.read_text()
    rate = re.search(r"rate=(\d+r/[sm])", conf).group(1)
    for stated in (f"`burst={LIMITS.burst}`", f"`rate={rate}`", f"at most {LIMITS.in_flight} in flight",
                   f"`client_max_body_size {LIMITS.body_bytes >> 20}m`"):
        assert stated in section, f"DEPLOY.md's nginx section should say {stated}"


def test_the_page_health_and_websocket_answer_through_nginx(front):
    http = requests.Session()
    http.trust_env = False
    page = http.get(front.url + "/", timeout=WAIT_S)
    assert page.status_code == 200 and "<div id=\"root\">" in page.text
    health = http.get(front.url + "/_stcore/health", timeout=WAIT_S)
    assert (health.status_code, health.text) == (200, "ok")
    assert http.get(front.url + "/_stcore/metrics", timeout=WAIT_S).status_code == 404  # the operator's, not ours
    with visitor(front.url) as who:  # the upgrade went through, and Streamlit answered over it
        assert re.fullmatch(r"[0-9a-f-]{36}", who.session_id)
    assert ("GET", "/_stcore/stream", 101, True) in front.logged(6)


def test_an_upload_over_the_cap_is_refused_by_nginx_before_streamlit(front):
    with visitor(front.url) as who:
        assert who.upload(CAP_BYTES + 1) == 413                  # Content-Length says so: refused at once
        assert who.upload(CAP_BYTES + 1, chunked=True) == 413    # no length given: refused once past the cap
    uploads = [e for e in front.logged(5) if e[0] == "PUT"]
    assert [(status, reached) for _, _, status, reached in uploads] == [(413, False), (413, False)]


def test_a_normal_upload_passes_through_nginx(front):
    with visitor(front.url) as who:
        assert who.upload(300_000) == 204
    assert [e[2:] for e in front.logged(4) if e[0] == "PUT"] == [(204, True)]


def test_a_burst_of_uploads_from_one_address_is_cut_at_the_configured_burst(front):
    with visitor(front.url) as who:
        statuses, seconds = burst_of_uploads(who, 100, LARGEST_FILE)
    uploads = [e for e in front.logged(103) if e[0] == "PUT"]
    assert len(uploads) == 100
    stored = sum(1 for _, _, status, reached in uploads if reached and status == 204)
    # nginx lets the first request and `burst` more through at once, then `rate` more as time passes.
    bound = 1 + LIMITS.burst + math.ceil(seconds * LIMITS.rate_per_s)
    assert stored <= bound, f"{stored} of 100 uploads reached Streamlit in {seconds:.1f} s (bound {bound})"
    assert stored == statuses.count(204) >= 1
    assert all(status == 429 for _, _, status, reached in uploads if not reached)
    assert not any(reached for _, _, status, reached in uploads if status != 204)


def test_uploads_in_flight_from_one_address_are_capped(front):
    with visitor(front.url) as who:
        held = [_upload_held_open(front, who) for _ in range(LIMITS.in_flight)]
        try:
            assert who.upload(300_000) == 429
        finally:
            for s in held:
                s.close()
    assert re.search(r'limiting connections by zone "mnist_lab_upload_conn"', front.error_log.read_text())


def _upload_held_open(front: NginxFront, who: Visitor) -> socket.socket:
    """An upload whose body is still coming: nginx has counted it (it said 100 Continue, which it does
    only once the request passed its limits) and waits for the rest."""
    s = socket.create_connection(("127.0.0.1", front.port), timeout=WAIT_S)
    s.sendall((f"PUT {UPLOAD_PATH}{who.session_id}/{uuid.uuid4().hex} HTTP/1.1\r\n"
               f"Host: 127.0.0.1:{front.port}\r\nContent-Type: application/octet-stream\r\n"
               f"Content-Length: 100000\r\nExpect: 100-continue\r\n"
               f"Cookie: _streamlit_xsrf={who.xsrf}\r\nX-Xsrftoken: {who.xsrf}\r\n\r\n").encode())
    answer = s.recv(4096)
    assert answer.startswith(b"HTTP/1.1 100 Continue"), answer[:200]
    s.sendall(bytes(1000))
    return s


def test_the_bare_server_stores_every_upload_it_is_sent(app_server):
    """Why nginx is there: Streamlit alone takes 100 uploads in a row from one visitor (1 MB each here,
    to spare the machine; it took 100 of 10 MB just as well)."""
    with visitor(app_server.url) as who:
        statuses, _ = burst_of_uploads(who, 100, 1_000_000)
    assert statuses == [204] * 100
