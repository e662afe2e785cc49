"""The Class page (AppTest): joining by link or code, a display name, only the class's own runs, the
leaderboard, Cancel only for the browser's own runs, and the CSV."""

import json

import pytest
from streamlit.testing.v1 import AppTest

from mnist_core import registry

from apptest_util import APP, messages

ME, OTHER = "m" * 32, "o" * 32  # owner tokens (the format visitor_token makes)


def open_class(query: dict | None = None, token: str = ME) -> AppTest:
    """The app opened on the Class page, as the browser with owner token `token`, from a link with `query`."""
    at = AppTest.from_file(APP, default_timeout=120)
    at.session_state["visitor_token"] = token
    at.query_params.update(query or {})
    at.run()
    at.switch_page("app_pages/classroom.py")
    at.run()
    assert not at.exception, messages(at)
    return at


def _tagged(tiny_config, code, student, owner, accuracy=None, running=False, **settings):
    run_id = registry.create_run(tiny_config(**settings), owner=owner, class_code=code, student=student)
    if running or accuracy is not None:
        registry.mark_running(run_id, total_steps=100)  # this test process stands in for the worker
    if accuracy is not None:
        registry.finish_run(run_id, "completed", test_accuracy=accuracy, best_val_accuracy=accuracy)
    return run_id


@pytest.fixture
def stop_live():
    yield
    for r in registry.list_runs():
        if r.is_live:
            registry.finish_run(r.id, "cancelled")


def test_a_visitor_outside_any_class_is_asked_for_a_code_and_a_bad_one_is_refused_in_one_line():
    at = open_class()
    at.text_input(key="join_code").input("Period 3!")
    at.button[0].click().run()  # Join the class
    assert [e.value for e in at.error] == [
        "A class code is 3 to 32 letters, digits and single dashes, like period-3."], messages(at)
    assert not [h.value for h in at.subheader if h.value.startswith("Class ")]


def test_the_class_link_joins_the_class_and_the_student_chooses_a_name_that_follows_to_other_pages():
    at = open_class({"class": "Period-3"})
    assert [h.value for h in at.subheader][0] == "Class period-3"
    assert any("Choose a display name" in i.value for i in at.info)
    at.text_input(key="class_name_field").input("  Ada\u202e  Lovelace\n")
    at.button(key="save_name").click().run()
    assert not at.exception, messages(at)
    assert any(m.value == "You are **Ada Lovelace** in this class." for m in at.markdown), messages(at)
    at.switch_page("app_pages/home.py").run()  # the membership stays with the session on another page
    badge = [m.value for m in at.sidebar.markdown if m.value.startswith("Class ")]
    assert badge == ["Class **period-3** · as **Ada Lovelace**"], messages(at)


def test_a_bad_code_in_the_link_is_said_in_one_line_and_joins_nothing():
    at = AppTest.from_file(APP, default_timeout=120)
    at.query_params["class"] = "<script>"
    at.run()  # the page the link opens (Home)
    assert [e.value for e in at.sidebar.error] == [
        "The link's class code was not used: A class code is 3 to 32 letters, digits and single dashes, "
        "like period-3."], messages(at)
    at.switch_page("app_pages/classroom.py").run()
    assert any(b.label == "Join the class" for b in at.button)


def test_leaving_the_class_brings_back_the_join_form():
    at = open_class({"class": "period-3"})
    next(b for b in at.button if b.label == "Leave the class").click().run()
    assert not at.exception, messages(at)
    assert any(b.label == "Join the class" for b in at.button)
    assert "class" not in at.query_params


def test_the_class_page_shows_its_own_runs_and_leaderboard_and_nothing_of_another_class(tiny_config):
    _tagged(tiny_config, "period-3", "Ada", ME, accuracy=0.95, lr=0.01)
    _tagged(tiny_config, "period-3", "Bob", OTHER, accuracy=0.97, model="mlp-50")
    _tagged(tiny_config, "period-4", "Eve", "e" * 32, accuracy=0.99)
    at = open_class({"class": "period-3"})
    board = at.dataframe[0].value  # the leaderboard
    assert list(board["rank"]) == [1, 2] and list(board["student"]) == ["Bob", "Ada"]
    assert list(board["test accuracy"]) == ["97.00%", "95.00%"]
    assert list(board["model"]) == ["mlp-50", "mlp-128-64"] and list(board["learning rate"]) == [0.003, 0.01]
    every = at.dataframe[1].value  # every run
    assert sorted(every["student"]) == ["Ada", "Bob"]
    assert "Eve" not in str(every.to_dict()) and "Eve" not in str(board.to_dict())
    csv_button = at.get("download_button")
    assert len(csv_button) == 1 and "CSV" in csv_button[0].proto.label


