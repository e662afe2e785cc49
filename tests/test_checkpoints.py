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


# --- crafted fields and weights: refused in one line, on every path ------------------------------------

HUGE = "9" * 5000  # past Python's 4,300-digit limit on int(str): json.loads raises a plain ValueError


def _set_sidecar(path, text: str) -> None:
    sidecar_path(path).write_text(text)


def _with_field(path, field: str, value_json: str) -> str:
    """The checkpoint's sidecar JSON text with `field` (dotted: metrics.test_accuracy) set to raw JSON."""
    meta = json.loads(sidecar_path(path).read_text())
    *outer, leaf = field.split(".")
    target = meta
    for key in outer:
        target = target.setdefault(key, {})
    target[leaf] = "__RAW__"
    return json.dumps(meta).replace('"__RAW__"', value_json)


def _refused_everywhere(path, message: str) -> None:
    """The checkpoint at `path` is refused, in one line containing `message`, from disk and as an upload."""
    assert message in _load_error(path)
    with pytest.raises(CheckpointError, match=message) as excinfo:
        checkpoints.load_uploaded_checkpoint(path.read_bytes(), sidecar_path(path).read_bytes())
    assert "\n" not in str(excinfo.value)


@pytest.mark.parametrize("field", ["metrics.test_accuracy", "metrics.steps", "format_version", "config.epochs",
                                   "somewhere_new"])
def test_a_5000_digit_number_in_the_sidecar_is_refused_in_one_line(saved, field):
    path, _ = saved
    _set_sidecar(path, _with_field(path, field, HUGE))
    _refused_everywhere(path, "too many digits")


@pytest.mark.parametrize("where", ["data_offsets", "shape"])
def test_a_5000_digit_number_in_the_safetensors_header_is_refused_in_one_line(saved, where):
    path, _ = saved
    data = path.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    key = next(k for k in header if k != "__metadata__")
    header[key][where] = ["__RAW__", 1]
    text = json.dumps(header).replace('"__RAW__"', HUGE).encode()
    path.write_bytes(struct.pack("<Q", len(text)) + text + data[8 + n:])
    assert "not a safetensors file" in _load_error(path)
    with pytest.raises(CheckpointError, match="not a safetensors file"):
        checkpoints.load_uploaded_checkpoint(path.read_bytes(), sidecar_path(path).read_bytes())


@pytest.mark.parametrize("field, value, message", [
    ("metrics", "[0.99, 0.98]", "metrics must be"),
    ("metrics", '"very good"', "metrics must be"),
    ("metrics.test_accuracy", '"99%"', "metrics.test_accuracy must be"),
    ("metrics.test_accuracy", "1.5", "metrics.test_accuracy must be"),
    ("metrics.test_accuracy", "-0.1", "metrics.test_accuracy must be"),
    ("metrics.test_accuracy", "true", "metrics.test_accuracy must be"),
    ("metrics.test_loss", "NaN", "metrics.test_loss must be"),
    ("metrics.test_loss", "Infinity", "metrics.test_loss must be"),
    ("metrics.test_loss", "1e999", "metrics.test_loss must be"),
    ("metrics.test_loss", "1" + "0" * 400, "metrics.test_loss must be"),  # an int no float can hold
    ("metrics.test_loss", '{"nested": 1}', "metrics.test_loss must be"),
    ("config", "[1, 2]", "config must be"),
    ("config", '"lenet5"', "config must be"),
    ("run_id", "12345", "run_id must be"),
    ("run_id", '"../../etc"', "plain name"),
    ("name", '"' + "x" * 5000 + '"', "too long"),
    ("created", '"' + "x" * 5000 + '"', "too long"),
    ("format_version", '"one"', "format_version must be"),
    ("metrics.line\nbreak", '"x"', "must be a finite number or null"),  # a crafted name stays one line
], ids=lambda v: v if len(str(v)) < 30 else str(v)[:20])
def test_a_sidecar_field_of_the_wrong_type_or_size_is_refused_in_one_line(saved, field, value, message):
    path, _ = saved
    _set_sidecar(path, _with_field(path, field, value))
    _refused_everywhere(path, message)


