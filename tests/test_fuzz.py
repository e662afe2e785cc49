"""Property-based fuzzing (hypothesis) of everything that takes outside input: the checkpoint loader
(files, uploads, bundles), load_image, canvas_to_mnist and config validation. Each must either succeed or
raise the package's own one-line error; nothing else may escape."""

from __future__ import annotations

import io
import json
import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image

from mnist_core import export
from mnist_core.checkpoints import load_checkpoint, load_uploaded_checkpoint, save_checkpoint
from mnist_core.errors import CheckpointError, ConfigError, ImageError
from mnist_core.models import create_model
from mnist_core.preprocess import canvas_to_mnist, load_image
from mnist_core.training import TrainConfig

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                       HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def good_checkpoint(tmp_path_factory):
    path = save_checkpoint(create_model("mlp-50"), {"config": {}}, tmp_path_factory.mktemp("fuzz") / "m.safetensors")
    return path.read_bytes(), path.with_suffix(".json").read_bytes()


def one_line(exc: Exception) -> bool:
    return bool(str(exc)) and "\n" not in str(exc)


@FUZZ
@given(data=st.data())
def test_checkpoint_loader_survives_mutated_weights(good_checkpoint, data):
    weights, sidecar = good_checkpoint
    buf = bytearray(weights)
    for _ in range(data.draw(st.integers(1, 8))):
        i = data.draw(st.integers(0, len(buf) - 1))
        buf[i] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(buf)))
    try:
        model, meta = load_uploaded_checkpoint(bytes(buf[:cut] if data.draw(st.booleans()) else buf), sidecar)
    except CheckpointError as exc:
        assert one_line(exc)
    else:  # a flipped byte inside the weights' data is still a valid checkpoint
        assert meta["architecture"] == "mlp-50" and model(torch.zeros(1, 1, 28, 28)).shape == (1, 10)


@FUZZ
@given(weights=st.binary(max_size=4096), sidecar=st.binary(max_size=512))
def test_checkpoint_loader_survives_random_bytes(weights, sidecar):
    with pytest.raises(CheckpointError) as excinfo:
        load_uploaded_checkpoint(weights, sidecar)
    assert one_line(excinfo.value)


json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30)
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=5)
                           | st.dictionaries(st.text(max_size=10), inner, max_size=5), max_leaves=20)


@FUZZ
@given(extra=st.dictionaries(st.text(max_size=12), json_values, max_size=6),
       arch=st.sampled_from(["mlp-50", "lenet5", "../mlp-50", "", "mlp-50\x00"]) | st.text(max_size=20))
def test_checkpoint_loader_survives_any_sidecar(good_checkpoint, extra, arch):
    weights, _ = good_checkpoint
    sidecar = json.dumps({**extra, "architecture": arch}).encode()
    try:
        load_uploaded_checkpoint(weights, sidecar)
    except CheckpointError as exc:
        assert one_line(exc)
    else:
        assert arch == "mlp-50"


# Values a crafted sidecar can hold where the pages expect numbers: raw JSON text, since json.dumps
# cannot write NaN as JSON has it nor an integer past Python's 4,300-digit limit.
raw_numbers = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(lambda f: json.dumps(f)),
    st.integers().map(str),
    st.integers(4000, 6000).map(lambda digits: "9" * digits),
    st.sampled_from(["NaN", "Infinity", "-Infinity", "1e999", "true", "null", '"0.99"', "[0.5]", "{}", '"x"']),
)


def acceptable_metrics(metrics) -> bool:
    """What the pages can show: finite numbers or null, accuracies as fractions."""
    return isinstance(metrics, dict) and all(
        v is None or (type(v) in (int, float) and math.isfinite(v) and (not k.endswith("accuracy") or 0 <= v <= 1))
        for k, v in metrics.items())


@FUZZ
@given(values=st.dictionaries(st.sampled_from(["test_accuracy", "best_val_accuracy", "test_loss", "steps", "x"]),
                              raw_numbers, max_size=4),
       where=st.sampled_from(["metrics", "config", "format_version", "run_id"]))
