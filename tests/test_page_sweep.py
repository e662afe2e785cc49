"""The Train page's Sweep tab (app_pages/_sweep_ui.sweep_tab) under AppTest: the estimate, the cap
refused in one line, Launch and Cancel of a whole sweep, and a finished sweep's charts, summary and
"use this model"."""

from __future__ import annotations

import json

from streamlit.testing.v1 import AppTest

from apptest_util import open_page
from mnist_core import registry
from mnist_core.records import RunStatus

TINY = dict(model="mlp-128-64", train_size=1000, val_size=500, epochs=1, batch_size=100, threads=1, device="cpu")


def _tab():
    from app_pages._sweep_ui import sweep_tab

    sweep_tab()


def _open(monkeypatch, **env) -> AppTest:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    at = AppTest.from_function(_tab, default_timeout=60)
    at.session_state["train_form"] = TINY  # the One run form's values: each run starts from them
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _launch_button(at: AppTest):
    return next(b for b in at.button if b.label == "Launch sweep")


def _charts(at: AppTest) -> list[dict]:
    return [json.loads(c.proto.spec) for c in at.get("plotly_chart")]


def test_a_sweep_above_the_cap_is_refused_in_one_line_and_cannot_launch(monkeypatch):
    at = _open(monkeypatch, MNIST_MAX_SWEEP_RUNS="2")
    assert not at.error  # the first sweep offered fits the cap (form.sweep_default): 2 of its 3 learning rates
    at.text_input(key="sweep_values_0_lr").set_value("0.001, 0.01, 0.1").run()
    assert [e.value for e in at.error] == ["this sweep is 3 runs; at most 2 are allowed here (fewer values, samples "
                                           "or seeds)"]
    assert _launch_button(at).disabled
    at.text_input(key="sweep_values_0_lr").set_value("0.001, 0.01").run()
    assert not at.error and at.info[0].value.startswith("2 runs × ~")
    assert not _launch_button(at).disabled


def test_a_sweep_of_48510_runs_is_refused_in_one_line_without_building_a_run(monkeypatch):
    from mnist_core import sweeps

    admitted = []
    real_admit = sweeps.admit
    monkeypatch.setattr(sweeps, "admit", lambda config: admitted.append(config) or real_admit(config))
    at = _open(monkeypatch)
    for i, name in enumerate(("lr", "weight_decay", "epochs")):
        at.selectbox(key=f"sweep_field_{i}").set_value(name)
    at.run()
    at.text_input(key="sweep_values_0_lr").set_value(",".join(f"{0.0001 * (k + 1):g}" for k in range(22)))
    at.text_input(key="sweep_values_1_weight_decay").set_value(",".join(f"{0.001 * (k + 1):g}" for k in range(21)))
    at.text_input(key="sweep_values_2_epochs").set_value(",".join(str(k + 1) for k in range(21)))
    at.number_input(key="sweep_seeds").set_value(5)
    admitted.clear()
    at.run()
    assert not at.exception
    assert [e.value for e in at.error] == ["this sweep is 48,510 runs; at most 64 are allowed here (fewer values, "
                                           "samples or seeds)"]
    assert admitted == [] and _launch_button(at).disabled


def test_a_visitors_sweep_beyond_their_queue_room_is_refused_in_one_line(monkeypatch):
    at = _open(monkeypatch, MNIST_MAX_QUEUED_PER_OWNER="2")
    assert not at.error  # the first sweep offered fits the visitor's room (form.sweep_default)
    assert any("you may have at most 2 runs queued or running here" in c.value for c in at.caption)
    at.text_input(key="sweep_values_0_lr").set_value("0.001, 0.01, 0.1").run()
    assert [e.value for e in at.error] == ["this sweep is 3 runs; you may have at most 2 queued or running (fewer "
                                           "values, samples or seeds)"]
    assert _launch_button(at).disabled


def test_launching_a_sweep_queues_tagged_runs_and_cancel_stops_them_all(monkeypatch, mnist, wait_for):
    at = _open(monkeypatch, MNIST_MAX_QUEUED_PER_OWNER="20")
    at.text_input(key="sweep_values_0_lr").set_value("0.001, 0.01, 0.1").run()
    assert at.info[0].value.startswith("3 runs × ~"), [i.value for i in at.info]
    _launch_button(at).click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    launched = [r for r in registry.list_runs() if r.sweep]
    assert sorted(r.config["lr"] for r in launched) == [0.001, 0.01, 0.1]
    assert {r.sweep for r in launched} == {at.session_state["sweep_watch"]}
    assert {r.owner for r in launched} == {at.session_state["visitor_token"]}
    next(b for b in at.button if b.label == "Cancel the whole sweep").click().run()
    wait_for(lambda: not any(r.is_live for r in registry.list_runs()), 120, what="every run of the sweep to end")
    assert any(r.status == RunStatus.CANCELLED for r in registry.list_runs())


