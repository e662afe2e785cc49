"""mnist_core.checkpoints: safetensors weights + JSON sidecar, and every way loading can fail."""

from __future__ import annotations

import json
import os
import struct

import pytest
import torch

from mnist_core import checkpoints
from mnist_core.checkpoints import (CheckpointError, default_checkpoint, list_checkpoints, load_checkpoint,
                                    save_checkpoint, sidecar_path)
from mnist_core.models import create_model, list_models


class _RunsACommand:
    """Unpickling this calls os.system(command): what a malicious .pt file would hold."""

    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def _model(name="lenet5", seed=0):
    torch.manual_seed(seed)
    return create_model(name)


@pytest.fixture
def saved(tmp_path):
    """A lenet5 checkpoint saved in tmp_path: (weights path, model)."""
    model = _model()
    return save_checkpoint(model, {"config": {"model": "lenet5"}}, tmp_path / "lenet5.safetensors"), model


def _load_error(path) -> str:
    with pytest.raises(CheckpointError) as excinfo:
        load_checkpoint(path)
    message = str(excinfo.value)
    assert "\n" not in message, "checkpoint errors are one line, fit for st.error"
    return message


# --- round trip ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", list_models())
def test_save_and_load_round_trip_gives_the_same_outputs(tmp_path, name):
    model = _model(name).eval()
    x = torch.rand(5, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        before = model(x)
    meta = {"config": {"model": name, "lr": 0.01}, "metrics": {"test_accuracy": 0.99}, "run_id": "r1"}
    path = save_checkpoint(model, meta, tmp_path / f"{name}.safetensors")

    loaded, loaded_meta = load_checkpoint(path)
    assert not loaded.training
    with torch.no_grad():
        assert torch.equal(loaded(x), before)
    assert loaded_meta["architecture"] == name and loaded_meta["format"] == "mnist-lab-checkpoint"
    assert loaded_meta["config"] == meta["config"] and loaded_meta["metrics"] == meta["metrics"]
    assert {"torch", "safetensors", "mnist_lab"} <= set(loaded_meta["versions"]) and loaded_meta["created"]


def test_either_file_of_a_checkpoint_or_its_stem_loads_it(saved):
    path, _ = saved
    for variant in (path, sidecar_path(path), path.with_suffix(""), str(path)):
        model, meta = load_checkpoint(variant)
        assert meta["architecture"] == "lenet5"


def test_the_sidecar_is_plain_json_and_the_weights_are_safetensors(saved):
    path, model = saved
    from safetensors.torch import load_file

    meta = json.loads(sidecar_path(path).read_text())
    assert meta["architecture"] == "lenet5"
    state = load_file(str(path))
    assert set(state) == set(model.state_dict())


def test_save_refuses_a_model_outside_the_zoo_and_unserialisable_metadata(tmp_path):
    with pytest.raises(CheckpointError, match="not in the model zoo"):
        save_checkpoint(torch.nn.Linear(2, 2), {}, tmp_path / "linear.safetensors")
    with pytest.raises(CheckpointError, match="JSON"):
        save_checkpoint(_model("mlp-50"), {"when": object()}, tmp_path / "bad-meta.safetensors")
    assert list(tmp_path.iterdir()) == []


# --- every way loading fails -------------------------------------------------------------------------

def test_missing_weights_file(tmp_path):
    assert "no checkpoint" in _load_error(tmp_path / "nothing.safetensors")


def test_missing_sidecar(saved):
    path, _ = saved
    sidecar_path(path).unlink()
    assert "sidecar" in _load_error(path)


def test_unknown_architecture_in_sidecar(saved):
    path, _ = saved
    meta = json.loads(sidecar_path(path).read_text())
    meta["architecture"] = "resnet-9000"
    sidecar_path(path).write_text(json.dumps(meta))
    assert "unknown architecture 'resnet-9000'" in _load_error(path)


@pytest.mark.parametrize("text", ["{not json", "[1, 2, 3]", "", "\xff\xfe"])
def test_a_sidecar_that_is_not_a_json_object(saved, text):
    path, _ = saved
    sidecar_path(path).write_text(text, encoding="latin-1")
    assert "lenet5.json" in _load_error(path)


def test_weights_of_another_architecture_under_a_lenet5_sidecar(tmp_path, saved):
    path, _ = saved
    other = save_checkpoint(_model("mlp-50"), {}, tmp_path / "other.safetensors")
    os.replace(other, path)  # lenet5.json now describes mlp-50 weights
    assert "does not fit lenet5" in _load_error(path)


def test_weights_of_the_wrong_shapes(tmp_path):
    # mlp-90 has the same tensor names as mlp-50, with other shapes.
    path = save_checkpoint(_model("mlp-90"), {"architecture": "mlp-50"}, tmp_path / "mlp.safetensors")
    message = _load_error(path)
    assert "does not fit mlp-50" in message and "shape" in message and "expected (50" in message


@pytest.mark.parametrize("keep", [0.5, 0.99])
def test_a_truncated_file(saved, keep):
    path, _ = saved
    content = path.read_bytes()
    path.write_bytes(content[:int(len(content) * keep)])
    assert "truncated" in _load_error(path)


@pytest.mark.parametrize("content", [b"", b"\x00\x01\x02"])
def test_an_empty_or_tiny_file(saved, content):
    path, _ = saved
    path.write_bytes(content)
    assert "empty or truncated" in _load_error(path)


@pytest.mark.parametrize("zipfile_format", [True, False], ids=["zip", "legacy-pickle"])
def test_a_torch_pickle_renamed_to_safetensors_is_refused_unloaded(saved, tmp_path, zipfile_format):
    path, model = saved
    marker = tmp_path / "pwned"
    torch.save({"state_dict": model.state_dict(), "payload": _RunsACommand(f"echo pwned > {marker}")}, path,
               _use_new_zipfile_serialization=zipfile_format)
    assert "not a safetensors file" in _load_error(path)
    assert not marker.exists()


@pytest.mark.parametrize("header", [
    b"[1, 2]",
    b"not json at all",
    json.dumps({"w": {"dtype": "F32", "shape": [1], "data_offsets": ["0", "4"]}}).encode(),
    json.dumps({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, None]}}).encode(),
    json.dumps({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, -4]}}).encode(),
    json.dumps({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4.5]}}).encode(),
    json.dumps({"w": {"dtype": "NOPE", "shape": [1], "data_offsets": [0, 4]}}).encode(),
    json.dumps({"w": "just a string"}).encode(),
    b"[" * 100_000 + b"]" * 100_000,
], ids=["list", "garbage", "string-offsets", "null-offset", "negative-offset", "float-offset", "bad-dtype",
        "entry-not-object", "deeply-nested"])