def test_the_fields_a_real_sidecar_holds_load(saved):
    path, _ = saved
    meta = json.loads(sidecar_path(path).read_text())
    meta.update(name="lenet5 run 1", run_id="20261122-154740-b42331",
                metrics={"test_accuracy": 0.993, "best_val_accuracy": None, "test_loss": 0.021, "steps": 3440,
                         "train_seconds": 33.77})
    _set_sidecar(path, json.dumps(meta))
    _, loaded = load_checkpoint(path)
    assert loaded["metrics"]["test_accuracy"] == 0.993 and loaded["metrics"]["best_val_accuracy"] is None


def test_a_missing_checkpoint_error_names_the_file_not_the_server_folder(tmp_path):
    message = _load_error(tmp_path / "deep" / "nothing.safetensors")
    assert "nothing.safetensors" in message and str(tmp_path) not in message


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_weights_with_a_non_finite_value_are_refused_in_one_line(tmp_path, bad):
    from safetensors.torch import save_file

    model = _model("lenet5")
    path = save_checkpoint(model, {}, tmp_path / "poisoned.safetensors")  # a good file, then poisoned by hand
    state = {k: v.clone() for k, v in model.state_dict().items()}
    state["body.F6.fc.weight"][3, 7] = bad
    save_file(state, path, metadata={"architecture": "lenet5"})
    _refused_everywhere(path, "F6.fc.weight")
    assert "not finite" in _load_error(path)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_a_diverged_model_is_not_saved_as_a_checkpoint_nobody_can_open(tmp_path, bad):
    model = _model("lenet5")
    with torch.no_grad():
        model.body.F6.fc.weight[3, 7] = bad
    with pytest.raises(CheckpointError) as excinfo:
        save_checkpoint(model, {}, tmp_path / "diverged.safetensors")
    message = str(excinfo.value)
    assert "\n" not in message and "diverged" in message and "F6.fc.weight" in message
    assert list(tmp_path.iterdir()) == []  # nothing written, not even half


def test_a_run_whose_loss_diverged_saves_it_as_unknown_and_still_loads(tmp_path):
    metrics = {"test_accuracy": 0.1, "test_loss": float("nan"), "best_val_accuracy": float("inf")}
    path = save_checkpoint(_model("mlp-50"), {"metrics": metrics}, tmp_path / "diverged.safetensors")
    _, meta = load_checkpoint(path)
    assert meta["metrics"] == {"test_accuracy": 0.1, "test_loss": None, "best_val_accuracy": None}


@pytest.mark.parametrize("which", ["weights", "sidecar"])
def test_a_sparse_oversized_file_in_the_checkpoint_folder_is_refused_without_reading_it(saved, which):
    """A 64 MB sparse file (a 2 GB one made `evaluate` peak at 4.7 GB) costs no more than the limit."""
    import tracemalloc

    path, _ = saved
    target = path if which == "weights" else checkpoints.sidecar_path(path)
    with open(target, "r+b") as f:
        f.truncate(64 << 20)  # sparse: no disk used, 64 MB to whoever reads it whole
    tracemalloc.start()
    try:
        with pytest.raises(CheckpointError, match=r"^[^\n/]* is too large \(the limit for this file is \d+ [MK]B\)$"):
            load_checkpoint(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < checkpoints.MAX_UPLOAD_BYTES + (4 << 20)


def test_evaluate_refuses_an_oversized_checkpoint_in_one_line(saved, cli, mnist):
    path, _ = saved
    with open(path, "r+b") as f:
        f.truncate(64 << 20)
    result = cli("evaluate", str(path))
    assert result.returncode != 0
    assert result.stderr.strip() == f"error: {path.name} is too large (the limit for this file is 20 MB)"