def _finished_run(sweep: str, lr: float, accuracy: float) -> str:
    run_id = registry.create_run({**TINY, "lr": lr, "seed": 0, "optimizer": "adamw"}, sweep=sweep)
    registry.mark_running(run_id, total_steps=10)
    registry.add_metrics(run_id, [{"split": "train", "step": s, "epoch": s / 10, "loss": 2.0 / s, "accuracy": 0.5,
                                   "images_per_s": 1000.0} for s in range(1, 11)]
                     + [{"split": "val", "step": 10, "epoch": 1.0, "loss": 0.3, "accuracy": accuracy - 0.01}])
    registry.finish_run(run_id, RunStatus.COMPLETED, test_accuracy=accuracy, best_val_accuracy=accuracy)
    return run_id


def test_a_finished_sweep_shows_what_it_showed_and_one_run_becomes_the_default_model(monkeypatch):
    ids = [_finished_run("sweep-20260101-000000-abcdef", lr, acc)
           for lr, acc in ((0.001, 0.91), (0.003, 0.95), (0.01, 0.93))]
    at = _open(monkeypatch)
    text = " ".join(m.value for m in at.markdown)
    assert "Accuracy peaks near learning rate 0.003 (95.0%)." in text
    kinds = [trace["type"] for chart in _charts(at) for trace in chart["data"]]
    assert "parcoords" in kinds
    parcoords = next(t for c in _charts(at) for t in c["data"] if t["type"] == "parcoords")
    assert [d["label"] for d in parcoords["dimensions"]] == ["learning rate (log)", "test accuracy"]
    assert len(parcoords["dimensions"][0]["values"]) == 3
    at.selectbox(key="sweep_opened_run").set_value(ids[1]).run()
    next(b for b in at.button if b.label == "Use this model on Draw and Inside").click().run()
    assert at.session_state["mnist_default_model"] == f"run:{ids[1]}"
    next(b for b in at.button if b.label == "Watch it in the live panel").click().run()
    assert at.session_state["watch_run"] == ids[1]


def test_a_click_on_the_centre_of_a_dot_reaches_the_dot_not_the_mean_line_over_it(monkeypatch):
    """With one seed the mean sits on every dot. Drawn over them and taking hover and clicks, it got the
    click and opened no run. Now it is drawn first (under the dots) and plotly.js sends no event for it."""
    for lr, acc in ((0.001, 0.91), (0.003, 0.95), (0.01, 0.93)):
        _finished_run("sweep-20260101-000000-abcdef", lr, acc)
    at = _open(monkeypatch)
    title = "Test accuracy against learning rate"
    (chart,) = [c for c in _charts(at) if c["layout"].get("title", {}).get("text") == title]
    names = [t["name"] for t in chart["data"]]
    assert names == ["mean ± spread over seeds", "a run"]  # traces are drawn in order: the dots on top
    mean, dots = chart["data"]
    assert mean["hoverinfo"] == "skip" and "hovertemplate" not in mean
    assert dots["y"] == mean["y"] and len(dots["customdata"]) == 3  # the dots carry the run ids


def test_a_learning_rate_range_is_offered_as_log_spaced_points(monkeypatch):
    at = _open(monkeypatch)
    at.radio(key="sweep_how_0").set_value("range").run()
    assert [e.value for e in at.error] == ["learning rate: give the range's two ends"]
    at.number_input(key="sweep_low_0_lr").set_value(0.001)
    at.number_input(key="sweep_high_0_lr").set_value(0.1)
    at.number_input(key="sweep_points_0_lr").set_value(3).run()
    assert not at.error and at.info[0].value.startswith("3 runs × ~")
    at.radio(key="sweep_mode").set_value("random").run()
    assert at.error[0].value.startswith("this sweep is 8 runs")  # 8 random points: beyond a visitor's 3


def test_the_train_pages_sweep_tab_starts_from_the_one_run_form(mnist):
    at = open_page("app_pages/train.py")
    assert [t.label for t in at.tabs] == ["One run", "Sweep"]
    at.number_input(key="cfg_epochs").set_value(2).run()
    caption = next(c.value for c in at.caption if c.value.startswith("Each run starts from the One run form's values"))
    assert "model lenet5" in caption and "epochs 2" in caption
    assert not at.exception


def test_epochs_from_1_to_2_5_are_refused_not_rounded_to_whole_epochs(monkeypatch):
    """Seen: a range's 2.5 epochs became 2 without a word (its points are rounded to whole numbers)."""
    at = _open(monkeypatch)
    at.selectbox(key="sweep_field_0").set_value("epochs").run()
    at.radio(key="sweep_how_0").set_value("range").run()
    at.number_input(key="sweep_low_0_epochs").set_value(1)
    at.number_input(key="sweep_high_0_epochs").set_value(2.5).run()
    assert [e.value for e in at.error] == ["epochs: a range of whole numbers needs whole ends, not 1..2.5"]
    assert _launch_button(at).disabled


def test_a_sweep_from_a_form_with_seed_minus_1_says_so_in_the_forms_words(monkeypatch):
    """Seen: "seed: -1 is outside the allowed range 0 to 2147483647", in the config's jargon."""
    monkeypatch.setenv("MNIST_MAX_SWEEP_RUNS", "3")
    at = AppTest.from_function(_tab, default_timeout=60)
    at.session_state["train_form"] = {**TINY, "seed": -1}
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert [e.value for e in at.error] == ["random seed must be at least 0, not -1"]
    assert _launch_button(at).disabled
