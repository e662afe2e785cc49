"""Safe to host publicly: the training queue and its caps, owners, demo bounds, faults, uploads, and
several visitors at once while a training runs."""

from __future__ import annotations

import io
import json
import os
import signal
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from mnist_core import executors, limits, registry, runner, worker
from mnist_core.checkpoints import (list_checkpoints, load_checkpoint, load_uploaded_checkpoint,
                                    save_checkpoint)
from mnist_core.errors import CheckpointError, ConfigError, ImageError, RunError
from mnist_core.models import create_model
from mnist_core.predict import predict_proba
from mnist_core.preprocess import canvas_to_mnist, load_image
from mnist_core.training import TrainConfig, admit


@pytest.fixture
def launched(isolated_dirs):
    """Ends the runners (and the workers they fork) that a test's submits start on this host."""
    from harness.live_app import stop_runners

    yield
    stop_runners(isolated_dirs["runs"])


# --- the queue ---------------------------------------------------------------------------------------

def test_runs_beyond_the_cap_wait_in_line_and_start_by_themselves(mnist, tiny_config, wait_for, launched, monkeypatch):
    monkeypatch.setenv("MNIST_MAX_CONCURRENT", "1")
    first = executors.for_host().submit(tiny_config(), owner="alice")
    second = executors.for_host().submit(tiny_config(), owner="bob")
    assert registry.get_run(second).status == "queued"
    assert second in registry.queue_positions(registry.list_runs())  # in line behind the first
    # The first worker, as it finishes, lets the second start: nobody has to poll.
    wait_for(lambda: registry.get_run(second).status == "completed", 180, what="the queued run to complete")
    assert registry.get_run(first).status == "completed"
    assert registry.get_run(second).started_at >= registry.get_run(first).finished_at - 1


