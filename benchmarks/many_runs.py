"""Pages with many runs in the registry: Draw's "Compare models" per stroke, the pages that list runs, the queries.

For each size N, a fresh registry in a temporary folder gets N completed runs: rows inserted in one
transaction through registry.connect() (ten metric rows each), two in three with their own checkpoint
file (links to the committed cnn-small, as a local run leaves one), twenty with their checkpoint only
in the registry (the real bytes, as a run on another host leaves it). Then, in this process:

  compare   Draw with "Compare models" on, one stroke: a new canvas value and the page's rerun
            (AppTest reruns the whole page, where a browser reruns only the drawing's fragment, so
            this is an upper bound), median of --strokes, and the rerun's size as sent to a browser:
            with the default choice (the committed checkpoints), then with the most it allows chosen.
  pages     Home, Train, Evaluate (its Compare runs tab) and Draw: one rerun each, median of 3.
  queries   registry.list_runs() of everything (what each list page did, several times a rerun, before),
            a page of 25 with its count, registry.recent_runs(), artifacts.stored_models(limit=30).

    python -m benchmarks.many_runs [--sizes 1000 10000] [--strokes 5]
    python -m benchmarks.many_runs --app-rev 4a016ba~1 --sizes 1000 --variant before   # the pages before

--app-rev runs app.py and app_pages/ as they were at a git revision (copied to a temporary folder and
put first on the import path, so this process never imports today's pages); mnist_core is today's.
--compare-up-to N skips the Draw comparison above N runs (the old page compared every checkpoint:
minutes a stroke at 10,000).
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from benchmarks._common import LoadMonitor, REPO_ROOT, machine_info, print_table, result_line, write_result

CONFIG = {"model": "cnn-small", "epochs": 1, "batch_size": 256, "train_size": 1000, "val_size": 500, "lr": 0.003,
          "optimizer": "adamw", "schedule": "onecycle", "threads": 1, "device": "cpu"}
IN_REGISTRY = 20  # runs whose checkpoint only the registry holds


def fill(n: int, checkpoints: Path) -> None:
    """N completed runs in the registry MNIST_RUNS_DIR names (see the module's docstring)."""
    from mnist_core import artifacts, registry
    from mnist_core.checkpoints import default_checkpoint, sidecar_path

    source = default_checkpoint("cnn-small")
    weights, sidecar = source.read_bytes(), sidecar_path(source).read_bytes()
    checkpoints.mkdir(parents=True, exist_ok=True)
    same_disk = os.stat(checkpoints).st_dev == os.stat(source).st_dev
    start = time.time() - n * 60  # one a minute, the newest now
    rows, metrics, stored = [], [], []
    for i in range(n):
        t = start + i * 60
        run_id = time.strftime("%Y%m%d-%H%M%S", time.localtime(t)) + f"-{i:06x}"
        path = checkpoints / f"cnn-small-{run_id}.safetensors"
        if i % 3 and i < n - IN_REGISTRY:
            for src, dst in ((source, path), (sidecar_path(source), sidecar_path(path))):
                (os.link if same_disk else os.symlink)(src, dst)
        elif i >= n - IN_REGISTRY:
            stored.append(run_id)
            path = Path("/another/host") / path.name
        rows.append(dict(id=run_id, created_at=t, started_at=t + 1, finished_at=t + 30, status="completed",
                         config=json.dumps(CONFIG), checkpoint=str(path), best_val_accuracy=0.97,
                         test_accuracy=0.97 + (i % 100) / 1e4, test_loss=0.1, steps=4, total_steps=4,
                         cancel_requested=0))
        metrics += [dict(run_id=run_id, step=s, epoch=s / 4, split="train" if s % 5 else "val", loss=1 / (s + 1),
                         accuracy=0.9, images_per_s=5000.0, time=t + s) for s in range(10)]
    with registry.connect() as conn:
        conn.execute(registry.RUNS.insert(), rows)
        conn.execute(registry.METRICS.insert(), metrics)
    for run_id in stored:  # a checkpoint written elsewhere: the worker copied it into the registry
        registry.put_artifact(run_id, artifacts.WEIGHTS, weights)
        registry.put_artifact(run_id, artifacts.SIDECAR, json.dumps({**json.loads(sidecar), "run_id": run_id}).encode())


def canvas_value(k: int) -> dict:
    """What the Draw canvas sends after a stroke: a vertical bar (a 1), a little further right each time."""
    img = np.zeros((280, 280, 4), np.uint8)
    img[..., 3] = 255
    x = 120 + 4 * (k % 8)
    img[40:240, x:x + 20, :3] = 255
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return {"drawing": "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()}


def app_tree(rev: str | None, tmp: Path) -> Path:
    """app.py's folder: the repository, or app.py, app_pages/ and .streamlit/ as at git revision `rev`,
    put first on the import path (before anything imports app_pages)."""
    if rev is None:
        return REPO_ROOT
    root = tmp / "app"
    root.mkdir()
    archive = subprocess.run(["git", "archive", rev, "app.py", "app_pages", ".streamlit"], cwd=REPO_ROOT,
                             check=True, capture_output=True).stdout
    tarfile.open(fileobj=io.BytesIO(archive)).extractall(root, filter="data")
    sys.path.insert(0, str(root))
    return root


def open_page(root: Path, page: str, timeout: float):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(root / "app.py"), default_timeout=timeout)
    at.run()
    at.switch_page(page)
    at.run()
    return at


def sent_bytes(at) -> int:
    """The size of what the rerun drew, as the protobuf messages a browser would be sent."""
    return sum(len(node.proto.SerializeToString()) for node in _elements(at._tree) if getattr(node, "proto", None))


def _elements(node):
    yield node
    for child in getattr(node, "children", {}).values():
        yield from _elements(child)


def time_strokes(at, strokes: int) -> dict:
    times = []
    for k in range(1, strokes + 1):
        at.session_state["draw_canvas"] = canvas_value(k)
        t0 = time.perf_counter()
        at.run()
        times.append(time.perf_counter() - t0)
        assert not at.exception, [e.value for e in at.exception]
    return {"stroke_s": statistics.median(times), "strokes": len(times), "compared": len(at.metric) - 1,
            "sent_kb": round(sent_bytes(at) / 1024, 1)}


def time_compare(root: Path, strokes: int, timeout: float) -> dict:
    """Strokes with Compare models on: as it opens, then (where the page lets the visitor choose) with
    as many models chosen as it allows."""
    at = open_page(root, "app_pages/draw.py", timeout)
    at.session_state["draw_canvas"] = canvas_value(0)
    at.run()
    at.toggle(key="draw_compare").set_value(True).run()  # the first comparison loads the models
    assert not at.exception, [e.value for e in at.exception]
    result = {"compare_" + k: v for k, v in time_strokes(at, strokes).items()}
    pick = next((m for m in at.multiselect if m.key == "draw_compare_pick"), None)
    if pick is not None:
        most = pick.proto.max_selections or len(pick.options)
        pick.set_value([o + ".safetensors" for o in pick.options[-most:]]).run()
        result.update({"compare_most_" + k: v for k, v in time_strokes(at, strokes).items()})
    return result


def time_page(root: Path, page: str, timeout: float) -> float:
    at = open_page(root, page, timeout)
    if page == "app_pages/evaluate.py":
        at.session_state["eval_tab"] = "Compare runs"
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        at.run()
        times.append(time.perf_counter() - t0)
    assert not at.exception, [e.value for e in at.exception]
    return statistics.median(times)


def time_query(fn, repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000], help="runs in the registry")
    ap.add_argument("--strokes", type=int, default=5, help="strokes timed with Compare models on")
    ap.add_argument("--app-rev", help="time the pages as they were at this git revision (e.g. 4a016ba~1)")
    ap.add_argument("--compare-up-to", type=int, default=0, metavar="N",
                    help="skip Draw's comparison above N runs (0: never skip)")
    ap.add_argument("--variant", default="", help="results go to many_runs.VARIANT.json")
    args = ap.parse_args()

    from mnist_core import artifacts, registry

    results = []
    with LoadMonitor() as load, tempfile.TemporaryDirectory(prefix="mnist-many-runs-app-") as app_tmp:
        root = app_tree(args.app_rev, Path(app_tmp))
        for n in args.sizes:
            with tempfile.TemporaryDirectory(prefix="mnist-many-runs-") as tmp_name:
                tmp = Path(tmp_name)
                os.environ["MNIST_RUNS_DIR"] = str(tmp / "runs")
                os.environ["MNIST_CHECKPOINT_DIR"] = str(tmp / "checkpoints")
                os.environ["MNIST_WARM_RUNNER"] = "0"  # the app starts no runner: nothing trains here
                t0 = time.perf_counter()
                fill(n, tmp / "checkpoints")
                row = {"runs": n, "fill_s": round(time.perf_counter() - t0, 1), "load_1min": os.getloadavg()[0]}
                print(f"{n} runs in the registry ({row['fill_s']} s)", flush=True)
                row["list_all_ms"] = 1000 * time_query(lambda: registry.list_runs())
                row["page_of_25_ms"] = 1000 * time_query(
                    lambda: (registry.list_runs(newest_first=True, limit=25), registry.count_runs()))
                row["recent_ms"] = 1000 * time_query(lambda: registry.recent_runs())
                row["stored_models_30_ms"] = 1000 * time_query(lambda: artifacts.stored_models(limit=30))
                for page in ("home", "train", "evaluate", "draw"):
                    row[f"{page}_page_s"] = time_page(root, f"app_pages/{page}.py", 1800)
                    print(f"  {page}: {row[f'{page}_page_s']:.2f} s a rerun", flush=True)
                if not args.compare_up_to or n <= args.compare_up_to:
                    compare = time_compare(root, args.strokes, 1800)
                    row.update(compare)
                    print(f"  compare: {compare}", flush=True)
                results.append(row)
    print_table([{k: (round(v, 3) if isinstance(v, float) else v) for k, v in r.items()} for r in results],
                title="many runs in the registry")
    write_result("many_runs", {"machine": machine_info(), "load": load.summary(), "results": results},
                 variant=args.variant)
    last = results[-1]
    result_line(runs=last["runs"], compare_stroke_s=last.get("compare_stroke_s", float("nan")),
                compared=last.get("compare_compared", 0), train_page_s=last["train_page_s"],
                load_mean=load.summary()["mean_1min"])


if __name__ == "__main__":
    main()
