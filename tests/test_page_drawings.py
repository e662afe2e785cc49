"""The visitors' drawing set on the pages: give a drawing on Draw, see the set on Dataset, measure a model
on it on Evaluate. The registry is each test's own (conftest's isolated_dirs)."""

import base64
import io
import json

import numpy as np
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from apptest_util import APP, messages, open_page
from mnist_core import classes, drawings, registry
from mnist_core.artifacts import load_run_model, store_checkpoint
from mnist_core import evaluate as ev
from mnist_core.checkpoints import default_checkpoint, load_checkpoint, save_checkpoint
from mnist_core.drawings.givers import is_held_out
from mnist_core.models import create_model

CANVAS = "draw_canvas"  # the Draw page's canvas component
GIVE_PICK = "draw_give_digit"  # "Right?": the digit the drawing really is
GIVE = "Add to the drawing set"
STROKES = [[[140.0, 40.0, 0], [140.0, 140.0, 120], [140.0, 240.0, 260]]]  # a one, drawn top to bottom


def canvas_state(rgba: np.ndarray, strokes=STROKES, pointer="mouse") -> dict:
    """What the canvas sends: the drawing as a PNG data URL and its strokes."""
    buf = io.BytesIO()
    Image.fromarray(rgba).save(buf, format="PNG")
    return {"drawing": "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode(),
            "strokes": {"pointer": pointer, "strokes": strokes}}


