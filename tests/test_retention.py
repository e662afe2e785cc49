"""Retention: a hosted demo keeps the newest finished runs for a while, and removes the rest with
everything they own; live runs and the committed default checkpoints are never touched."""

from __future__ import annotations

import os
import time

import pytest

from mnist_core import registry, retention, runfiles
from mnist_core.checkpoints import default_checkpoint, list_checkpoints
from mnist_core.errors import ConfigError, RunError
from mnist_core.records import RunStatus, metric_row

DAY = 86_400


def finished_run(config: dict, status: RunStatus = RunStatus.COMPLETED, checkpoint: str | None = None) -> str:
    """A finished run with everything a real one leaves: metric rows, artifacts, a log, a replay and
    (unless told another) its own checkpoint file beside its sidecar."""
    run_id = registry.create_run(config)
    registry.add_metrics(run_id, [metric_row("train", 1, 0.1, 2.3, 0.1), metric_row("val", 1, 0.1, 2.2, 0.2)])
    registry.put_artifact(run_id, "checkpoint.safetensors", b"weights")
    runfiles.log_path(run_id).parent.mkdir(parents=True, exist_ok=True)
    runfiles.log_path(run_id).write_text("trained\n")
    runfiles.snapshot_path(run_id).parent.mkdir(parents=True, exist_ok=True)
    runfiles.snapshot_path(run_id).write_bytes(b"npz")
    if checkpoint is None:
        own = runfiles.default_checkpoint_path(config["model"], run_id)
        own.parent.mkdir(parents=True, exist_ok=True)
        own.write_bytes(b"weights")
        own.with_suffix(".json").write_text("{}")
        checkpoint = str(own)
    registry.finish_run(run_id, status, checkpoint=checkpoint, test_accuracy=0.9 if status == "completed" else None)
    return run_id


def its_files(run_id: str, model: str) -> list:
    own = runfiles.default_checkpoint_path(model, run_id)
    return [runfiles.log_path(run_id), runfiles.snapshot_path(run_id), own, own.with_suffix(".json")]


def gone_entirely(run_id: str, model: str) -> bool:
    with pytest.raises(RunError):
        registry.get_run(run_id)
    artifacts = registry.list_runs(has_artifacts=["checkpoint.safetensors"], where=[registry.RUNS.c.id == run_id])
    files = its_files(run_id, model)
    return not any(p.exists() for p in files) and registry.get_metrics(run_id) == [] and not artifacts


def backdate(run_id: str, days: float) -> None:
    """Make a run look as if it was created and ended `days` ago (the registry's own tables)."""
    then = time.time() - days * DAY
    with registry.connect() as conn:
        conn.execute(registry.RUNS.update().where(registry.RUNS.c.id == run_id)
                     .values(created_at=then, finished_at=then if registry.get_run(run_id).finished_at else None))


def test_the_oldest_finished_runs_over_the_count_are_removed_with_everything_they_own(tiny_config):
    waiting = registry.create_run(tiny_config())                        # oldest of all, but live:
    running = registry.create_run(tiny_config(), worker_pid=os.getpid())
    registry.mark_running(running)                                      # this process is its (live) worker
    ended = [finished_run(tiny_config(), status) for status in
             (RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED, RunStatus.COMPLETED, RunStatus.COMPLETED)]

    pruned = retention.prune(retention.Policy(keep_runs=2))

    assert [r.id for r in pruned.removed] == ended[:3] and pruned.problems == []
    assert [r.id for r in registry.list_runs()] == [waiting, running, *ended[3:]]
    assert {registry.get_run(waiting).status, registry.get_run(running).status} == {"queued", "running"}
    for run_id in ended[:3]:
        assert gone_entirely(run_id, "mlp-128-64")
    for run_id in ended[3:]:
        assert all(p.exists() for p in its_files(run_id, "mlp-128-64"))
        assert len(registry.get_metrics(run_id)) == 2


def test_finished_runs_past_the_age_are_removed_live_ones_never(tiny_config):
    old_waiting = registry.create_run(tiny_config())
    old, older, recent = (finished_run(tiny_config()) for _ in range(3))
    backdate(old_waiting, 30)
    backdate(old, 8)
    backdate(older, 9)

    assert [r.id for r in retention.due(retention.Policy(keep_days=7))] == [older, old]  # oldest first
    pruned = retention.prune(retention.Policy(keep_days=7))

    assert [r.id for r in pruned.removed] == [older, old]
    assert gone_entirely(old, "mlp-128-64") and gone_entirely(older, "mlp-128-64")
    assert [r.id for r in registry.list_runs()] == [old_waiting, recent]


