"""The visitors' drawing set on the pages: give a drawing on Draw, see the set on Dataset, measure a model
on it on Evaluate. The registry is each test's own (conftest's isolated_dirs)."""

import base64
import io
import json

import numpy as np
import pytest
from PIL import Image

from apptest_util import messages, open_page
from mnist_core import classes, drawings

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