def test_a_student_can_cancel_their_own_run_but_not_another_students(tiny_config, stop_live):
    mine = _tagged(tiny_config, "period-3", "Ada", ME, running=True)
    theirs = _tagged(tiny_config, "period-3", "Bob", OTHER, running=True)
    at = open_class({"class": "period-3"})
    cancel_mine, cancel_theirs = at.button(key=f"class-cancel-{mine}"), at.button(key=f"class-cancel-{theirs}")
    assert not cancel_mine.disabled and cancel_theirs.disabled
    assert cancel_theirs.help == "Only Bob's browser can cancel this run."
    cancel_mine.click().run()
    assert not at.exception and not at.error, messages(at)
    assert registry.get_run(mine).cancel_requested and not registry.get_run(theirs).cancel_requested


def test_a_student_outside_the_class_sees_none_of_its_runs(tiny_config):
    _tagged(tiny_config, "period-3", "Ada", ME, accuracy=0.95)
    at = open_class({"class": "period-4"}, token=OTHER)
    assert not at.get("dataframe"), "another class's runs were shown"
    assert any("Nobody in this class has started a run yet" in c.value for c in at.caption)


def _curves(run_id: str, accuracy: float) -> None:
    registry.add_metrics(run_id, [{"split": "train", "step": s, "epoch": s / 10, "loss": 2.0 / s, "accuracy": 0.5}
                                  for s in range(1, 11)] + [{"split": "val", "step": 10, "epoch": 1.0, "loss": 0.3,
                                                         "accuracy": accuracy}])


def test_the_teacher_sees_the_best_students_curves_and_every_finished_run_on_one_chart(tiny_config, stop_live):
    at = open_class({"class": "period-3"}, token="t" * 32)  # the teacher, before any run: no runs, no name
    started = [(_tagged(tiny_config, "period-3", student, owner, running=True, lr=lr), acc)
               for student, owner, lr, acc in (("Ada", ME, 0.01, 0.95), ("Bob", OTHER, 0.001, 0.9))]
    at.run()  # the page follows the class (its fragment reruns it when runs appear, start or end)
    assert at.multiselect(key="class_students").value == []  # nobody has finished yet
    for run_id, acc in started:
        _curves(run_id, acc)
        registry.finish_run(run_id, "completed", test_accuracy=acc, best_val_accuracy=acc)
    at.run()
    assert not at.exception, messages(at)
    assert at.multiselect(key="class_students").value == ["Ada", "Bob"]  # the two best, until the teacher picks
    figures = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    loss, accuracy, parallel = figures
    assert sorted(t["name"] for t in loss["data"]) == ["student Ada", "student Bob"]
    assert [t["y"] for t in accuracy["data"]] == [[0.95], [0.9]]
    axes = [d["label"] for d in parallel["data"][0]["dimensions"]]
    assert axes == ["student", "learning rate (log)", "test accuracy"]


def test_the_students_the_teacher_picks_stay_picked(tiny_config):
    for student, owner, acc in (("Ada", ME, 0.95), ("Bob", OTHER, 0.9), ("Cy", "c" * 32, 0.8)):
        _curves(_tagged(tiny_config, "period-3", student, owner, accuracy=acc), acc)
    at = open_class({"class": "period-3"}, token="t" * 32)
    at.multiselect(key="class_students").set_value(["Cy"]).run()
    at.run()
    assert at.multiselect(key="class_students").value == ["Cy"]
    assert [t["name"] for t in json.loads(at.get("plotly_chart")[0].proto.spec)["data"]] == ["student Cy"]


def test_a_student_can_delete_only_their_own_finished_runs(tiny_config):
    mine = _tagged(tiny_config, "period-3", "Ada", ME, accuracy=0.9)
    theirs = _tagged(tiny_config, "period-3", "Bob", OTHER, accuracy=0.8)
    at = open_class({"class": "period-3"})
    assert at.selectbox(key="class_delete_pick").options == [mine]  # Bob's run is not offered
    at.button(key="class_delete").click().run()
    assert not at.exception and not at.error, messages(at)
    assert [r.id for r in registry.list_runs()] == [theirs]
    assert list(at.dataframe[0].value["student"]) == ["Bob"]


@pytest.mark.parametrize("tie", [1.0, 0.98])
def test_runs_that_tie_are_coloured_on_a_scale_of_real_accuracies(tiny_config, tie):
    """Seen: two runs at the same accuracy, and the parallel chart's colour scale ran from 60% to 140%."""
    for student, owner, lr in (("Ada", ME, 0.01), ("Bob", OTHER, 0.001)):
        _tagged(tiny_config, "period-3", student, owner, accuracy=tie, lr=lr)
    at = open_class({"class": "period-3"}, token="t" * 32)
    figures = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    (parallel,) = [f for f in figures if f["data"] and f["data"][0]["type"] == "parcoords"]
    line = parallel["data"][0]["line"]
    assert tie - 0.01 <= line["cmin"] < tie and tie <= line["cmax"] <= 1.0
    assert parallel["data"][0]["dimensions"][-1]["range"] == [line["cmin"], line["cmax"]]
