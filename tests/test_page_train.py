"""Train page: the form, presets, launching a real worker, the runs table, cancel, failures."""

import time

import pytest

from mnist_core import runs
from mnist_core.training import PRESETS, TrainConfig

from apptest_util import messages, open_page


@pytest.fixture
def registry(tmp_path, monkeypatch):
    monkeypatch.setenv("MNIST_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("MNIST_CHECKPOINT_DIR", str(tmp_path / "checkpoints"))
    return tmp_path


def wait_until_finished(timeout: float = 120) -> runs.Run:
    deadline = time.time() + timeout
    while time.time() < deadline:
        latest = runs.list_runs()[-1]
        if not latest.is_live:
            return latest
        time.sleep(0.5)
    raise AssertionError(f"run still {latest.status} after {timeout} s")


def test_form_has_every_config_field_and_presets(registry):
    at = open_page("app_pages/train.py")
    assert not at.exception, messages(at)
    for f in TrainConfig.fields():
        widget = at.selectbox(key=f"cfg_{f.name}") if f.metadata["choices"] else at.number_input(key=f"cfg_{f.name}")
        assert widget.value == f.default
    assert set(PRESETS) <= set(at.selectbox(key="preset").options)
    assert any("No runs yet" in i.value for i in at.info)


def test_choosing_a_preset_fills_in_the_form(registry):
    at = open_page("app_pages/train.py")
    at.selectbox(key="preset").set_value("tutorial-lenet5").run()
    assert not at.exception, messages(at)
    assert at.number_input(key="cfg_lr").value == pytest.approx(0.2)
    assert at.number_input(key="cfg_train_size").value == 2600
    assert at.selectbox(key="cfg_optimizer").value == "sgd"
    assert "Article's result" in " ".join(c.value for c in at.caption)


def test_model_picker_shows_layers_and_parameters(registry):
    at = open_page("app_pages/train.py")
    at.selectbox(key="cfg_model").set_value("cnn-small").run()
    assert any("cnn-small · 21,578 parameters" in e.label for e in at.expander)
    assert not [c for c in at.caption if "fused C kernel" in c.value]


def test_lenet5_says_whether_its_fused_kernels_are_in_use(registry):
    from mnist_core import kernels

    at = open_page("app_pages/train.py")
    at.selectbox(key="cfg_model").set_value("lenet5").run()
    assert not at.exception, messages(at)
    (caption,) = [c.value for c in at.caption if "fused C kernel" in c.value]
    assert caption.endswith(f": {kernels.status()}.")


def test_invalid_config_shows_one_line_error_and_starts_nothing(registry):
    at = open_page("app_pages/train.py")
    at.number_input(key="cfg_train_size").set_value(58_000)
    start = next(b for b in at.button if b.label == "Start training")
    start.click().run()
    assert not at.exception, messages(at)
    assert any("train_size + val_size" in e.value for e in at.error), messages(at)
    assert runs.list_runs() == []


def test_launched_run_completes_and_appears_in_the_table(registry):
    at = open_page("app_pages/train.py")
    at.selectbox(key="cfg_model").set_value("mlp-128-64")
    at.number_input(key="cfg_train_size").set_value(2000)
    at.number_input(key="cfg_epochs").set_value(1)
    next(b for b in at.button if b.label == "Start training").click().run()
    assert not at.exception, messages(at)
    assert len(runs.list_runs()) == 1
    run = wait_until_finished()
    assert run.status == "completed", run.error
    assert run.test_accuracy > 0.5

    at.run()
    assert not at.exception, messages(at)
    assert any(f"{run.test_accuracy:.2%}" in s.value for s in at.success), messages(at)
    table = at.dataframe[-1].value
    assert list(table["run"]) == [run.id] and list(table["status"]) == ["completed"]
    assert (registry / "checkpoints").glob("mlp-128-64-*.safetensors")


def test_cancel_button_cancels_a_live_run(registry):
    at = open_page("app_pages/train.py")
    at.number_input(key="cfg_epochs").set_value(50)  # long enough to still be running when we cancel
    next(b for b in at.button if b.label == "Start training").click().run()
    run_id = runs.list_runs()[-1].id
    deadline = time.time() + 60
    while runs.get_run(run_id).status != "running" and time.time() < deadline:
        time.sleep(0.3)
    at.run()
    next(b for b in at.button if b.label == "Cancel").click().run()
    assert not at.exception, messages(at)
    assert wait_until_finished(60).status == "cancelled"
    at.run()
    assert any("cancelled" in w.value for w in at.warning), messages(at)


def test_failed_run_shows_its_error_text_not_a_traceback(registry):
    run_id = runs.create_run(TrainConfig(epochs=1).to_dict())
    runs.finish_run(run_id, "failed", error="training diverged (loss is nan) at step 3: try a smaller lr")
    at = open_page("app_pages/train.py")
    assert not at.exception, messages(at)
    assert any("training diverged" in e.value for e in at.error), messages(at)
    assert list(at.dataframe[-1].value["status"]) == ["failed"]


def test_the_form_keeps_its_values_when_you_leave_and_come_back(registry):
    at = open_page("app_pages/train.py")
    at.selectbox(key="preset").set_value("tutorial-cnn").run()
    at.number_input(key="cfg_epochs").set_value(2).run()
    at.switch_page("app_pages/home.py").run()
    at.switch_page("app_pages/train.py").run()
    assert not at.exception, messages(at)
    assert at.number_input(key="cfg_epochs").value == 2
    assert at.selectbox(key="cfg_model").value == "cnn-small"
    assert at.selectbox(key="preset").value == "tutorial-cnn"


def test_run_charts_have_fixed_axes(registry):
    # Fixed ranges and margins keep a live update from laying the axes out again (BENCHMARKS.md, 6)
    import json

    run_id = runs.create_run(TrainConfig(epochs=1, train_size=1000).to_dict())
    runs.mark_running(run_id, total_steps=40)
    runs.add_metrics(run_id, [{"split": "train", "step": s, "epoch": s / 40, "loss": 2.3 / s, "accuracy": 0.5,
                               "images_per_s": 1000.0} for s in range(1, 11)])
    runs.add_metrics(run_id, [{"split": "val", "step": 10, "epoch": 0.25, "loss": 0.04, "accuracy": 0.9}])
    at = open_page("app_pages/train.py")
    assert not at.exception, messages(at)
    specs = {}
    for chart in at.get("plotly_chart"):
        spec = json.loads(chart.proto.spec)
        specs[spec["layout"]["title"]["text"]] = spec["layout"]
    assert set(specs) == {"Loss", "Accuracy"}
    for layout in specs.values():
        assert layout["xaxis"]["range"] == [0, 40]  # the whole run, not just the steps so far
        assert layout["margin"]["autoexpand"] is False
    assert specs["Loss"]["yaxis"]["type"] == "log"
    assert specs["Loss"]["yaxis"]["range"] == [-2, 1]  # 0.04 .. 2.3 in whole decades
    assert specs["Accuracy"]["yaxis"]["range"] == [0, 1.01]
    runs.finish_run(run_id, "cancelled")