def test_claiming_never_exceeds_the_cap_even_from_many_threads(tiny_config, monkeypatch):
    monkeypatch.setenv("MNIST_MAX_CONCURRENT", "2")
    ids = [registry.create_run(tiny_config()) for _ in range(6)]
    claimed: list[str] = []

    def runner():  # claims as a runner does, for a live pid: this test process
        while (run_id := registry.claim_next(os.getpid())) is not None:
            claimed.append(run_id)

    threads = [threading.Thread(target=runner) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(claimed) == sorted(ids[:2])  # the two oldest, once each


class WorkersThatCannotStart:
    """A runner's process context whose worker processes fail to start with `error`."""

    def __init__(self, error: Exception):
        self.error = error

    def Process(self, **kwargs):  # multiprocessing's name
        def start():
            raise self.error
        return SimpleNamespace(start=start)


def test_a_failed_launch_fails_its_run_not_the_runner(tiny_config):
    run_id = registry.create_run(tiny_config())
    assert registry.claim_next(os.getpid()) == run_id
    runner.run_one(WorkersThatCannotStart(OSError("no such interpreter")), run_id, None)
    run = registry.get_run(run_id)
    assert run.status == "failed" and "could not be started" in run.error


def test_a_launch_that_fails_on_a_file_does_not_show_its_server_path(tiny_config):
    run_id = registry.create_run(tiny_config())
    assert registry.claim_next(os.getpid()) == run_id
    unwritable_log = PermissionError(13, "Permission denied", f"/srv/lab/runs/{run_id}.log")
    runner.run_one(WorkersThatCannotStart(unwritable_log), run_id, None)
    run = registry.get_run(run_id)
    assert run.status == "failed" and run.error == "the worker could not be started: Permission denied"


def test_a_visitor_may_queue_only_so_many_runs(tiny_config, monkeypatch):
    monkeypatch.setenv("MNIST_MAX_QUEUED_PER_OWNER", "2")
    registry.create_run(tiny_config(), owner="alice")
    registry.create_run(tiny_config(), owner="alice")
    with pytest.raises(RunError, match="already have 2 run"):
        registry.create_run(tiny_config(), owner="alice")
    registry.create_run(tiny_config(), owner="bob")  # others are not affected
    assert len(registry.list_runs()) == 3


def test_the_global_queue_is_capped_for_all_visitors_together(tiny_config, monkeypatch):
    monkeypatch.setenv("MNIST_MAX_QUEUED", "3")
    for visitor in ("alice", "bob", "carol"):
        registry.create_run(tiny_config(), owner=visitor)
    with pytest.raises(RunError, match=r"the training queue is full \(3 runs") as excinfo:
        registry.create_run(tiny_config(), owner="dave")
    assert "\n" not in str(excinfo.value)
    operators = registry.create_run(tiny_config())  # the operator's CLI is never turned away, but counts
    registry.request_cancel(registry.list_runs()[0].id, by="alice")
    with pytest.raises(RunError, match="the training queue is full"):
        registry.create_run(tiny_config(), owner="dave")
    registry.request_cancel(operators)  # now a place is free
    registry.create_run(tiny_config(), owner="dave")
    assert len([r for r in registry.list_runs() if r.is_live]) == 3


def test_only_the_owner_can_cancel_or_delete_a_run(tiny_config):
    run_id = registry.create_run(tiny_config(), owner="alice")
    with pytest.raises(RunError, match="this run was started by someone else"):
        registry.request_cancel(run_id, by="mallory")
    assert registry.get_run(run_id).status == "queued"
    registry.request_cancel(run_id, by="alice")
    assert registry.get_run(run_id).status == "cancelled"
    with pytest.raises(RunError, match="this run was started by someone else"):
        registry.delete_run(run_id, by="mallory")
    registry.delete_run(run_id, by="alice")
    assert registry.list_runs() == []


def test_visitors_cannot_cancel_or_delete_a_run_started_from_the_cli(tiny_config):
    run_id = registry.create_run(tiny_config())  # no owner: the operator's
    with pytest.raises(RunError, match="this run was started by the operator"):
        registry.request_cancel(run_id, by="visitor-token")
    assert registry.get_run(run_id).status == "queued" and not registry.get_run(run_id).cancel_requested
    registry.request_cancel(run_id)  # the CLI (by=None) still can
    assert registry.get_run(run_id).status == "cancelled"
    with pytest.raises(RunError, match="this run was started by the operator"):
        registry.delete_run(run_id, by="visitor-token")
    registry.delete_run(run_id)
    assert registry.list_runs() == []


# --- public-demo bounds, enforced in the core ------------------------------------------------------

@pytest.mark.parametrize("field, value, message", [
    ("epochs", 50, "epochs: this demo allows at most 5"),
    ("train_size", 0, "train_size: this demo allows at most 20,000"),
    ("train_size", 30_000, "train_size: this demo allows at most 20,000"),
    ("batch_size", 4096, "batch_size: this demo allows at most 1,024"),
    ("model", "cnn-strong", "model: this demo allows"),
])
def test_demo_bounds_are_enforced_by_admission(monkeypatch, field, value, message):
    monkeypatch.setenv("MNIST_DEMO", "1")
    config = TrainConfig.from_dict({"train_size": 2000, field: value})  # a valid config, demo or not
    with pytest.raises(ConfigError, match=message):
        admit(config)
    monkeypatch.delenv("MNIST_DEMO")
    admit(config)  # fine outside the demo


def _admit(values: dict) -> TrainConfig:
    return admit(TrainConfig.from_dict(values))


def test_demo_bounds_are_configurable(monkeypatch):
    monkeypatch.setenv("MNIST_DEMO", "1")
    monkeypatch.setenv("MNIST_MAX_EPOCHS", "2")
    monkeypatch.setenv("MNIST_ALLOWED_MODELS", "lenet5, mlp-50")
    assert limits.current().allowed_models == ("lenet5", "mlp-50")
    with pytest.raises(ConfigError, match="epochs: this demo allows at most 2"):
        _admit({"train_size": 1000, "epochs": 3})
    with pytest.raises(ConfigError, match="model: this demo allows lenet5, mlp-50"):
        _admit({"train_size": 1000, "model": "cnn-small"})


def test_demo_refuses_a_run_of_too_many_steps(monkeypatch):
    """Batch size 1 over 20,000 images is 20,000 steps: the work, not the fields, is bounded."""
    monkeypatch.setenv("MNIST_DEMO", "1")
    with pytest.raises(ConfigError, match=r"batch_size: .*20,000 steps.*at most 3,000 steps"):
        _admit({"train_size": 20_000, "batch_size": 1, "epochs": 1})
    monkeypatch.setenv("MNIST_MAX_STEPS", "30000")
    _admit({"train_size": 20_000, "batch_size": 1, "epochs": 1})
    monkeypatch.delenv("MNIST_DEMO")
    monkeypatch.delenv("MNIST_MAX_STEPS")
    _admit({"train_size": 20_000, "batch_size": 1, "epochs": 5})  # fine outside the demo


def test_demo_refuses_a_run_that_validates_too_much(monkeypatch):
    """30,000 validation images at each of 20 steps is 600,000 images to evaluate."""
    monkeypatch.setenv("MNIST_DEMO", "1")
    with pytest.raises(ConfigError, match=r"val_size: .*600,000 validation images.*at most 100,000"):
        _admit({"train_size": 2000, "batch_size": 100, "val_size": 30_000, "eval_every": 1, "epochs": 1})
    # Once per epoch over a few epochs is well within the bound.
    _admit({"train_size": 2000, "batch_size": 100, "val_size": 10_000, "epochs": 5})
    monkeypatch.delenv("MNIST_DEMO")
    _admit({"train_size": 2000, "batch_size": 100, "val_size": 30_000, "eval_every": 1})


def test_more_threads_than_the_host_has_cores_are_refused_demo_or_not(monkeypatch):
    cores = limits.host_cores()
    assert 1 <= cores <= (os.cpu_count() or 1)
    with pytest.raises(ConfigError, match=f"threads: this machine has {cores} core") as excinfo:
        _admit({"threads": 256})
    assert "\n" not in str(excinfo.value)
    _admit({"threads": cores})
    _admit({"threads": 0})  # one per core


def test_the_default_config_parses_on_a_public_demo(monkeypatch):
    """The Train form starts from TrainConfig(): on a demo it is a valid config that admission refuses
    (all 55,000 images is past the demo's bound), with the field named, not a config that cannot exist."""
    monkeypatch.setenv("MNIST_DEMO", "1")
    config = TrainConfig()
    assert TrainConfig.from_dict({}) == config.validate()
    with pytest.raises(ConfigError, match="^train_size: this demo allows at most 20,000"):
        admit(config)


def test_a_visitor_submitting_past_the_demo_bounds_is_refused_and_nothing_is_queued(monkeypatch):
    monkeypatch.setenv("MNIST_DEMO", "1")
    with pytest.raises(ConfigError, match="^epochs: this demo allows at most 5"):
        executors.for_host().submit(TrainConfig(epochs=50, train_size=1000, threads=1).to_dict(), owner="visitor-a")
    assert registry.list_runs() == []


def test_a_run_recorded_before_the_demo_still_reads_as_its_config(monkeypatch):
    """Old runs display under new bounds: their config parses; only starting them again is refused."""
    run_id = registry.create_run(TrainConfig(epochs=50, train_size=1000, threads=1).to_dict())
    monkeypatch.setenv("MNIST_DEMO", "1")
    config = TrainConfig.from_dict(registry.get_run(run_id).config)
    assert config.epochs == 50 and config.summary().startswith("lenet5, adamw")


def test_a_run_past_its_time_limit_ends_failed_with_the_reason(mnist, tiny_config, monkeypatch, isolated_dirs):
    monkeypatch.setenv("MNIST_MAX_RUN_SECONDS", "1")
    # 20,000 steps of one image, each paced by the test: far longer than the limit.
    run_id = registry.create_run(tiny_config(model="mlp-50", train_size=2000, batch_size=1, epochs=10))
    run = worker.execute_run(run_id, on_event=lambda event: time.sleep(0.0005))
    assert run.status == "failed" and run.error == "time limit 1 s reached"
    assert (run.steps or 0) < 20_000 and run.test_accuracy is None and run.checkpoint is None
    assert not any(isolated_dirs["checkpoints"].glob("*.safetensors")), "a run stopped by its time limit saved a model"


def test_the_demo_time_limit_is_ten_minutes_unless_set(monkeypatch):
    assert limits.current().max_run_seconds == 0  # no limit outside the demo
    monkeypatch.setenv("MNIST_DEMO", "1")
    assert limits.current().max_run_seconds == 600
    assert limits.current().time_limit_text() == "time limit 10 min"
    monkeypatch.setenv("MNIST_MAX_RUN_SECONDS", "90")
    assert limits.current().time_limit_text() == "time limit 90 s"


def test_a_run_smuggled_into_the_registry_past_the_bounds_fails_in_the_worker(mnist, monkeypatch):
    run_id = registry.create_run(TrainConfig(epochs=50, train_size=1000, threads=1).to_dict())  # before the demo
    monkeypatch.setenv("MNIST_DEMO", "1")
    with pytest.raises(ConfigError):
        worker.execute_run(run_id)
    run = registry.get_run(run_id)
    assert run.status == "failed" and "epochs: this demo allows" in run.error


# --- faults ----------------------------------------------------------------------------------------

def test_sigkilled_worker_is_failed_and_checkpoints_stay_loadable(mnist, tiny_config, start_worker, wait_for,
                                                                   isolated_dirs):
    model = create_model("lenet5")
    saved = save_checkpoint(model, {"config": {}}, isolated_dirs["checkpoints"] / "before.safetensors")
    run_id = registry.create_run(tiny_config(epochs=20, train_size=5000))
    proc = start_worker(run_id)
    wait_for(lambda: registry.get_run(run_id).steps, 60, what="the worker to train")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    wait_for(lambda: registry.get_run(run_id).status == "failed", 60, what="the killed run to read as failed")
    assert "died" in registry.get_run(run_id).error
    assert saved in list_checkpoints()
    load_checkpoint(saved)
    assert not list(isolated_dirs["checkpoints"].glob(".*.tmp"))  # no half-written file left behind


@pytest.mark.subprocess
def test_a_restarted_server_loses_no_run(tiny_config):
    import subprocess
    import sys

    ids = [registry.create_run(tiny_config()) for _ in range(3)]
    registry.finish_run(ids[0], "completed", test_accuracy=0.9)
    fresh = subprocess.run(  # a new process, as a restarted server is
        [sys.executable, "-c", "from mnist_core import registry\n"
                               "for r in registry.list_runs(): print(r.id, r.test_accuracy)"],
        cwd=Path(__file__).resolve().parent.parent, capture_output=True, text=True, timeout=60)
    assert fresh.returncode == 0, fresh.stderr
    assert fresh.stdout.split() == [ids[0], "0.9", ids[1], "None", ids[2], "None"]


def test_an_unusable_runs_folder_is_a_clear_error(tmp_path, monkeypatch, tiny_config):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("MNIST_RUNS_DIR", str(blocker / "runs"))
    with pytest.raises(RunError, match="cannot open the run registry"):
        registry.list_runs()
    with pytest.raises(RunError, match="cannot open the run registry"):
        registry.create_run(tiny_config())


def test_an_unusable_checkpoint_folder_is_a_clear_error(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(CheckpointError, match="cannot write the checkpoint"):
        save_checkpoint(create_model("mlp-50"), {}, blocker / "ckpt.safetensors")


def test_many_writers_and_readers_never_see_database_is_locked(tiny_config):
    ids = [registry.create_run(tiny_config()) for _ in range(3)]
    for run_id in ids:
        registry.mark_running(run_id)
    errors: list[BaseException] = []
    stop = time.monotonic() + 3

    def write(run_id):
        step = 0
        try:
            while time.monotonic() < stop:
                step += 1
                registry.add_metrics(run_id, [{"step": step, "epoch": 0.1, "split": "train", "loss": 1.0,
                                            "accuracy": 0.5, "images_per_s": 100.0}] * 5)
                registry.heartbeat(run_id, steps=step)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    def read():
        try:
            while time.monotonic() < stop:
                for r in registry.list_runs():
                    registry.get_metrics(r.id)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(i,)) for i in ids]
    threads += [threading.Thread(target=read) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


# --- uploads ---------------------------------------------------------------------------------------

def png_bytes(array: np.ndarray, mode: str | None = None, fmt: str = "PNG", **save) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array, mode=mode).save(buf, format=fmt, **save)
    return buf.getvalue()


