"""Training snapshots: kernels and a probe image's feature maps at every validation, for the replay slider."""

import numpy as np
import pytest
import torch

from mnist_core import runs, snapshots
from mnist_core.errors import RunError
from mnist_core.models import create_model
from mnist_core.training import TrainConfig, train
from mnist_core.worker import execute_run


def test_a_worker_run_records_a_frame_at_the_start_and_at_every_validation(mnist, tiny_config):
    run_id = runs.create_run(tiny_config(model="lenet5", train_size=400, val_size=200, eval_every=2, schedule="none"))
    run = execute_run(run_id)
    assert run.status == "completed"
    snaps = snapshots.load_snapshots(run_id)
    val_steps = [m["step"] for m in runs.get_metrics(run_id, split="val")]
    assert snaps.steps.tolist() == [0, *val_steps] == [0, 2, 4]
    assert list(snaps.kernels) == ["C1", "C3"]          # C5's 48,000 weights are over the size cap
    assert snaps.kernels["C1"].shape == (3, 6, 1, 5, 5)
    assert list(snaps.maps) == ["C1", "S2", "C3", "S4", "C5"] and snaps.maps["C1"].shape == (3, 6, 28, 28)
    assert snaps.probe.shape == (28, 28) and snaps.probe_label == 7
    assert not np.allclose(snaps.kernels["C1"][0], snaps.kernels["C1"][-1])  # it learned


def test_frames_hold_the_weights_as_they_were(mnist):
    frames = []
    recorder = snapshots.Recorder("20260101-000000-abcdef", write_seconds=1e9)
    config = TrainConfig(model="cnn-small", train_size=200, val_size=100, epochs=1, batch_size=100, eval_every=1,
                         schedule="none", threads=1, device="cpu")

    def keep(model, step, epoch):
        frames.append((step, model.body.block1.conv.weight.detach().clone()))
        recorder.record(model, step, epoch)

    result = train(config, on_snapshot=keep)
    assert [s for s, _ in frames] == [0, 1, 2]
    for (step, weight), frame in zip(frames, recorder.frames):
        assert frame[0] == step
        np.testing.assert_allclose(frame[2][0][1], weight.numpy(), rtol=0, atol=0)
    assert torch.equal(frames[-1][1], result.model.body.block1.conv.weight)


def test_recording_changes_nothing_about_the_run(mnist, tiny_config):
    config = TrainConfig.from_dict(tiny_config(model="lenet5", train_size=300, val_size=100, eval_every=1,
                                               schedule="none"))
    plain = train(config)
    recorder = snapshots.Recorder("20260101-000000-abcdef", write_seconds=1e9)
    watched = train(config, on_snapshot=recorder.record)
    assert len(recorder.frames) == plain.steps + 1
    for key, value in plain.model.state_dict().items():
        assert torch.equal(value, watched.model.state_dict()[key]), key


def test_frames_stay_bounded_and_span_the_whole_run(mnist):
    model = create_model("mlp-50")
    recorder = snapshots.Recorder("20260101-000000-abcdef", max_frames=8, write_seconds=0)
    for step in range(0, 101):
        recorder.record(model, step, step / 100)
    steps = snapshots.load_snapshots("20260101-000000-abcdef").steps
    assert 4 <= len(steps) <= 8 and steps[0] == 0 and steps[-1] == 100
    assert (np.diff(steps) > 0).all()


def test_an_mlp_records_its_first_layer_units(mnist):
    recorder = snapshots.Recorder("20260101-000000-abcdef")
    recorder.record(create_model("mlp-256-64"), 0, 0.0)
    recorder.close()
    snaps = snapshots.load_snapshots("20260101-000000-abcdef")
    assert snaps.kernels["fc1"].shape == (1, snapshots.MAX_TEMPLATES, 1, 28, 28)
    assert snaps.maps["relu1"].shape == (1, 256) and snaps.maps["relu2"].shape == (1, 64)


def test_a_failing_recorder_never_breaks_the_run(mnist, tiny_config, isolated_dirs, capsys):
    isolated_dirs["runs"].mkdir(parents=True, exist_ok=True)
    (isolated_dirs["runs"] / "snapshots").write_text("a file where the folder should be")
    run_id = runs.create_run(tiny_config(train_size=300, val_size=100, schedule="none"))
    assert execute_run(run_id).status == "completed"
    assert "snapshots: writing failed" in capsys.readouterr().err

    recorder = snapshots.Recorder("20260101-000000-abcdef")
    recorder.record(object(), 0, 0.0)  # not a model at all
    assert recorder.failed and recorder.frames == []


def test_runs_without_snapshots_and_damaged_files(isolated_dirs):
    assert snapshots.load_snapshots("20260101-000000-abcdef") is None
    path = snapshots.snapshot_path("20260101-000000-abcdef")
    path.parent.mkdir(parents=True)
    path.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(RunError, match="cannot be read"):
        snapshots.load_snapshots("20260101-000000-abcdef")
    with pytest.raises(RunError, match="not a run id"):
        snapshots.load_snapshots("../../etc/passwd")