def test_checkpoint_loader_survives_crafted_numbers_in_any_field(good_checkpoint, tmp_path_factory, values, where):
    weights, _ = good_checkpoint
    inner = "{" + ", ".join(f"{json.dumps(k)}: {v}" for k, v in values.items()) + "}"
    field = inner if where in ("metrics", "config") else (next(iter(values.values()), "1"))
    sidecar = f'{{"architecture": "mlp-50", {json.dumps(where)}: {field}}}'.encode()
    folder = tmp_path_factory.mktemp("crafted")
    (folder / "m.safetensors").write_bytes(weights)
    (folder / "m.json").write_bytes(sidecar)
    for load in (lambda: load_uploaded_checkpoint(weights, sidecar), lambda: load_checkpoint(folder / "m.safetensors")):
        try:
            _, meta = load()
        except CheckpointError as exc:
            assert one_line(exc) and str(folder) not in str(exc)
        else:
            assert acceptable_metrics(meta.get("metrics") or {})


@pytest.fixture(scope="module")
def good_bundle():
    return export.bundle_bytes(create_model("mlp-50"), {"metrics": {"test_accuracy": 0.5}})


@FUZZ
@given(data=st.data())
def test_bundle_loader_survives_mutated_bundles(good_bundle, data):
    buf = bytearray(good_bundle)
    header_end = 8 + int.from_bytes(good_bundle[:8], "little")
    for _ in range(data.draw(st.integers(1, 8))):  # mostly in the header, where the metadata is
        i = data.draw(st.integers(0, header_end - 1) if data.draw(st.booleans()) else st.integers(0, len(buf) - 1))
        buf[i] = data.draw(st.integers(0, 255))
    try:
        model, meta = export.load_bundle(bytes(buf))
    except CheckpointError as exc:
        assert one_line(exc)
    else:
        assert acceptable_metrics(meta.get("metrics") or {})
        assert all(p.isfinite().all() for p in model.parameters())


def encoded(array: np.ndarray, fmt: str) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format=fmt)
    return buf.getvalue()


@FUZZ
@given(data=st.data(), fmt=st.sampled_from(["PNG", "GIF", "BMP", "JPEG", "WEBP"]))
def test_load_image_survives_mutated_files(data, fmt):
    h, w = data.draw(st.integers(1, 40)), data.draw(st.integers(1, 40))
    image = data.draw(arrays(np.uint8, (h, w)))
    buf = bytearray(encoded(image, fmt))
    for _ in range(data.draw(st.integers(0, 6))):
        i = data.draw(st.integers(0, len(buf) - 1))
        buf[i] = data.draw(st.integers(0, 255))
    buf = buf[:data.draw(st.integers(0, len(buf)))]
    try:
        rgba = load_image(bytes(buf))
    except ImageError as exc:
        assert one_line(exc)
    else:
        assert rgba.dtype == np.uint8 and rgba.ndim == 3 and rgba.shape[2] == 4


@FUZZ
@given(payload=st.binary(max_size=2048))
def test_load_image_survives_random_bytes(payload):
    try:
        rgba = load_image(payload)
    except ImageError as exc:
        assert one_line(exc)
    else:
        assert rgba.shape[2] == 4


@FUZZ
@given(canvas=arrays(np.uint8, st.tuples(st.integers(1, 64), st.integers(1, 64), st.just(4))))
def test_canvas_to_mnist_always_gives_a_28x28_image_in_range(canvas):
    out = canvas_to_mnist(canvas)
    assert out.shape == (28, 28) and out.dtype == np.float32
    assert np.isfinite(out).all() and out.min() >= 0.0 and out.max() <= 1.0


config_values = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=True),
                          st.text(max_size=12), st.sampled_from(["lenet5", "adamw", "onecycle", "numpy", "auto"]))


@FUZZ
@given(values=st.dictionaries(st.sampled_from([f.name for f in TrainConfig.fields()] + ["bogus"]), config_values,
                              max_size=6))
def test_config_validation_accepts_or_names_the_field(values):
    try:
        config = TrainConfig.from_dict(values)
    except ConfigError as exc:
        assert one_line(exc)
        field = str(exc).split(":")[0]
        assert any(name in field for name in [f.name for f in TrainConfig.fields()] + ["unknown config", "train_size"])
    else:
        assert config.validate() is config
