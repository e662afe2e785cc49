"""The live app, for code that drives it: a real `streamlit run app.py` and a headless Chromium.

The browser tests (tests/e2e/conftest.py) and the benchmarks that click through the app
(benchmarks/draw_latency.py, app_training.py, app.py) all need the same two things: a Streamlit
server on a free port with its own registry and checkpoint folders, up once /_stcore/health
answers, and the system's Chromium launched through Playwright's executable_path (Playwright's own
browsers cannot be downloaded where this runs). They are here, once: see harness/live_app.py. Here too:
DEPLOY.md's suggested settings, read from the document itself, for the tests and benchmarks that play
a hosted demo (harness/deploy_settings.py).
"""

from harness.deploy_settings import deploy_settings
from harness.live_app import (CHROMIUM_ARGS, VIEWPORT, ServerError, StreamlitServer, find_chromium, free_port,
                              launch_chromium, log_tail)

__all__ = ["CHROMIUM_ARGS", "VIEWPORT", "ServerError", "StreamlitServer", "deploy_settings", "find_chromium",
           "free_port", "launch_chromium", "log_tail"]
