"""Export: ONNX files that onnxruntime runs to PyTorch's answers, and the one-file bundle."""

import json
import struct

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from mnist_core import export
from mnist_core.__main__ import main
from mnist_core.checkpoints import default_checkpoint, load_checkpoint, save_checkpoint
from mnist_core.errors import CheckpointError
from mnist_core.models import create_model


@pytest.fixture(scope="module")
def lenet5_path():
    path = default_checkpoint("lenet5")
    if path is None:
        pytest.skip("the committed lenet5 checkpoint is missing")
    return path


def real_images(n: int) -> np.ndarray:
    from mnist_core import data

    if not data.is_present():
        return np.random.default_rng(0).random((n, 1, 28, 28), dtype=np.float32)
    return data.load_mnist("test")[0][:n].numpy()[:, None].astype(np.float32) / 255


def test_cli_onnx_export_runs_in_onnxruntime_like_pytorch(lenet5_path, tmp_path, capsys):
    out = tmp_path / "lenet5.onnx"
    assert main(["export", str(lenet5_path), "--format", "onnx", "--out", str(out)]) == 0
    assert "largest logit difference" in capsys.readouterr().out
    model, meta = load_checkpoint(lenet5_path)
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["image"]
    assert [o.name for o in session.get_outputs()] == ["logits"]
    for n in (1, 32):  # the batch dimension is dynamic
        x = real_images(n)
        got = session.run(None, {"image": x})[0]
        with torch.no_grad():
            want = model(torch.from_numpy(x)).numpy()
        assert got.shape == (n, 10)
        np.testing.assert_allclose(got, want, atol=1e-4)
        assert (got.argmax(1) == want.argmax(1)).all()
    props = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert json.loads(props[export.META_KEY])["architecture"] == "lenet5" == meta["architecture"]


def test_batch_norm_and_global_pooling_export_too():
    model = create_model("cnn-strong").eval()
    with torch.no_grad():  # non-trivial running statistics, so eval-mode batch norm is really tested
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    data = export.onnx_bytes(model)
    assert export.onnx_max_difference(model, data, real_images(8)) < 1e-4


def test_bundle_round_trip_through_a_file_and_bytes(lenet5_path, tmp_path):
    model, meta = load_checkpoint(lenet5_path)
    path = export.save_bundle(model, meta, tmp_path / "lenet5.bundle.safetensors")
    for source in (path, path.read_bytes()):
        again, meta2 = export.load_bundle(source)
        assert meta2["architecture"] == "lenet5" and meta2["metrics"] == meta["metrics"]
        for key, value in model.state_dict().items():
            assert torch.equal(value, again.state_dict()[key])
        assert not again.training


def test_cli_bundle_export_is_one_file_the_upload_accepts(lenet5_path, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["export", str(lenet5_path), "--format", "bundle"]) == 0
    written = tmp_path / "lenet5.bundle.safetensors"
    assert written.is_file() and not written.with_suffix(".json").exists()
    model, meta = export.load_bundle(written.read_bytes())
    x = torch.from_numpy(real_images(4))
    original, _ = load_checkpoint(lenet5_path)
    with torch.no_grad():
        assert torch.equal(model(x), original(x))


def test_unknown_checkpoint_is_a_one_line_error(tmp_path, capsys):
    assert main(["export", str(tmp_path / "missing.safetensors")]) == 2
    assert capsys.readouterr().err.startswith("error: no checkpoint")


def _header_with(data: bytes, change) -> bytes:
    """The bundle with its safetensors header JSON edited by `change`, the tensors left as they were."""
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    change(header)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + data[8 + n:]


@pytest.fixture
def bundle() -> bytes:
    return export.bundle_bytes(create_model("mlp-50"), {"name": "tiny"})


def test_a_plain_checkpoint_without_its_sidecar_is_not_a_bundle(tmp_path):
    path = save_checkpoint(create_model("mlp-50"), {}, tmp_path / "plain.safetensors")
    with pytest.raises(CheckpointError, match="not an MNIST Lab bundle"):
        export.load_bundle(path)


@pytest.mark.parametrize("damage, message", [
    (lambda b: b[:len(b) // 2], "truncated"),
    (lambda b: b"\x80\x04\x95" + b"\0" * 64, "not a safetensors file"),  # a pickle's opening bytes
    (lambda b: b"", "empty"),
    (lambda b: _header_with(b, lambda h: h["__metadata__"].update(
        mnist_lab_meta=json.dumps({"architecture": "resnet-9000"}))), "unknown architecture"),
    (lambda b: _header_with(b, lambda h: h["__metadata__"].update(
        mnist_lab_meta=json.dumps({"architecture": "mlp-50", "run_id": "../../etc/passwd"}))), "plain name"),
    (lambda b: _header_with(b, lambda h: h["__metadata__"].update(
        mnist_lab_meta=json.dumps({"architecture": "mlp-90"}))), "does not fit mlp-90"),
    (lambda b: _header_with(b, lambda h: h["__metadata__"].update(mnist_lab_meta="{not json")), "not valid JSON"),
])
def test_damaged_or_hostile_bundles_are_refused(bundle, damage, message):
    with pytest.raises(CheckpointError, match=message):
        export.load_bundle(damage(bundle))


def test_oversized_bundles_are_refused_before_parsing(monkeypatch, bundle):
    monkeypatch.setattr(export, "MAX_UPLOAD_BYTES", len(bundle) - 1)
    with pytest.raises(CheckpointError, match="too large"):
        export.load_bundle(bundle)


HUGE = "9" * 5000  # past Python's 4,300-digit limit on int(str)


@pytest.mark.parametrize("damage, message", [
    (lambda b: _header_with(b, lambda h: h["__metadata__"].update(
        mnist_lab_meta=json.dumps({"architecture": "mlp-50", "metrics": {"test_accuracy": "__RAW__"}})
        .replace('"__RAW__"', HUGE))), "too many digits"),
    (lambda b: _header_with(b, lambda h: h["__metadata__"].update(
        mnist_lab_meta=json.dumps({"architecture": "mlp-50", "metrics": [1, 2]}))), "metrics must be"),
    (lambda b: _header_with(b, lambda h: h["__metadata__"].update(
        mnist_lab_meta=json.dumps({"architecture": "mlp-50", "metrics": {"test_accuracy": "high"}}))),
     "test_accuracy must be"),
], ids=["5000-digit-number", "metrics-a-list", "accuracy-a-string"])
def test_crafted_bundle_metadata_is_refused_in_one_line(bundle, damage, message):
    with pytest.raises(CheckpointError, match=message) as excinfo:
        export.load_bundle(damage(bundle))
    assert "\n" not in str(excinfo.value)


def test_a_5000_digit_number_in_a_bundle_header_is_refused_in_one_line(bundle):
    (n,) = struct.unpack("<Q", bundle[:8])
    text = bundle[8:8 + n].decode().replace('"data_offsets":[0,', f'"data_offsets":[{HUGE},', 1).encode()
    assert HUGE.encode() in text
    with pytest.raises(CheckpointError, match="not a safetensors file"):
        export.load_bundle(struct.pack("<Q", len(text)) + text + bundle[8 + n:])


def test_a_bundle_with_non_finite_weights_is_refused(tmp_path):
    model = create_model("mlp-50")
    with torch.no_grad():
        model.body.fc2.bias[4] = float("nan")
    path = export.save_bundle(model, {"name": "poisoned"}, tmp_path / "poisoned.bundle.safetensors")
    for source in (path, path.read_bytes()):
        with pytest.raises(CheckpointError, match="fc2.bias .*not finite"):
            export.load_bundle(source)