def a_one(width: int = 20) -> np.ndarray:
    img = np.zeros((280, 280, 4), np.uint8)
    img[..., 3] = 255
    img[40:240, 140 - width // 2:140 + width // 2, :3] = 255
    return img


def draw(at, rgba: np.ndarray, **kw):
    at.session_state[CANVAS] = canvas_state(rgba, **kw)
    at.run()
    assert not at.exception, messages(at)
    return at


def give_button(at):
    return next(b for b in at.button if b.label == GIVE)


# --- Draw: give a drawing ------------------------------------------------------------------------

def test_a_drawing_corrected_and_added_is_kept_with_its_strokes_pointer_and_the_models_answer():
    at = draw(open_page("app_pages/draw.py"), a_one(), pointer="touch")
    predicted = int(at.metric[0].value)
    assert drawings.consent_line() in [c.value for c in at.caption]
    assert give_button(at).disabled  # nothing picked yet
    truth = (predicted + 1) % 10
    at.pills(key=GIVE_PICK).set_value(truth).run()
    give_button(at).click().run()
    assert not at.exception and not at.error, messages(at)
    assert any("Added to the drawing set" in s.value for s in at.success), messages(at)
    [kept] = drawings.list_drawings()
    assert (kept.digit, kept.predicted, kept.pointer) == (truth, predicted, "touch")
    assert kept.strokes == STROKES and kept.picture.shape == (28, 28)
    assert kept.given_by(at.session_state["visitor_token"])


def test_yes_keeps_the_models_answer_as_the_digit():
    at = draw(open_page("app_pages/draw.py"), a_one())
    predicted = int(at.metric[0].value)
    at.pills(key=GIVE_PICK).set_value(predicted).run()
    give_button(at).click().run()
    [kept] = drawings.list_drawings()
    assert kept.digit == kept.predicted == predicted


@pytest.mark.parametrize("strokes, says", [
    ([[[140.0, 40.0, 0], [99999.0, 140.0, 10]]], "outside the 280x280 canvas"),
    ("not a list", "not JSON"),
    ([[[1.0, 2.0, 0]]] * 65, "65 strokes"),
], ids=["off-canvas", "not-json", "too-many-strokes"])
def test_forged_strokes_are_refused_in_one_line_and_nothing_is_kept(strokes, says):
    at = draw(open_page("app_pages/draw.py"), a_one(), strokes=strokes)
    at.pills(key=GIVE_PICK).set_value(1).run()
    give_button(at).click().run()
    assert not at.exception, messages(at)
    assert len(at.error) == 1 and "\n" not in at.error[0].value and says in at.error[0].value, messages(at)
    assert drawings.count_drawings() == 0


def test_the_same_drawing_given_again_from_a_new_session_is_refused_as_a_duplicate():
    for _ in range(2):
        at = draw(open_page("app_pages/draw.py"), a_one())
        at.pills(key=GIVE_PICK).set_value(1).run()
        give_button(at).click().run()
    assert [e.value for e in at.error] == ["this drawing is already in the set"], messages(at)
    assert drawings.count_drawings() == 1


def test_past_the_hourly_limit_a_drawing_is_refused_in_one_line(monkeypatch):
    monkeypatch.setenv("MNIST_DRAWINGS_PER_HOUR", "1")
    at = draw(open_page("app_pages/draw.py"), a_one())
    at.pills(key=GIVE_PICK).set_value(1).run()
    give_button(at).click().run()
    draw(at, a_one(width=30))
    at.pills(key=GIVE_PICK).set_value(1).run()
    give_button(at).click().run()
    assert len(at.error) == 1 and "in the last hour" in at.error[0].value, messages(at)
    assert drawings.count_drawings() == 1


def test_a_drawing_given_in_a_class_carries_the_class_code():
    code = classes.new_code()
    at = open_page("app_pages/draw.py")
    at.session_state["class_code"] = code  # what joining the class leaves (app_pages/_class.py)
    draw(at, a_one())
    at.pills(key=GIVE_PICK).set_value(1).run()
    give_button(at).click().run()
    assert not at.error, messages(at)
    [kept] = drawings.list_drawings()
    assert kept.class_code == code


def test_with_drawings_off_the_page_offers_no_giving(monkeypatch):
    monkeypatch.setenv("MNIST_DRAWINGS", "off")
    at = draw(open_page("app_pages/draw.py"), a_one())
    assert at.metric[0].value not in ("", "–")
    assert GIVE not in [b.label for b in at.button]
    assert drawings.consent_line() not in [c.value for c in at.caption]


# --- Dataset: the visitors' drawings as a third source ----------------------------------------------

BROWSER_A, BROWSER_B = "a" * 32, "b" * 32  # two browsers' owner tokens (the cookie's format)


def picture(seed: int, digit_rows: int = 14) -> np.ndarray:
    """A distinct 28x28 drawing: a bar whose place and width depend on the seed."""
    img = np.zeros((28, 28), np.uint8)
    img[4:4 + digit_rows, 6 + seed % 14:9 + seed % 14 + seed // 14 % 3] = 255
    return img


def give(seed: int, token: str, digit: int = 1, pointer: str = "mouse") -> int:
    return drawings.add_drawing(picture(seed), digit, STROKES, pointer, owner=token, predicted=7)


def open_drawings(token: str = BROWSER_A):
    at = open_page("app_pages/dataset.py")
    at.session_state["visitor_token"] = token
    at.radio(key="ds_split").set_value("drawings").run()
    assert not at.exception, messages(at)
    return at


def grid_ids(at) -> list[int]:
    """The drawing ids in the grid's cells, in order."""
    chart = next(c for c in at.get("plotly_chart") if "ds_drawing_grid" in c.proto.id)
    scatter = json.loads(chart.proto.spec)["data"][1]
    return [row[0] for row in scatter["customdata"]]


def test_the_drawings_are_a_third_source_filtered_by_digit_pointer_and_mine():
    give(0, BROWSER_A, digit=1, pointer="mouse")
    give(1, BROWSER_A, digit=4, pointer="touch")
    mine_pen = give(2, BROWSER_A, digit=4, pointer="pen")
    theirs = give(3, BROWSER_B, digit=4, pointer="pen")
    at = open_drawings()
    assert len(grid_ids(at)) == 4
    at.selectbox(key="ds_label").set_value(4).run()
    at.selectbox(key="ds_pointer").set_value("pen").run()
    assert grid_ids(at) == [theirs, mine_pen]  # newest first
    at.toggle(key="ds_mine").set_value(True).run()
    assert grid_ids(at) == [mine_pen]
    assert not at.exception, messages(at)


def test_counts_per_digit_and_pointer_and_the_comparison_with_mnist_are_shown(mnist):
    for seed in range(3):
        give(seed, BROWSER_A, digit=seed, pointer=("mouse", "touch", "touch")[seed])
    at = open_drawings()
    metrics = {m.label: m.value for m in at.metric}
    assert (metrics["a mouse"], metrics["a finger"], metrics["a pen"]) == ("1", "2", "0")
    assert "How the drawings differ from MNIST" in [s.value for s in at.subheader]
    assert {"Ink, drawings", "Stroke width, drawings", "Slant, drawings"} <= set(metrics)
    [table] = [d.value for d in at.dataframe]
    assert list(table["drawings"]) == [1, 1, 1, 0, 0, 0, 0, 0, 0, 0]
    assert table["stroke width (drawings)"][0] > 0 and np.isnan(table["ink (drawings)"][5])


def test_my_drawing_can_be_removed_and_another_browsers_offers_no_remove():
    mine = give(0, BROWSER_A)
    theirs = give(1, BROWSER_B)
    at = open_drawings(BROWSER_A)
    at.session_state["ds_drawing"] = theirs
    at.run()
    assert "Remove my drawing" not in [b.label for b in at.button]
    at.session_state["ds_drawing"] = mine
    at.run()
    at.button(key="ds_remove").click().run()
    assert not at.exception and not at.error, messages(at)
    assert [d.id for d in drawings.list_drawings()] == [theirs]
    assert grid_ids(at) == [theirs]


def test_an_empty_set_says_how_to_give_a_drawing():
    at = open_drawings()
    assert any("No drawings yet" in i.value for i in at.info), messages(at)


# --- Evaluate: on the drawings beside the MNIST test set ------------------------------------------

def lenet():
    model, _ = load_checkpoint(default_checkpoint("lenet5"))
    return model


def open_evaluate_on_drawings(part: str = "all"):
    at = open_page("app_pages/evaluate.py")
    at.session_state["eval_on"] = "drawings"
    at.run()
    if part != "all":
        at.selectbox(key="eval_part").set_value(part).run()
    assert not at.exception, messages(at)
    return at


def test_evaluate_on_the_drawings_gives_the_accuracy_the_gap_and_the_drawings_themselves(mnist):
    ids = [give(seed, BROWSER_A, digit=1) for seed in range(6)]
    at = open_evaluate_on_drawings()
    expected = ev.evaluate_on_drawings(lenet())
    accuracy = next(m for m in at.metric if m.label == "Accuracy on the drawings")
    assert accuracy.value == f"{expected.accuracy:.2%}"
    assert "on MNIST test" in accuracy.proto.delta
    assert next(m for m in at.metric if m.label == "Mistakes").value == str(len(expected.mistakes()))
    at.toggle(key="cm_every_mistake").set_value(True).run()
    captions = [caption for img in at.get("image") for caption in img.captions]
    shown = [int(c.split(" ")[0][1:]) for c in captions]
    assert shown == [int(expected.ids[i]) for i in expected.mistakes()] and set(shown) <= set(ids)


def test_clicking_a_cell_on_the_drawings_shows_exactly_those_drawings(mnist):
    for seed in range(4):
        give(seed, BROWSER_A, digit=seed % 2)
    expected = ev.evaluate_on_drawings(lenet())
    at = open_evaluate_on_drawings()
    true, predicted = 1, int(expected.predictions.predicted[1])
    at.session_state["confusion"] = {"selection": {"points": [{"x": predicted, "y": true}], "point_indices": [],
                                                   "box": [], "lasso": []}}
    at.run()
    captions = [caption for img in at.get("image") for caption in img.captions]
    cell = ev.cell_indices(expected.predictions, true, predicted)
    assert [int(c.split(" ")[0][1:]) for c in captions] == [int(expected.ids[i]) for i in cell]


def test_the_held_out_part_is_measured_alone_and_an_empty_part_says_so(mnist):
    browsers = [f"{n:032d}" for n in range(200)]
    held_out = next(t for t in browsers if is_held_out(drawings.giver_of(t)))
    in_training = next(t for t in browsers if not is_held_out(drawings.giver_of(t)))
    give(0, in_training)
    at = open_evaluate_on_drawings("held-out")
    assert any("no drawings yet by held-out givers" in i.value for i in at.info), messages(at)
    give(1, held_out)
    give(2, held_out)
    at = open_evaluate_on_drawings("held-out")
    assert "2 drawings" in next(m for m in at.metric if m.label == "Accuracy on the drawings").help


def test_model_cards_show_the_accuracy_on_the_drawings_and_the_gap(mnist):
    for seed in range(3):
        give(seed, BROWSER_A, digit=1)
    at = open_page("app_pages/evaluate.py")
    at.session_state["eval_tab"] = "Model cards"
    at.run()
    assert not at.exception, messages(at)
    cards = at.dataframe[0].value
    row = cards[(cards["name"] == "lenet5") & (cards["kind"] == "checkpoint")].iloc[0]
    on_drawings = ev.evaluate_on_drawings(lenet()).accuracy
    assert row["on the drawings"] == f"{on_drawings:.2%}"
    test = float(row["test accuracy"].rstrip("%")) / 100
    assert row["gap"] == f"{100 * (on_drawings - test):+.2f} points"
    assert set(cards.loc[cards["kind"] != "checkpoint", "on the drawings"]) == {"–"}


# --- Train: mixing the drawings in -----------------------------------------------------------------

def test_the_train_form_says_what_a_share_of_drawings_trains_on_or_that_there_is_none_yet():
    at = open_page("app_pages/train.py")
    at.number_input(key="cfg_drawings_weight").set_value(0.2).run()
    assert not at.exception, messages(at)
    assert any("no drawings to train on yet" in w.value for w in at.warning), messages(at)
    browsers = [f"{n:032d}" for n in range(200)]
    give(0, next(t for t in browsers if not is_held_out(drawings.giver_of(t))))
    give(1, next(t for t in browsers if is_held_out(drawings.giver_of(t))))
    at.run()
    assert any("from the set's 1 training drawings" in c.value and "the 1 drawings of the held-out givers" in c.value
               for c in at.caption), messages(at)


# --- Sweep and Class: rank by the accuracy on the drawings ----------------------------------------

def _completed_run_with_model(model_name: str, test_accuracy: float, tmp_path, trained: bool = True, **tags) -> str:
    """A completed run whose checkpoint is in the registry: the committed lenet5, or an untrained model."""
    run_id = registry.create_run({"model": model_name, "epochs": 1, "threads": 1, "device": "cpu"}, **tags)
    registry.mark_running(run_id, total_steps=10)
    model = load_checkpoint(default_checkpoint(model_name))[0] if trained else create_model(model_name)
    store_checkpoint(run_id, save_checkpoint(model, {"run_id": run_id}, tmp_path / f"{run_id}.safetensors"))
    registry.finish_run(run_id, "completed", test_accuracy=test_accuracy, best_val_accuracy=test_accuracy)
    return run_id


def _accuracy_on_drawings(run_id: str) -> float:
    model, _ = load_run_model(run_id)
    return ev.evaluate_on_drawings(model).accuracy


def _sweep_tab():
    from app_pages._sweep_ui import sweep_tab

    sweep_tab()


def test_a_sweeps_runs_can_be_ranked_by_their_accuracy_on_the_drawings(tmp_path):
    for seed in range(5):
        give(seed, BROWSER_A, digit=1)
    sweep = "sweep-20260101-000000-abcdef"
    strong = _completed_run_with_model("lenet5", 0.90, tmp_path, sweep=sweep)
    weak = _completed_run_with_model("lenet5", 0.95, tmp_path, trained=False, sweep=sweep)
    assert _accuracy_on_drawings(strong) > _accuracy_on_drawings(weak)
    at = AppTest.from_function(_sweep_tab, default_timeout=120)
    at.session_state["train_form"] = {"model": "lenet5", "epochs": 1}
    at.run()
    assert not at.exception, messages(at)
    at.button_group(key="sweep_rank_by").set_value("drawings").run()
    assert not at.exception, messages(at)
    table = next(d.value for d in at.dataframe if "on the drawings" in d.value.columns)
    assert list(table["run"]) == [strong, weak]
    assert list(table["on the drawings"]) == [f"{_accuracy_on_drawings(r):.2%}" for r in (strong, weak)]


def leaderboard(at):
    return next(d.value for d in at.dataframe if "rank" in d.value.columns and "student" in d.value.columns)


def test_the_class_leaderboard_can_rank_students_by_their_best_runs_accuracy_on_the_drawings(tmp_path):
    code = classes.new_code()
    for seed in range(5):
        give(seed, BROWSER_A, digit=1)
    ada = _completed_run_with_model("lenet5", 0.90, tmp_path, owner="o" * 32, class_code=code, student="Ada")
    grace = _completed_run_with_model("lenet5", 0.95, tmp_path, trained=False, owner="p" * 32, class_code=code,
                                      student="Grace")
    assert _accuracy_on_drawings(ada) > _accuracy_on_drawings(grace)
    at = AppTest.from_file(APP, default_timeout=120)
    at.session_state["visitor_token"] = BROWSER_A
    at.query_params["class"] = code
    at.run()
    at.switch_page("app_pages/classroom.py")
    at.run()
    assert not at.exception, messages(at)
    board = leaderboard(at)
    assert list(board["student"]) == ["Grace", "Ada"]  # by test accuracy
    at.button_group(key="class_rank_by").set_value("drawings").run()
    assert not at.exception, messages(at)
    board = leaderboard(at)
    assert list(board["student"]) == ["Ada", "Grace"] and list(board["rank"]) == [1, 2]
    assert list(board["on the drawings"]) == [f"{_accuracy_on_drawings(r):.2%}" for r in (ada, grace)]