def a_one(height=120, width=90) -> np.ndarray:
    img = np.zeros((height, width), np.uint8)
    img[15:105, 40:52] = 255
    return img


def test_uploaded_images_of_every_kind_become_rgba():
    one = a_one()
    cases = {
        "greyscale png": png_bytes(one),
        "16-bit png": png_bytes(one.astype(np.uint16) * 257),
        "palette gif": (lambda b: (Image.fromarray(one).convert("P").save(b, format="GIF"), b.getvalue())[1])(
            io.BytesIO()),
        "rgb jpeg": png_bytes(np.stack([one] * 3, -1), fmt="JPEG", quality=95),
        "black on white bmp": png_bytes(255 - one, fmt="BMP"),
    }
    for name, data in cases.items():
        rgba = load_image(data)
        assert rgba.dtype == np.uint8 and rgba.shape == (120, 90, 4), name
        image = canvas_to_mnist(rgba)
        assert image.max() > 0.5, name
        assert abs(np.argwhere(image > 0.3)[:, 1].mean() - 13.5) < 2, name  # centred


def test_an_animated_image_uses_its_first_frame():
    frames = [Image.fromarray(a_one()), Image.fromarray(np.zeros((120, 90), np.uint8))]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:])
    assert canvas_to_mnist(load_image(buf.getvalue())).max() > 0.5


