"""mnist_core.training: config validation, presets, and the training loop on real MNIST.

Every loop test runs on a subset with one thread; the full-dataset run is in test_integration.py.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys

import pytest
import torch

from mnist_core.errors import ConfigError
from mnist_core.paths import REPO_ROOT
from mnist_core.training import PRESETS, TrainConfig, preset_config, torch_engine, train

SMALL = dict(threads=1, device="cpu")


# --- the config -------------------------------------------------------------------------------------

def test_the_defaults_validate():
    config = TrainConfig()
    assert config.validate() is config
    assert TrainConfig.from_dict({}) == config


@pytest.mark.parametrize("values, field", [
    ({"lr": -0.1}, "lr"),
    ({"lr": 0}, "lr"),
    ({"lr": float("nan")}, "lr"),
    ({"lr": float("inf")}, "lr"),
    ({"optimizer": "rmsprop"}, "optimizer"),
    ({"batch_size": 0}, "batch_size"),
    ({"batch_size": 100_000}, "batch_size"),
    ({"epochs": 0}, "epochs"),
    ({"momentum": 1.5}, "momentum"),
    ({"model": "resnet-152"}, "model"),
    ({"loss": "hinge"}, "loss"),
    ({"schedule": "cosine"}, "schedule"),
    ({"augment": "mixup"}, "augment"),
    ({"device": "tpu"}, "device"),
    ({"train_size": -1}, "train_size"),
    ({"seed": -1}, "seed"),
])
def test_an_out_of_range_field_is_a_config_error_naming_it(values, field):
    with pytest.raises(ConfigError) as excinfo:
        TrainConfig.from_dict(values)
    message = str(excinfo.value)
    assert re.match(rf"{field}\b", message), message
    assert "\n" not in message


@pytest.mark.parametrize("values, field", [
    ({"epochs": "three"}, "epochs"),
    ({"batch_size": 1.5}, "batch_size"),
    ({"batch_size": None}, "batch_size"),
    ({"seed": True}, "seed"),
    ({"lr": "fast"}, "lr"),
    ({"lr": [0.1]}, "lr"),
])
def test_a_value_of_the_wrong_type_is_a_config_error_naming_the_field(values, field):
    with pytest.raises(ConfigError, match=rf"^{field}: expected (int|float), got "):
        TrainConfig.from_dict(values)


def test_an_unknown_field_is_a_config_error_naming_it():
    with pytest.raises(ConfigError, match="unknown config field.*learning_rate"):
        TrainConfig.from_dict({"learning_rate": 0.1})


def test_from_dict_converts_plain_values_and_round_trips():
    config = TrainConfig.from_dict({"lr": 1, "batch_size": 64.0, "epochs": "2"})
    assert config.lr == 1.0 and isinstance(config.lr, float)
    assert config.batch_size == 64 and isinstance(config.batch_size, int)
    assert config.epochs == 2
    assert TrainConfig.from_dict(config.to_dict()) == config


def test_train_size_and_val_size_must_fit_in_the_training_set():
    with pytest.raises(ConfigError, match="train_size \\+ val_size"):
        TrainConfig.from_dict({"train_size": 58_000, "val_size": 5_000})
    TrainConfig.from_dict({"train_size": 55_000, "val_size": 5_000})


def test_validate_catches_a_config_changed_after_construction():
    config = TrainConfig()
    config.batch_size = 0
    with pytest.raises(ConfigError, match=r"^batch_size\b"):
        config.validate()


@pytest.mark.parametrize("name", list(PRESETS))
def test_every_preset_validates(name):
    preset = PRESETS[name]
    config = preset_config(name)
    assert preset.description
    for field, value in preset.overrides.items():
        assert getattr(config, field) == value


def test_preset_flags_override_the_preset_and_unknown_presets_fail():
    assert preset_config("fast", epochs=1).epochs == 1
    with pytest.raises(ConfigError, match="unknown preset"):
        preset_config("fastest")


# --- the loop --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def short_run(mnist):
    """One short training of an MLP on 2,000 images, shared by the tests that read its result."""
    config = TrainConfig.from_dict(dict(model="mlp-128-64", train_size=2000, val_size=1000, epochs=2,
                                        batch_size=64, lr=0.003, optimizer="adamw", schedule="onecycle", **SMALL))
    events = []
    result = train(config, on_event=events.append)
    return config, result, events


def test_short_training_clearly_beats_chance(short_run):
    config, result, events = short_run
    assert result.status == "completed"
    assert result.test_accuracy > 0.6, f"test accuracy {result.test_accuracy} on 2,000 training images"
    assert result.best_val_accuracy > 0.6
    assert math.isfinite(result.test_loss)
    assert not result.model.training, "the returned model is in eval mode"
    assert next(result.model.parameters()).device.type == "cpu"


def test_training_reports_train_val_and_test_rows_as_the_registry_stores_them(short_run):
    config, result, events = short_run
    steps_per_epoch = math.ceil(2000 / 64)
    total = steps_per_epoch * config.epochs
    step_events = [e for e in events if e["split"] == "train"]
    val_events = [e for e in events if e["split"] == "val"]
    test_events = [e for e in events if e["split"] == "test"]

    assert {e["split"] for e in events} == {"train", "val", "test"}
    assert all(set(e) == {"split", "step", "epoch", "loss", "accuracy", "images_per_s"} for e in events)
    assert [e["step"] for e in step_events] == list(range(1, total + 1))
    assert result.steps == total and result.status == "completed"
    for e in step_events:
        assert 0 <= e["accuracy"] <= 1 and e["images_per_s"] > 0
    assert step_events[-1]["epoch"] == pytest.approx(config.epochs)
    assert step_events[-1]["loss"] < step_events[0]["loss"]
    # eval_every=0: validate once per epoch.
    assert [e["step"] for e in val_events] == [steps_per_epoch, 2 * steps_per_epoch]
    assert len(test_events) == 1 and events[-1] is test_events[0]
    assert test_events[0]["accuracy"] == result.test_accuracy
    # The best validation weights are the ones kept.
    assert result.best_val_accuracy == max(e["accuracy"] for e in val_events)
    assert result.history == events


def test_same_seed_gives_the_same_loss_history_on_cpu(mnist):
    config = TrainConfig.from_dict(dict(model="lenet5", train_size=384, val_size=100, epochs=1, batch_size=64,
                                        eval_every=3, augment="affine", seed=7, **SMALL))

    def losses(cfg):
        events = []
        # Stop before the (identical, and slow-ish) test-set evaluation: the losses are what we compare.
        train(cfg, on_event=events.append, should_stop=lambda: len([e for e in events if e["split"] == "train"]) >= 6)
        return [(e["split"], e["step"], e["loss"]) for e in events]

    first, second = losses(config), losses(config)
    assert len([k for k, _, _ in first if k == "train"]) == 6
    assert [s for k, s, _ in first if k == "val"] == [3, 6]
    assert first == second
    other = losses(TrainConfig.from_dict({**config.to_dict(), "seed": 8}))
    assert other != first


def test_should_stop_cancels_between_steps(mnist):
    config = TrainConfig.from_dict(dict(model="mlp-50", train_size=1000, val_size=200, epochs=3, batch_size=50,
                                        **SMALL))
    events = []
    result = train(config, on_event=events.append,
                   should_stop=lambda: sum(e["split"] == "train" for e in events) >= 5)
    assert result.status == "cancelled"
    assert result.steps == 5
    assert result.test_accuracy is None and result.test_loss is None
    assert "test" not in {e["split"] for e in events}
    assert result.model is not None


@pytest.mark.parametrize("overrides", [
    dict(optimizer="sgd", schedule="none"),
    dict(optimizer="sgd-momentum", schedule="step", loss="mse-onehot"),
    dict(optimizer="adam", schedule="onecycle", augment="affine", model="cnn-small"),
    dict(optimizer="adamw", weight_decay=0.01, model="cnn-strong", val_size=0),
])
def test_every_optimizer_loss_and_schedule_trains(mnist, overrides):
    values = dict(model="mlp-50", train_size=256, val_size=64, epochs=1, batch_size=32, **SMALL)
    config = TrainConfig.from_dict({**values, **overrides})
    events = []
    result = train(config, on_event=events.append,
                   should_stop=lambda: sum(e["split"] == "train" for e in events) >= 3)
    losses = [e["loss"] for e in events if e["split"] == "train"]
    assert result.steps == 3 and all(math.isfinite(x) for x in losses)


def test_a_diverging_run_is_a_config_error(mnist, monkeypatch):
    monkeypatch.setattr(torch_engine, "compute_loss",
                        lambda config, logits, labels: (logits * torch.tensor(float("nan"))).sum())
    config = TrainConfig.from_dict(dict(model="mlp-50", train_size=100, val_size=10, epochs=1, batch_size=50,
                                        **SMALL))
    with pytest.raises(ConfigError, match="diverged.*smaller lr"):
        train(config)


def test_a_run_of_a_few_steps_trains_with_the_onecycle_schedule(mnist):
    config = TrainConfig(model="mlp-50", train_size=40, val_size=20, batch_size=10, epochs=1, schedule="onecycle",
                         threads=1)
    result = train(config)
    assert result.status == "completed" and result.steps == 4


# --- warm_up: what a process that forks workers loads once ---------------------------------------------

WARM_PROBE = """
import json, sys
from pathlib import Path

