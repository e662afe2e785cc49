"""Train page (AppTest): the form says what is wrong before anything runs, a launched run completes, the
live panel tells the truth about how a run ended, who may change a run, which run is watched."""

import json
import os

import pytest

from mnist_core import form, registry
from mnist_core.training import PRESETS, TrainConfig

from apptest_util import messages, open_page


@pytest.fixture
def fresh_dirs(tmp_path, monkeypatch):
    monkeypatch.setenv("MNIST_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("MNIST_CHECKPOINT_DIR", str(tmp_path / "checkpoints"))
    return tmp_path


def ended_run(wait_for, timeout: float = 120) -> registry.Run:
    """The newest run, once it has ended."""
    return wait_for(lambda: next((r for r in registry.list_runs()[-1:] if not r.is_live), None), timeout,
                    what="the run to end")


def start_button(at):
    return next(b for b in at.button if b.label == "Start training")


def red_sentences(at) -> list[str]:
    return [m.value for m in at.markdown if m.value.startswith(":red[")]


def finished_run(status="completed", owner=None, **result) -> str:
    run_id = registry.create_run(TrainConfig(epochs=1, train_size=1000).to_dict(), owner=owner)
    registry.mark_running(run_id, total_steps=8)
    registry.add_metrics(run_id, [{"split": "train", "step": s, "epoch": s / 8, "loss": 2.3 / s, "accuracy": 0.5,
                                   "images_per_s": 1000.0} for s in range(1, 9)])
    registry.finish_run(run_id, status, **result)
    return run_id


# --- the form ----------------------------------------------------------------------------------

def test_form_starts_with_a_run_worth_watching_and_every_field_in_plain_words(fresh_dirs):
    at = open_page("app_pages/train.py")
    assert not at.exception, messages(at)
    for f in TrainConfig.fields():
        widget = at.selectbox(key=f"cfg_{f.name}") if f.metadata["choices"] else at.number_input(key=f"cfg_{f.name}")
        assert widget.value == form.FIRST_RUN.get(f.name, f.default)
        assert widget.label == form.label(f.name) and f"`{f.name}`" in widget.help
    assert at.number_input(key="cfg_lr").label == "learning rate"
    assert set(PRESETS) <= set(at.selectbox(key="preset").options)
    assert any("First time here?" in c.value for c in at.caption)
    assert any("No runs yet" in i.value for i in at.info)


def test_choosing_a_preset_fills_in_the_form(fresh_dirs):
    at = open_page("app_pages/train.py")
    at.selectbox(key="preset").set_value("tutorial-lenet5").run()
    assert not at.exception, messages(at)
    assert at.number_input(key="cfg_lr").value == pytest.approx(0.2)
    assert at.number_input(key="cfg_train_size").value == 2600
    assert at.selectbox(key="cfg_optimizer").value == "sgd"
    assert "Article's result" in " ".join(c.value for c in at.caption)


def test_a_preset_changes_its_recipe_never_the_threads_or_the_device(fresh_dirs):
    at = open_page("app_pages/train.py")
    assert at.number_input(key="cfg_threads").value == 1  # the form's first run: one thread
    at.selectbox(key="preset").set_value("fast").run()
    assert not at.exception, messages(at)
    assert at.number_input(key="cfg_lr").value == pytest.approx(0.02)
    assert at.number_input(key="cfg_threads").value == 1
    assert at.selectbox(key="preset").value == "fast"  # still that recipe: the threads are not part of it


def test_changing_a_field_after_a_preset_says_custom_and_drops_the_articles_caption(fresh_dirs):
    """The form no longer is the recipe, so it must not be named after it (a run of 8,000 images
    under a box saying tutorial-lenet5 and its caption "2,600 train" would misstate it)."""
    at = open_page("app_pages/train.py")
    at.selectbox(key="preset").set_value("tutorial-lenet5").run()
    at.number_input(key="cfg_train_size").set_value(8000).run()
    assert not at.exception, messages(at)
    assert at.selectbox(key="preset").value == "(custom)"
    assert not [c for c in at.caption if "Article's result" in c.value]
    assert at.number_input(key="cfg_train_size").value == 8000 and at.number_input(key="cfg_lr").value == 0.2


def test_model_picker_shows_layers_and_parameters(fresh_dirs):
    at = open_page("app_pages/train.py")
    at.selectbox(key="cfg_model").set_value("cnn-small").run()
    assert any("cnn-small · 21,578 parameters" in e.label for e in at.expander)
    assert not [c for c in at.caption if "fused C kernel" in c.value]


def test_lenet5_says_whether_its_fused_kernels_are_in_use(fresh_dirs):
    from mnist_core import kernels

    at = open_page("app_pages/train.py")
    at.selectbox(key="cfg_model").set_value("lenet5").run()
    assert not at.exception, messages(at)
    (caption,) = [c.value for c in at.caption if "fused C kernel" in c.value]
    assert caption.endswith(f": {kernels.status()}.")


@pytest.mark.parametrize("key, value, sentence", [
    ("cfg_lr", 0.0, "learning rate must be above 0"),
    ("cfg_batch_size", 0, "batch size must be at least 1"),
    ("cfg_epochs", 1000, "epochs must be at most 200"),
    ("cfg_val_size", -1, "validation images must be at least 0"),
])
def test_an_out_of_range_value_stays_typed_says_why_and_blocks_start(fresh_dirs, key, value, sentence):
    at = open_page("app_pages/train.py")
    at.number_input(key=key).set_value(value)
    start_button(at).click().run()  # typed and Start pressed at once: the click leaves the field
    assert not at.exception, messages(at)
    assert registry.list_runs() == []
    assert at.number_input(key=key).value == value  # what was typed, not a silently kept older value
    assert red_sentences(at) == [f":red[{sentence}]"]
    assert start_button(at).disabled


def test_epochs_typed_as_2_5_stay_2_5_and_are_refused_not_trained_as_2(fresh_dirs):
    """Seen: 2.5 typed in epochs became 2 without a word (an integer widget rounds what it is sent)."""
    at = open_page("app_pages/train.py")
    at.number_input(key="cfg_epochs").set_value(2.5)
    start_button(at).click().run()
    assert not at.exception, messages(at)
    assert registry.list_runs() == []
    assert at.number_input(key="cfg_epochs").value == 2.5
    assert red_sentences(at) == [":red[epochs must be a whole number]"]
    assert start_button(at).disabled


def test_a_cross_field_problem_is_told_in_the_readers_words_and_starts_nothing(fresh_dirs):
    at = open_page("app_pages/train.py")
    at.number_input(key="cfg_train_size").set_value(59_000).run()
    assert not at.exception, messages(at)
    (sentence,) = red_sentences(at)
    assert "training images + validation images must be at most 60,000" in sentence and "_" not in sentence
    assert start_button(at).disabled
    assert registry.list_runs() == []


def test_the_numpy_engine_with_a_conv_model_is_refused_before_a_run_exists(fresh_dirs):
    at = open_page("app_pages/train.py")
    at.selectbox(key="cfg_backend").set_value("numpy").run()
    assert not at.exception, messages(at)
    assert any("numpy backend supports mlp-50" in s for s in red_sentences(at)), red_sentences(at)
    assert start_button(at).disabled


def test_only_devices_this_machine_has_are_offered(fresh_dirs):
    import torch

    at = open_page("app_pages/train.py")
    offered = at.selectbox(key="cfg_device").options
    assert ("cuda" in offered) == torch.cuda.is_available()
    assert {"auto", "cpu"} <= set(offered)


def test_the_form_keeps_its_values_when_you_leave_and_come_back(fresh_dirs):
    at = open_page("app_pages/train.py")
    at.selectbox(key="preset").set_value("tutorial-cnn").run()
    at.number_input(key="cfg_epochs").set_value(2).run()
    at.switch_page("app_pages/home.py").run()
    at.switch_page("app_pages/train.py").run()
    assert not at.exception, messages(at)
    assert at.number_input(key="cfg_epochs").value == 2
    assert at.selectbox(key="cfg_model").value == "cnn-small"
    assert at.selectbox(key="preset").value == "(custom)"  # 2 epochs is no longer tutorial-cnn's recipe


def advanced(at):
    return next(e for e in at.expander if e.label.startswith("Advanced"))


def test_fixing_a_wrong_value_under_advanced_leaves_the_section_open(fresh_dirs):
    """Drawn open only while the problem lasted, the section folded away as the value was fixed."""
    at = open_page("app_pages/train.py")
    assert not advanced(at).proto.expanded
    at.number_input(key="cfg_val_size").set_value(-1).run()
    assert red_sentences(at) and advanced(at).proto.expanded  # opened: the sentence is inside
    at.number_input(key="cfg_val_size").set_value(1000).run()
    assert not red_sentences(at), red_sentences(at)
    assert advanced(at).proto.expanded


def test_the_form_says_how_long_the_run_will_take_before_start(fresh_dirs):
    at = open_page("app_pages/train.py")
    (caption,) = [c.value for c in at.caption if c.value.startswith("Training time: ")]
    assert caption.endswith("(no finished lenet5 run to go by: assumed 3,000 images/s), once it starts.")
    at.number_input(key="cfg_lr").set_value(0.0).run()  # no estimate for a run that cannot start
    assert not [c.value for c in at.caption if c.value.startswith("Training time: ")]


# --- a real run --------------------------------------------------------------------------------

def test_launched_run_completes_with_its_config_and_the_checkpoints_file_name(fresh_dirs, wait_for):
    at = open_page("app_pages/train.py")
    at.selectbox(key="cfg_model").set_value("mlp-128-64")
    at.number_input(key="cfg_train_size").set_value(2000)
    at.number_input(key="cfg_epochs").set_value(1)
    at.number_input(key="cfg_val_size").set_value(0)
    at.number_input(key="cfg_threads").set_value(1)
    start_button(at).click().run()
    assert not at.exception, messages(at)
    assert [t.value for t in at.toast] == [f"Started run {registry.list_runs()[0].id}"]
    run = ended_run(wait_for)
    assert run.status == "completed", run.error
    assert run.owner == at.session_state["visitor_token"]

    at.run()
    assert not at.exception, messages(at)
    (success,) = [s.value for s in at.success if "Test accuracy" in s.value]
    assert f"{run.test_accuracy:.2%}" in success
    assert "best validation" not in success  # no validation set: no "(best validation 0.00%)"
    assert f"`{os.path.basename(run.checkpoint)}`" in success and str(fresh_dirs) not in success
    assert any(c.value.startswith("Config: model mlp-128-64 · learning rate 0.003 · epochs 1 · batch size 32")
               for c in at.caption)
    table = at.dataframe[-1].value
    assert list(table["run"]) == [run.id] and list(table["status"]) == ["completed"]
    assert "None" not in table.astype(str).to_numpy().ravel().tolist()
    assert list(table["best validation"]) == ["–"]
    # the checkpoint the page names is on disk, the run's only one (the always-true `assert glob(...)` it replaces)
    saved = sorted(p.name for p in (fresh_dirs / "checkpoints").glob("mlp-128-64-*.safetensors"))
    assert saved == [os.path.basename(run.checkpoint)] == [f"mlp-128-64-{run.id}.safetensors"]


def test_cancel_button_cancels_a_live_run(fresh_dirs, wait_for):
    at = open_page("app_pages/train.py")
    at.number_input(key="cfg_epochs").set_value(50)  # long enough to still be running when we cancel
    at.number_input(key="cfg_threads").set_value(1)
    start_button(at).click().run()
    run_id = registry.list_runs()[-1].id
    wait_for(lambda: registry.get_run(run_id).status == "running", 60, what="the run to start")
    at.run()
    next(b for b in at.button if b.label == "Cancel").click().run()
    assert not at.exception, messages(at)
    assert ended_run(wait_for, 60).status == "cancelled"
    at.run()
    assert any("cancelled" in w.value for w in at.warning), messages(at)


# --- how a run ended ---------------------------------------------------------------------------

def test_failed_run_shows_its_error_text_not_a_traceback_or_a_server_path(fresh_dirs):
    run_id = registry.create_run(TrainConfig(epochs=1).to_dict())
    registry.finish_run(run_id, "failed", error="cannot write /srv/lab/checkpoints/x.safetensors: disk full")
    at = open_page("app_pages/train.py")
    assert not at.exception, messages(at)
    assert any("cannot write x.safetensors: disk full" in e.value for e in at.error), messages(at)
    assert "/srv/lab" not in json.dumps(messages(at))
    assert list(at.dataframe[-1].value["status"]) == ["failed"]


def test_a_run_that_ended_near_chance_gets_a_warning_not_a_success(fresh_dirs):
    finished_run(test_accuracy=0.1135, test_loss=2.3, best_val_accuracy=0.1, checkpoint="/x/lenet5-a.safetensors")
    at = open_page("app_pages/train.py")
    assert not at.exception, messages(at)
    assert not [s for s in at.success if "Test accuracy" in s.value], messages(at)
    assert any("close to guessing" in w.value and "11.35%" in w.value for w in at.warning), messages(at)


# --- who may change a run, and which run is watched --------------------------------------------

def test_delete_asks_for_confirmation_first(fresh_dirs):
    at = open_page("app_pages/train.py")
    run_id = finished_run(owner=at.session_state["visitor_token"], test_accuracy=0.9)
    at.run()
    assert not at.exception, messages(at)
    assert [b.label for b in at.button if b.label.startswith("Delete")] == []  # only the popover's label
    (confirm,) = [b for b in at.button if b.label == "Yes, delete it"]
    assert registry.list_runs()[0].id == run_id  # showing the question deleted nothing
    confirm.click().run()
    assert not at.exception, messages(at)
    assert registry.list_runs() == []


def test_a_run_started_from_the_command_line_is_read_only_on_the_page(fresh_dirs):
    run_id = registry.create_run(TrainConfig(epochs=50).to_dict(), owner=None)
    registry.mark_running(run_id, total_steps=100)  # this process stands in for its worker
    try:
        at = open_page("app_pages/train.py")
        assert not at.exception, messages(at)
        (cancel,) = [b for b in at.button if b.label == "Cancel"]
        assert cancel.disabled and "command line" in cancel.help
    finally:
        registry.finish_run(run_id, "cancelled")


def test_a_second_run_is_queued_and_the_toast_says_so_and_either_can_be_watched(fresh_dirs, monkeypatch):
    monkeypatch.setenv("MNIST_MAX_CONCURRENT", "1")
    other = registry.create_run(TrainConfig(epochs=50).to_dict(), owner="someone-else")
    registry.mark_running(other, total_steps=100)  # a slot taken by another visitor's run
    try:
        at = open_page("app_pages/train.py")
        start_button(at).click().run()
        assert not at.exception, messages(at)
        mine = registry.list_runs()[-1].id
        assert [t.value for t in at.toast] == [f"Queued run {mine}: number 1 in line"]
        watching = at.selectbox(key="watch_pick")
        assert watching.value == mine
        assert watching.options == [f"{mine} · lenet5 · queued · yours", f"{other} · lenet5 · running"]
        assert any(h.value.startswith(f"Run {mine} ·") for h in at.subheader)
        watching.set_value(other).run()
        assert any(h.value.startswith(f"Run {other} ·") for h in at.subheader), [h.value for h in at.subheader]
        assert next(b for b in at.button if b.label == "Cancel").disabled  # not this visitor's run
    finally:
        for run_id in (r.id for r in registry.list_runs() if r.is_live):
            registry.request_cancel(run_id)
        registry.finish_run(other, "cancelled")


# --- charts ------------------------------------------------------------------------------------

@pytest.fixture
def live_run(fresh_dirs):
    """A run 10 steps into 40, with its train rows (loss 2.3 / step) and one validation at step 10."""
    run_id = registry.create_run(TrainConfig(epochs=1, train_size=1000).to_dict())
    registry.mark_running(run_id, total_steps=40)
    registry.add_metrics(run_id, [{"split": "train", "step": s, "epoch": s / 40, "loss": 2.3 / s, "accuracy": 0.5,
                                   "images_per_s": 1000.0} for s in range(1, 11)])
    registry.add_metrics(run_id, [{"split": "val", "step": 10, "epoch": 0.25, "loss": 0.04, "accuracy": 0.9}])
    yield run_id
    registry.finish_run(run_id, "cancelled")


def test_on_a_phone_the_charts_legends_keep_the_validation_series(live_run):
    """Seen on a Pixel 7: the legend under each live chart wrapped to a second row, which the chart's fixed
    margin cut off, and with it the validation series. Above the plot, it has a row for each entry."""
    at = open_page("app_pages/train.py")
    assert not at.exception, messages(at)
    specs = {s["layout"]["title"]["text"]: s for s in (json.loads(c.proto.spec) for c in at.get("plotly_chart"))}
    assert {"validation loss", "validation accuracy"} <= {t["name"] for s in specs.values() for t in s["data"]}
    for spec in specs.values():
        legend, margin = spec["layout"]["legend"], spec["layout"]["margin"]
        assert legend["yanchor"] == "bottom" and legend["y"] >= 1  # above the plot, growing upwards
        assert spec["layout"]["title"]["yanchor"] == "top"  # the title above the legend
        assert margin["t"] >= 34 + 22 * len(spec["data"])  # a title, then a row for each entry


def test_run_charts_have_fixed_axes_readable_log_labels_and_no_toolbar(live_run):
    # Fixed ranges and margins keep a live update from laying the axes out again (BENCHMARKS.md, 6)
    at = open_page("app_pages/train.py")
    assert not at.exception, messages(at)
    specs, configs = {}, []
    for chart in at.get("plotly_chart"):
        spec = json.loads(chart.proto.spec)
        specs[spec["layout"]["title"]["text"]] = spec
        configs.append(json.loads(chart.proto.config))
    assert set(specs) == {"Loss", "Accuracy"}
    for spec in specs.values():
        assert spec["layout"]["xaxis"]["range"] == [0, 40]  # the whole run, not just the steps so far
        assert spec["layout"]["margin"]["autoexpand"] is False
    loss = specs["Loss"]
    assert loss["layout"]["yaxis"]["type"] == "log"
    assert loss["layout"]["yaxis"]["range"] == [-2, 1]  # 0.04 .. 2.3 in whole decades
    assert loss["layout"]["yaxis"]["tickformat"] == "~g"  # 0.5 reads "0.5", not "5"
    assert specs["Accuracy"]["layout"]["yaxis"]["range"] == [0, 1.01]
    traces = {t["name"]: t for t in loss["data"]}
    assert traces["loss (per step)"]["y"] == pytest.approx([2.3 / s for s in range(1, 11)])
    assert traces["loss (smoothed)"]["y"][0] == pytest.approx(2.3)  # debiased: starts on the data
    assert all(c.get("displayModeBar") is False for c in configs)
