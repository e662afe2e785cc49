"""Training snapshots: kernels and a probe image's feature maps through a run, for the replay (slider and
Play); the default checkpoints' snapshots shipped beside them."""

import numpy as np
import pytest
import torch

from mnist_core import registry, snapshots
from mnist_core.checkpoints import default_checkpoint, read_meta, save_checkpoint
from mnist_core.errors import RunError
from mnist_core.models import create_model
from mnist_core.training import TrainConfig, train
from mnist_core.worker import execute_run


def test_a_worker_run_records_a_frame_at_the_start_and_at_every_validation(mnist, tiny_config):
    config = tiny_config(model="lenet5", train_size=400, val_size=200, eval_every=2, schedule="none")
    run_id = registry.create_run(config)
    run = execute_run(run_id)
    assert run.status == "completed"
    snaps = snapshots.load_snapshots(run_id)
    val_steps = [m["step"] for m in registry.get_metrics(run_id, split="val")]
    assert val_steps == [2, 4] and {0, *val_steps} <= set(snaps.steps.tolist())
    assert list(snaps.kernels) == ["C1", "C3"]          # C5's 48,000 weights are over the size cap
    assert snaps.kernels["C1"].shape == (len(snaps), 6, 1, 5, 5)
    assert list(snaps.maps) == ["C1", "S2", "C3", "S4", "C5"] and snaps.maps["C1"].shape == (len(snaps), 6, 28, 28)
    assert snaps.probe.shape == (28, 28) and snaps.probe_label == 7
    assert not np.allclose(snaps.kernels["C1"][0], snaps.kernels["C1"][-1])  # it learned


def test_a_run_validated_once_still_records_about_30_frames(mnist, tiny_config):
    """A smooth replay whatever the validation cadence: frames on a step schedule, not only at validations."""
    run_id = registry.create_run(tiny_config(model="lenet5", train_size=1600, val_size=200, batch_size=20,
                                             schedule="none"))  # 80 steps, validated once, at the end
    assert execute_run(run_id).status == "completed"
    steps = snapshots.load_snapshots(run_id).steps
    assert [m["step"] for m in registry.get_metrics(run_id, split="val")] == [80]
    assert snapshots.FRAMES_PER_RUN <= len(steps) <= 2 * snapshots.FRAMES_PER_RUN
    assert steps[0] == 0 and steps[-1] == 80 and (np.diff(steps) <= 80 // snapshots.FRAMES_PER_RUN).all()


def test_frames_hold_the_weights_as_they_were(mnist):
    frames = []
    recorder = snapshots.Recorder("20260101-000000-abcdef", write_seconds=1e9)
    config = TrainConfig(model="cnn-small", train_size=200, val_size=100, epochs=1, batch_size=100, eval_every=1,
                         schedule="none", threads=1, device="cpu")

    def keep(model, step, epoch):
        frames.append((step, model.body.block1.conv.weight.detach().clone()))
        recorder.record(model, step, epoch)

    result = train(config, on_snapshot=keep)
    assert [s for s, _ in frames] == [0, 1, 2]  # 2 steps: the start, then a validation after each step
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
    run_id = registry.create_run(tiny_config(train_size=300, val_size=100, schedule="none"))
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


def test_snapshots_shipped_beside_a_checkpoint_replay_on_a_server_without_its_run(mnist, isolated_dirs, capsys):
    """`make pretrained` ships a run's snapshots beside its checkpoint; a server that never saw the run
    (the registry is elsewhere) finds them by the checkpoint's run id."""
    run_id = "20260101-000000-abcdef"
    recorder = snapshots.Recorder(run_id, write_seconds=1e9)
    model = create_model("cnn-small")
    for step in (0, 5, 10):
        recorder.record(model, step, step / 10)
    recorder.close()
    checkpoint = save_checkpoint(model, {"run_id": run_id}, isolated_dirs["checkpoints"] / "mine.safetensors")

    assert snapshots.main([str(checkpoint)]) == 0
    assert capsys.readouterr().out.startswith("mine.snapshots.npz: 3 frames")
    snapshots.snapshot_path(run_id).unlink()  # the run's own file is not on this server
    assert snapshots.find_snapshots(run_id) == isolated_dirs["checkpoints"] / "mine.snapshots.npz"
    assert snapshots.load_snapshots(run_id).steps.tolist() == [0, 5, 10]
    assert snapshots.load_snapshots("20260101-000000-abcdee") is None

    assert snapshots.main([str(checkpoint)]) == 1  # nothing to ship any more: one line, no traceback
    assert capsys.readouterr().err == f"error: run {run_id} (which made mine.safetensors) has no snapshots here\n"


@pytest.mark.parametrize("name", ["lenet5", "mlp-256-64", "cnn-small"])
def test_every_default_checkpoint_ships_a_smooth_replay_of_its_training(name):
    checkpoint = default_checkpoint(name)
    if checkpoint is None:
        pytest.skip(f"the {name} checkpoint is not committed here")
    meta = read_meta(checkpoint)
    assert snapshots.shipped_path(checkpoint).is_file(), "run `make pretrained`"
    snaps = snapshots.load_snapshots(meta["run_id"], root="/nonexistent")  # no registry: the shipped file
    assert snaps.steps[0] == 0 and snaps.steps[-1] == meta["metrics"]["steps"]
    assert len(snaps) >= snapshots.FRAMES_PER_RUN