def test_a_malformed_safetensors_header(saved, header):
    path, _ = saved
    path.write_bytes(struct.pack("<Q", len(header)) + header + b"\x00" * 16)
    _load_error(path)


def test_a_header_length_beyond_the_file(saved):
    path, _ = saved
    path.write_bytes(struct.pack("<Q", 1 << 40) + b"{}")
    assert "bad header length" in _load_error(path)


# --- atomic writes ---------------------------------------------------------------------------------------

def _leftovers(folder):
    return [p.name for p in folder.iterdir() if p.name.startswith(".") or p.suffix == ".tmp"]


def test_a_save_that_fails_while_writing_leaves_no_temporary_files(tmp_path, monkeypatch):
    import safetensors.torch

    def disk_full(state, filename, metadata=None):
        with open(filename, "wb") as f:
            f.write(b"half a checkpoint")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(safetensors.torch, "save_file", disk_full)
    with pytest.raises(CheckpointError, match="No space left on device"):
        save_checkpoint(_model(), {}, tmp_path / "full.safetensors")
    assert list(tmp_path.iterdir()) == []


def test_an_interrupted_save_leaves_no_temporary_files(tmp_path, monkeypatch):
    import safetensors.torch

    def interrupted(state, filename, metadata=None):
        with open(filename, "wb") as f:
            f.write(b"half")
        raise KeyboardInterrupt

    monkeypatch.setattr(safetensors.torch, "save_file", interrupted)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(_model(), {}, tmp_path / "ctrl-c.safetensors")
    assert list(tmp_path.iterdir()) == []


def test_a_failed_sidecar_write_leaves_an_incomplete_checkpoint_that_is_never_listed(tmp_path, monkeypatch,
                                                                                   isolated_dirs):
    folder = isolated_dirs["checkpoints"]
    original = checkpoints.Path.write_text

    def failing_write_text(self, *args, **kwargs):
        if self.name.endswith(".tmp"):
            raise OSError(5, "Input/output error")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(checkpoints.Path, "write_text", failing_write_text)
    with pytest.raises(CheckpointError, match="Input/output error"):
        save_checkpoint(_model(), {}, folder / "half.safetensors")
    monkeypatch.undo()
    assert _leftovers(folder) == []
    assert not sidecar_path(folder / "half.safetensors").exists()
    assert folder / "half.safetensors" not in list_checkpoints()
    assert "sidecar" in _load_error(folder / "half.safetensors")


def test_saving_over_a_checkpoint_replaces_it_whole(saved):
    path, _ = saved
    other = _model(seed=1)
    save_checkpoint(other, {"note": "second"}, path)
    model, meta = load_checkpoint(path)
    assert meta["note"] == "second"
    assert torch.equal(model.body.C1.conv.weight, other.body.C1.conv.weight)
    assert _leftovers(path.parent) == []


# --- listing -----------------------------------------------------------------------------------------------

def test_list_checkpoints_lists_only_complete_ones(isolated_dirs):
    folder = isolated_dirs["checkpoints"]
    complete = save_checkpoint(_model("mlp-50"), {}, folder / "zz-complete.safetensors")
    weights_only = save_checkpoint(_model("mlp-50"), {}, folder / "weights-only.safetensors")
    sidecar_path(weights_only).unlink()
    sidecar_only = save_checkpoint(_model("mlp-50"), {}, folder / "sidecar-only.safetensors")
    sidecar_only.unlink()
    (folder / ".zz-temp.safetensors.abc123.tmp").write_bytes(b"partial")

    listed = list_checkpoints()
    assert complete in listed
    assert weights_only not in listed and sidecar_only not in listed
    assert all(p.suffix == ".safetensors" and sidecar_path(p).is_file() for p in listed)
    assert not any(p.name.startswith(".") for p in listed)
    # The committed defaults come first, in zoo order; the user's follow by name.
    defaults = [p for p in listed if p.parent == checkpoints.REPO_ROOT / "checkpoints"]
    assert listed[:len(defaults)] == defaults


def test_the_committed_default_checkpoints_load():
    path = default_checkpoint("lenet5")
    if path is None:
        pytest.skip("no committed lenet5 checkpoint (make pretrained)")
    model, meta = load_checkpoint(path)
    assert meta["architecture"] == "lenet5"
    assert default_checkpoint("no-such-model") is None