@pytest.mark.parametrize("data, message", [
    (b"", "empty"),
    (b"%PDF-1.4 not an image", "not an image"),
    (png_bytes(a_one())[:80], "could not be decoded"),
    (b"\x89PNG" + b"\x00" * (11 << 20), "too large"),
])
def test_bad_uploads_are_refused_with_one_line(data, message):
    with pytest.raises(ImageError, match=message) as excinfo:
        load_image(data)
    assert "\n" not in str(excinfo.value)


def test_a_decompression_bomb_is_refused_without_being_decoded(monkeypatch):
    """How fast it is refused is measured by benchmarks/hosting.py."""
    from PIL import ImageFile

    buf = io.BytesIO()
    Image.new("L", (30_000, 30_000)).save(buf, format="PNG")  # ~900 MB of pixels in a small file
    bomb = buf.getvalue()
    assert len(bomb) < 2 << 20
    decoded = []
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda image: decoded.append(image.size))  # PIL's decoder
    with pytest.raises(ImageError) as excinfo:
        load_image(bomb)
    assert decoded == []
    assert "\n" not in str(excinfo.value)


def test_an_uploaded_checkpoint_loads_in_memory_and_writes_nothing(tmp_path, isolated_dirs):
    path = save_checkpoint(create_model("lenet5"), {"config": {}}, tmp_path / "mine.safetensors")
    before = sorted(p.name for p in tmp_path.rglob("*"))
    model, meta = load_uploaded_checkpoint(path.read_bytes(), path.with_suffix(".json").read_bytes())
    assert meta["architecture"] == "lenet5" and predict_proba(model, np.zeros((28, 28))).shape == (1, 10)
    assert sorted(p.name for p in tmp_path.rglob("*")) == before
    assert not isolated_dirs["checkpoints"].exists() or not any(isolated_dirs["checkpoints"].iterdir())