def test_a_dry_run_removes_nothing(tiny_config):
    ids = [finished_run(tiny_config()) for _ in range(3)]
    pruned = retention.prune(retention.Policy(keep_runs=1), dry_run=True)
    assert [r.id for r in pruned.removed] == ids[:2]
    assert [r.id for r in registry.list_runs()] == ids
    assert all(p.exists() for run_id in ids for p in its_files(run_id, "mlp-128-64"))


def test_the_committed_default_checkpoints_are_never_removed(tiny_config):
    committed = default_checkpoint("lenet5")
    assert committed is not None
    size = committed.stat().st_size
    pretrained = finished_run(tiny_config(model="lenet5"), checkpoint=str(committed))  # as `make pretrained` records it
    backdate(pretrained, 400)
    others = [finished_run(tiny_config()) for _ in range(3)]

    pruned = retention.prune(retention.Policy(keep_runs=1, keep_days=7))

    assert [r.id for r in pruned.removed] == others[:2]  # the pretrained run is the operator's: not counted either
    assert [r.id for r in registry.list_runs()] == [pretrained, others[2]]
    assert committed.is_file() and committed.stat().st_size == size and committed in list_checkpoints()


def test_a_runners_pass_is_bounded_and_the_next_takes_the_rest(tiny_config, monkeypatch):
    monkeypatch.setenv("MNIST_KEEP_RUNS", "1")
    ids = [registry.create_run(tiny_config()) for _ in range(retention.PASS_LIMIT + 5)]
    for run_id in ids:
        registry.finish_run(run_id, RunStatus.CANCELLED)

    assert retention.prune_pass() == retention.PASS_LIMIT
    assert registry.count_runs() == 5
    assert retention.prune_pass() == 4
    assert [r.id for r in registry.list_runs()] == ids[-1:]
    assert retention.prune_pass() == 0


def test_the_policy_is_on_under_the_demo_and_off_otherwise(monkeypatch):
    monkeypatch.delenv("MNIST_DEMO", raising=False)
    assert retention.policy() == retention.Policy(0, 0) and not retention.policy().active
    monkeypatch.setenv("MNIST_DEMO", "1")
    assert retention.policy() == retention.Policy(keep_runs=500, keep_days=7)
    monkeypatch.setenv("MNIST_KEEP_RUNS", "0")
    monkeypatch.setenv("MNIST_KEEP_RUN_DAYS", "2.5")
    assert retention.policy() == retention.Policy(keep_runs=0, keep_days=2.5)
    monkeypatch.setenv("MNIST_KEEP_RUN_DAYS", "a week")
    with pytest.raises(ConfigError, match="MNIST_KEEP_RUN_DAYS must be a number"):
        retention.policy()
    assert retention.prune_pass() == 0  # a runner's pass says it on stderr and goes on


def test_runs_prune_on_the_command_line(cli, tiny_config, monkeypatch):
    ids = [finished_run(tiny_config()) for _ in range(3)]
    monkeypatch.setenv("MNIST_KEEP_RUNS", "1")

    dry = cli("runs", "prune", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert [line.split()[2] for line in dry.stdout.splitlines()[:-1]] == ids[:2]
    assert dry.stdout.splitlines()[-1] == "keep the newest 1 finished runs: would remove 2 run(s)"
    assert len(registry.list_runs()) == 3

    done = cli("runs", "prune")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "keep the newest 1 finished runs: removed 2 run(s)"
    assert [r.id for r in registry.list_runs()] == ids[2:]
    assert not any(p.exists() for run_id in ids[:2] for p in its_files(run_id, "mlp-128-64"))


def test_deploy_md_suggests_the_demo_retention_policy(monkeypatch):
    from harness import deploy_settings

    settings = deploy_settings()
    for name in ("MNIST_DEMO", "MNIST_KEEP_RUNS", "MNIST_KEEP_RUN_DAYS"):
        monkeypatch.setenv(name, settings[name])
    assert retention.policy() == retention.Policy(keep_runs=retention.DEMO_KEEP_RUNS,
                                                  keep_days=retention.DEMO_KEEP_RUN_DAYS)
