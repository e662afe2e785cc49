"""The Train form's words and checks (mnist_core.form): every wrong value gets a plain sentence next to
its field before any run exists, and only what can run here is offered."""

import pytest

from mnist_core import form
from mnist_core.errors import ConfigError
from mnist_core.training import TrainConfig


def good(**changes) -> dict:
    values = TrainConfig().to_dict()
    values.update(changes)
    return values


@pytest.mark.parametrize("field, value, sentence", [
    ("lr", 0.0, "learning rate must be above 0"),
    ("lr", -1.0, "learning rate must be above 0"),
    ("lr", 50.0, "learning rate must be at most 10"),
    ("batch_size", 0, "batch size must be at least 1"),
    ("epochs", 1000, "epochs must be at most 200"),
    ("train_size", -5, "training images must be at least 0"),
    ("val_size", -1, "validation images must be at least 0"),
    ("momentum", float("nan"), "momentum must be a number"),
    ("epochs", 2.5, "epochs must be a whole number"),
])
def test_an_out_of_range_value_gets_a_plain_sentence(field, value, sentence):
    assert form.problems(good(**{field: value})) == {field: sentence}


def test_a_valid_form_has_no_problems():
    assert form.problems(good()) == {}
    assert form.problems(good(**form.FIRST_RUN)) == {}


def test_cross_field_rules_are_told_in_the_readers_words():
    found = form.problems(good(train_size=58_000, val_size=5_000))
    assert list(found) == ["train_size"]
    assert "training images + validation images must be at most 60,000" in found["train_size"]
    assert "_" not in found["train_size"]


def test_the_numpy_engine_with_a_conv_model_is_refused_before_a_run_exists():
    found = form.problems(good(backend="numpy", model="lenet5", optimizer="sgd", schedule="none"))
    assert list(found) == ["model"] and "numpy backend supports mlp-50" in found["model"]


def test_only_devices_this_machine_has_are_offered(monkeypatch):
    monkeypatch.setattr(form, "available_devices", lambda: ("auto", "cpu"))
    assert form.choices("device") == ("auto", "cpu")
    assert form.problems(good(device="cuda")) == {"device": "device: cuda is not available on this server"}


def test_labels_are_in_the_readers_words_and_help_keeps_the_config_name():
    assert form.label("lr") == "learning rate"
    assert form.label("eval_every") == "validate every N steps (0 = once per epoch)"
    assert form.label("threads") == "CPU threads (0 = one per core that others leave free)"
    assert "`eval_every`" in form.help_text("eval_every") and "`--eval-every`" in form.help_text("eval_every")
    assert all("_" not in form.label(f.name) for f in TrainConfig.fields())


def test_a_phone_sees_the_important_fields_first_and_every_field_once():
    assert form.PRIMARY == ("model", "lr", "epochs", "batch_size")
    assert sorted([*form.PRIMARY, *form.ADVANCED]) == sorted(f.name for f in TrainConfig.fields())


def test_the_live_panels_config_line_uses_the_forms_words():
    line = form.config_line(good(lr=0.01))
    assert line.startswith("model lenet5 · learning rate 0.01 · epochs 3 · batch size 128 · ")
    assert "training images all · validation images 5,000 · validate once per epoch" in line
    assert "validate every 100 steps" in form.config_line(good(eval_every=100))


def test_every_count_is_written_with_thousands_separators_the_same_way():
    """Seen: "validation images 2000" beside "training images 20,000" on the same line."""
    line = form.config_line(good(train_size=20_000, val_size=2_000, eval_every=1_500))
    assert "training images 20,000 · validation images 2,000 · validate every 1,500 steps" in line
    assert "Allowed: 1 to 8,192." in form.help_text("batch_size")


def test_an_out_of_range_sweep_value_is_told_in_the_forms_words_not_the_configs():
    """Seen on the Sweep tab: "seed: -1 is outside the allowed range 0 to 2147483647". A config's range
    error and the form's sentence are worded in one place: the form's words, then the value."""
    with pytest.raises(ConfigError) as refused:
        TrainConfig.from_dict(good(seed=-1))
    said = form.plain(str(refused.value))
    assert said == "random seed must be at least 0, not -1"
    assert said.startswith(form.problems(good(seed=-1))["seed"])
    with pytest.raises(ConfigError) as refused:
        TrainConfig.from_dict(good(val_size=40_000))
    assert form.plain(str(refused.value)) == "validation images must be at most 30,000, not 40,000"


def test_the_starting_values_are_admitted_on_a_public_demo_too(monkeypatch):
    monkeypatch.setenv("MNIST_DEMO", "1")
    assert form.problems(good(**form.FIRST_RUN)) == {}
    assert "this demo allows" in form.problems(good(epochs=50))["epochs"]


def test_more_threads_than_cores_is_refused_next_to_the_field(monkeypatch):
    from mnist_core import limits

    monkeypatch.setattr(limits, "host_cores", lambda: 2)
    assert form.problems(good(threads=8)) == {
        "threads": "CPU threads: this machine has 2 core(s); ask for at most 2 (0 = one per core)"}