def _upload_parts(tmp_path, arch="lenet5"):
    path = save_checkpoint(create_model(arch), {"config": {}}, tmp_path / f"{arch}.safetensors")
    return path.read_bytes(), json.loads(path.with_suffix(".json").read_text())


@pytest.mark.parametrize("tamper, message", [
    (lambda w, m: (w, {**m, "architecture": "resnet-9000"}), "unknown architecture"),
    (lambda w, m: (w, {**m, "architecture": "mlp-50"}), "does not fit mlp-50"),
    (lambda w, m: (w[: len(w) // 2], m), "truncated"),
    (lambda w, m: (b"\x80\x04\x95" + b"pickle" * 20, m), "not a safetensors file"),
    (lambda w, m: (w, {**m, "run_id": "../../etc/passwd"}), "plain name, not a path"),
    (lambda w, m: (w, {**m, "notes": "x" * 100_000}), "too long"),
    (lambda w, m: (w + b"\x00" * (21 << 20), m), "too large"),
])
def test_bad_checkpoint_uploads_are_refused_with_one_line(tmp_path, tamper, message):
    weights, meta = _upload_parts(tmp_path)
    weights, meta = tamper(weights, meta)
    with pytest.raises(CheckpointError, match=message) as excinfo:
        load_uploaded_checkpoint(weights, json.dumps(meta).encode())
    assert "\n" not in str(excinfo.value)


# --- several visitors while a training runs -----------------------------------------------------------

def test_eight_visitors_browse_and_predict_while_a_training_runs(mnist, tiny_config, start_worker, wait_for):
    """The core paths the pages take (registry reads, the dataset, predictions) answer every visitor
    correctly while a worker trains. How fast is measured by benchmarks/hosting.py."""
    from mnist_core.data import load_mnist
    from mnist_core.inspection import browse_order

    run_id = registry.create_run(tiny_config(epochs=4, train_size=8000))
    start_worker(run_id)
    model = create_model("lenet5").eval()
    images, labels = load_mnist("test")
    answered: list[int] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def visitor(seed: int):
        rng = np.random.default_rng(seed)
        try:
            for _ in range(15):
                assert run_id in [r.id for r in registry.list_runs()]
                for r in registry.list_runs():
                    registry.get_metrics(r.id, split="val")
                order = browse_order(labels.numpy(), int(rng.integers(10)), seed)
                grid = images[order[:100]]
                canvas = np.zeros((280, 280, 4), np.uint8)
                canvas[..., 3] = 255
                canvas[rng.integers(20, 60):rng.integers(200, 260), 130:150, :3] = 255
                probs = predict_proba(model, canvas_to_mnist(canvas))
                assert grid.shape == (100, 28, 28) and probs.shape == (1, 10)
                assert np.isclose(probs.sum(), 1.0, atol=1e-4)
                with lock:
                    answered.append(seed)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=visitor, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(answered) == sorted(list(range(8)) * 15)  # every visitor, every round
    wait_for(lambda: not registry.get_run(run_id).is_live, 180, what="the training to finish")
    assert registry.get_run(run_id).status == "completed"


def test_deleting_a_run_removes_its_learning_replay(tiny_config):
    from mnist_core.snapshots import snapshot_path

    run_id = registry.create_run(tiny_config(), owner="alice")
    registry.request_cancel(run_id, by="alice")
    snapshot_path(run_id).parent.mkdir(parents=True, exist_ok=True)
    snapshot_path(run_id).write_bytes(b"frames")
    registry.delete_run(run_id, by="alice")
    assert not snapshot_path(run_id).exists()