def os_threads():
    status = Path("/proc/self/status").read_text().splitlines()
    return int(next(line for line in status if line.startswith("Threads:")).split()[1])

import torch
torch.set_num_threads(1)
from mnist_core import data, kernels, training
before = os_threads()
training.warm_up()
seen = {"threads_before": before, "threads_after": os_threads(), "kernels": kernels.available(),
        "kernels_mapped": "lenet5-" in Path("/proc/self/maps").read_text(),
        "data_cached": data.load_mnist.cache_info().currsize}
modules = set(sys.modules)
training.train(training.TrainConfig(model="lenet5", train_size=128, val_size=64, epochs=1, batch_size=64,
                                    threads=1, device="cpu"))
seen["first_run_imported"] = sorted(set(sys.modules) - modules)
print(json.dumps(seen))
"""


def test_after_warm_up_a_processes_first_run_imports_nothing_and_no_thread_was_started(mnist):
    """What a worker forked from a warm template inherits: its first train() imports nothing (not
    torch._dynamo's ~900 modules, which the first optimizer would import), the kernels and the data
    are loaded, and warming up started no thread (forking after it is safe)."""
    done = subprocess.run([sys.executable, "-c", WARM_PROBE], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["first_run_imported"] == []
    assert seen["threads_after"] == seen["threads_before"]
    assert seen["kernels_mapped"] == seen["kernels"]  # loaded by warm_up where they can be (not with MNIST_KERNELS=0)
    assert seen["data_cached"] == 2  # the training and test sets
