"""A run's checkpoint and replay kept in the run registry, so a host without the worker's disk can use them."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mnist_core import artifacts, registry
from mnist_core.checkpoints import save_checkpoint, sidecar_path
from mnist_core.errors import CheckpointError, RunError
from mnist_core.models import create_model
from mnist_core.records import RunStatus

def _completed_run_with_checkpoint(tmp_path, tiny_config):
    """A run recorded completed, its checkpoint saved by hand where a worker host would have it."""
    run_id = registry.create_run(tiny_config(model="mlp-50"))
    registry.mark_running(run_id, total_steps=10)
    torch.manual_seed(0)
    model = create_model("mlp-50")
    path = save_checkpoint(model, {"run_id": run_id, "config": tiny_config(model="mlp-50")},
                           tmp_path / "worker-host" / f"mlp-50-{run_id}.safetensors")
    registry.finish_run(run_id, RunStatus.COMPLETED, checkpoint=str(path), test_accuracy=0.5)
    return run_id, model, path


def test_a_runs_checkpoint_loads_from_the_registry_once_its_file_is_gone(tmp_path, tiny_config):
    run_id, model, path = _completed_run_with_checkpoint(tmp_path, tiny_config)
    artifacts.store_checkpoint(run_id, path)
    path.unlink()
    sidecar_path(path).unlink()  # the web host never had the worker's disk

    loaded, meta = artifacts.load_run_model(run_id)
    assert meta["run_id"] == run_id and meta["architecture"] == "mlp-50"
    images = torch.rand(4, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        assert torch.equal(loaded(images), model.eval()(images))
    assert [r.id for r in artifacts.stored_models()] == [run_id]


def test_a_run_whose_checkpoint_was_never_stored_is_not_listed_and_says_so(tmp_path, tiny_config):
    run_id, _, path = _completed_run_with_checkpoint(tmp_path, tiny_config)
    path.unlink()
    assert artifacts.stored_models() == []
    with pytest.raises(RunError, match=f"run {run_id}'s checkpoint is neither on this host nor in the run registry"):
        artifacts.load_run_model(run_id)


def test_a_queued_run_has_no_model_to_load(tiny_config):
    run_id = registry.create_run(tiny_config())
    with pytest.raises(RunError, match="is queued: only a completed run has a checkpoint"):
        artifacts.load_run_model(run_id)


def test_stored_bytes_that_are_not_a_checkpoint_are_refused_in_one_line(tmp_path, tiny_config):
    run_id, _, path = _completed_run_with_checkpoint(tmp_path, tiny_config)
    artifacts.store_checkpoint(run_id, path)
    path.unlink()
    registry.put_artifact(run_id, artifacts.WEIGHTS, b"\x80\x04pickle, not safetensors")
    with pytest.raises(CheckpointError) as excinfo:
        artifacts.load_run_model(run_id)
    assert "\n" not in str(excinfo.value) and "safetensors" in str(excinfo.value)


def test_a_checkpoint_stored_under_another_runs_id_is_refused(tmp_path, tiny_config):
    first, _, first_path = _completed_run_with_checkpoint(tmp_path, tiny_config)
    second, _, second_path = _completed_run_with_checkpoint(tmp_path, tiny_config)
    artifacts.store_checkpoint(second, first_path)  # the wrong file
    second_path.unlink()
    with pytest.raises(CheckpointError, match="belongs to another run"):
        artifacts.load_run_model(second)


def test_a_runs_replay_is_read_from_the_registry_on_a_host_without_its_file(mnist, tiny_config):
    from mnist_core import snapshots

    run_id = registry.create_run(tiny_config(model="lenet5"))
    recorder = snapshots.Recorder(run_id)
    model = create_model("lenet5")
    for step in range(3):
        recorder.record(model, step, step / 10)
    recorder.close()
    here = snapshots.load_snapshots(run_id)
    snapshots.snapshot_path(run_id).unlink()  # the web host never had the worker's runs folder

    stored = snapshots.load_snapshots(run_id)
    assert stored is not None and stored.steps.tolist() == here.steps.tolist() == [0, 1, 2]
    assert list(stored.kernels) == ["C1", "C3"]
    assert all(np.array_equal(stored.kernels[k], here.kernels[k]) for k in here.kernels)


def test_a_damaged_replay_in_the_registry_is_refused_in_one_line(tiny_config):
    from mnist_core import snapshots

    run_id = registry.create_run(tiny_config())
    registry.put_artifact(run_id, artifacts.SNAPSHOTS, b"PK\x03\x04 not really a zip")
    with pytest.raises(RunError, match=f"the training snapshots of run {run_id} cannot be read"):
        snapshots.load_snapshots(run_id)
