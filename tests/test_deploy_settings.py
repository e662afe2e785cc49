"""A host deploys with exactly the settings DEPLOY.md suggests, and a first visitor meets no refusal.

The settings are read from DEPLOY.md itself (the `KEY = "value"` lines of its Secrets block), so the
document and the code cannot drift apart: with them, the Train form's starting values, every preset
and the Sweep tab's default either run or say why not before anyone picks them, and the pickers
offer only what the host allows.
"""

import pytest

from harness import deploy_settings
from mnist_core import form, limits, sweeps
from mnist_core.errors import ConfigError
from mnist_core.training import PRESETS, TrainConfig, admit

from apptest_util import messages, open_page


@pytest.fixture
def deployed(monkeypatch) -> dict[str, str]:
    settings = deploy_settings()
    for key, value in settings.items():
        monkeypatch.setenv(key, value)
    return settings


def test_deploy_md_suggests_the_public_demo_bounds():
    settings = deploy_settings()
    assert settings["MNIST_DEMO"] == "1"
    assert {"MNIST_MAX_EPOCHS", "MNIST_MAX_TRAIN_IMAGES", "MNIST_ALLOWED_MODELS", "MNIST_MAX_QUEUED_PER_OWNER"} \
        <= set(settings)


def test_the_starting_values_are_admitted_and_say_what_was_fitted(deployed):
    first = form.first_run()
    assert first.unavailable is None
    admit(TrainConfig.from_dict(first.values))
    bounds = limits.current()
    assert first.values["epochs"] <= bounds.max_epochs and 0 < first.values["train_size"] <= bounds.max_train_images
    for name in ("epochs", "train_size"):  # each value the bounds changed is said, next to its bound
        if first.values[name] != form.FIRST_RUN[name]:
            assert any(note.startswith(f"{form.noun(name)} {first.values[name]:,}: this demo allows at most")
                       for note in first.notes), first.notes


def test_every_preset_is_admitted_or_said_unavailable_with_its_reason(deployed):
    for name in PRESETS:
        offer = form.preset(name)
        if offer.unavailable:
            assert "this demo allows" in offer.unavailable, (name, offer.unavailable)
            with pytest.raises(ConfigError):
                admit(TrainConfig.from_dict(offer.values))
        else:
            admit(TrainConfig.from_dict(offer.values))
    assert form.preset("best").unavailable.startswith("model cnn-strong: this demo allows lenet5")
    assert not form.preset("fast").unavailable


def test_the_default_sweep_can_launch(deployed):
    default = form.sweep_default()
    spec = sweeps.SweepSpec(form.first_run().values, (sweeps.Param(default.name, values=default.values),))
    plan = sweeps.plan(spec, owner="a-first-visitor", all_runs=[])
    assert 2 <= len(plan.runs) <= int(deployed["MNIST_MAX_QUEUED_PER_OWNER"])


def test_the_model_picker_offers_only_the_models_the_demo_allows(deployed):
    allowed = deployed["MNIST_ALLOWED_MODELS"].split(",")
    assert set(form.choices("model")) == set(allowed)
    assert "cnn-strong" not in form.choices("model")


def test_a_first_visitors_train_page_can_start_at_once(deployed):
    at = open_page("app_pages/train.py")
    assert not at.exception and not at.error, messages(at)
    start = next(b for b in at.button if b.label == "Start training")
    assert not start.disabled
    assert not [m.value for m in at.markdown if m.value.startswith(":red[")]
    tip = next(c.value for c in at.caption if "First time here?" in c.value)
    bounds = limits.current()
    assert f"on {bounds.max_train_images:,} images for {bounds.max_epochs} epochs" in tip
    assert "20,000" not in tip
    assert "cnn-strong" not in at.selectbox(key="cfg_model").options
    assert "best" not in at.selectbox(key="preset").options
    assert any("Not on this server: best (model cnn-strong: this demo allows" in c.value for c in at.caption)
    launch = next(b for b in at.button if b.key == "sweep_launch")
    assert not launch.disabled, messages(at)


def test_every_preset_offered_on_the_page_fills_in_a_form_that_can_start(deployed):
    at = open_page("app_pages/train.py")
    offered = [p for p in at.selectbox(key="preset").options if p != "(custom)"]
    assert offered
    for name in offered:
        at.selectbox(key="preset").set_value(name).run()
        assert not at.exception and not at.error, (name, messages(at))
        assert not next(b for b in at.button if b.label == "Start training").disabled, name
        assert at.selectbox(key="preset").value == name  # the fitted recipe is still that preset


def test_tighter_bounds_than_deploys_are_fitted_with_a_word_too(deployed, monkeypatch):
    """A host that bounds the steps or the validation work more tightly: fewer epochs, a smaller
    validation set, each change said; never a refusal the form could have avoided."""
    monkeypatch.setenv("MNIST_MAX_STEPS", "100")
    monkeypatch.setenv("MNIST_MAX_VAL_IMAGES", "3000")
    fast = form.preset("fast")  # 10,000 images in batches of 192: 53 steps an epoch
    assert fast.values["epochs"] == 1
    assert "epochs 1 (53 steps an epoch; this demo allows at most 100 steps a run)" in fast.fitted_text()
    first = form.first_run()  # batches of 32: 313 steps, more than 100 in one epoch; 2 validations of 2,000
    assert first.unavailable is None
    assert (first.values["epochs"], first.values["batch_size"], first.values["val_size"]) == (1, 100, 1500)
    assert "validation images 1,500 (2 validations; this demo allows at most 3,000" in first.fitted_text()
    admit(TrainConfig.from_dict(first.values))
