"""Evaluate page: the confusion matrix you can click into, model cards, run comparison."""

import json

import numpy as np
import pytest

from mnist_core import evaluate as ev
from mnist_core import registry
from mnist_core.checkpoints import default_checkpoint, load_checkpoint
from mnist_core.data import load_mnist
from mnist_core.training import TrainConfig

from apptest_util import messages, open_page


@pytest.fixture(scope="module")
def lenet_predictions():
    model, _ = load_checkpoint(default_checkpoint("lenet5"))
    images, labels = load_mnist("test")
    return ev.predictions(model, images.numpy(), labels.numpy())


@pytest.fixture
def page(tmp_path, monkeypatch):
    monkeypatch.setenv("MNIST_RUNS_DIR", str(tmp_path / "runs"))
    at = open_page("app_pages/evaluate.py")
    assert not at.exception, messages(at)
    return at


def click_cell(at, true: int, predicted: int):
    """What a click on a confusion-matrix cell sends back: one selected point at (predicted, true)."""
    at.session_state["confusion"] = {"selection": {"points": [{"x": predicted, "y": true}], "point_indices": [],
                                                    "box": [], "lasso": []}}
    return at.run()


def test_accuracy_and_most_confused_cell_shown(page, lenet_predictions):
    assert page.metric[0].value == f"{lenet_predictions.accuracy:.2%}"
    mistakes = len(ev.mistakes(lenet_predictions))
    assert page.metric[1].value == f"{mistakes:,}"


def test_per_class_table_says_test_images_not_support(page):
    columns = json.loads(page.dataframe[0].proto.columns)
    assert columns["support"]["label"] == "test images"
    assert columns["precision"]["help"] and columns["recall"]["help"]


def test_clicking_a_cell_shows_exactly_those_images(page, lenet_predictions):
    cm = ev.confusion_matrix(lenet_predictions.labels, lenet_predictions.predicted)
    true, predicted = 7, 2
    click_cell(page, true, predicted)
    assert not page.exception, messages(page)
    assert page.subheader[0].value == f"True {true}, predicted {predicted}: {cm[true, predicted]} image(s)"
    expected = ev.cell_indices(lenet_predictions, true, predicted)[:40]
    captions = [caption for img in page.get("image") for caption in img.captions]
    shown = [int(c.split(" ")[0][1:]) for c in captions]
    assert shown == expected.tolist()


def test_diagonal_cell_shows_correct_answers(page):
    click_cell(page, 3, 3)
    assert "image(s)" in page.subheader[0].value
    assert any("correct answers" in c.value for c in page.caption)


def test_every_mistake_toggle(page, lenet_predictions):
    page.toggle(key="cm_every_mistake").set_value(True).run()
    assert page.subheader[0].value == f"All {len(ev.mistakes(lenet_predictions))} mistakes"


def test_open_in_inside_the_network(page, lenet_predictions):
    click_cell(page, 9, 4)
    next(b for b in page.button if b.label == "Open in Inside the network").click().run()
    first = int(ev.cell_indices(lenet_predictions, 9, 4)[0])
    assert page.session_state["inspect_source"] == {"kind": "dataset", "split": "test", "index": first}


def no_raw_values(table) -> bool:
    """No cell reads None or NaN, no header is a snake_case field name."""
    cells = table.astype(object).to_numpy().ravel().tolist()
    return (not any(v is None or (isinstance(v, float) and np.isnan(v)) or str(v) in ("None", "nan") for v in cells)
            and not any("_" in c for c in table.columns))


def test_model_cards_cover_every_architecture_and_checkpoint(page):
    page.session_state["eval_tab"] = "Model cards"
    page.run()
    assert not page.exception, messages(page)
    cards = page.dataframe[0].value
    assert {"lenet5", "cnn-strong", "mlp-50"} <= set(cards["architecture"])
    lenet_ckpt = cards[(cards["name"] == "lenet5") & (cards["kind"] == "checkpoint")]
    assert float(lenet_ckpt["test accuracy"].iloc[0].rstrip("%")) >= 99.0
    assert (cards["MFLOPs / image"] > 0).all() and (cards["parameters"] > 0).all()
    speed = page.dataframe[1].value
    assert list(speed["layer"]) == ["C1", "S2", "C3", "S4", "C5"]
    assert (speed["max abs diff"] < 1e-4).all()


def test_model_cards_lead_with_what_people_compare_and_say_untrained_in_words(page):
    """The useful columns were off to the right and untrained architectures read "None"."""
    page.session_state["eval_tab"] = "Model cards"
    page.run()
    cards = page.dataframe[0].value
    assert list(cards.columns[:5]) == ["name", "test accuracy", "parameters", "MFLOPs / image",
                                       "latency ms (CPU, 1 thread)"]
    assert set(cards.loc[cards["kind"] != "checkpoint", "test accuracy"]) == {"untrained"}
    assert no_raw_values(cards), cards


def finished_run(acc: float, best_val: float | None = 0.5, started: bool = True) -> str:
    run_id = registry.create_run(TrainConfig(epochs=1).to_dict())
    if started:
        registry.mark_running(run_id)
    registry.add_metrics(run_id, [{"step": 10, "epoch": 1.0, "split": "val", "loss": 0.1, "accuracy": acc}])
    registry.finish_run(run_id, "completed", best_val_accuracy=best_val, test_accuracy=acc, test_loss=0.1)
    return run_id


def test_compare_runs_against_a_baseline(page):
    for acc in (0.97, 0.98, 0.99):
        finished_run(acc, best_val=acc)
    page.session_state["eval_tab"] = "Compare runs"
    page.run()
    assert not page.exception, messages(page)
    table = page.dataframe[0].value
    assert len(table) == 3
    assert table["run"].iloc[0].endswith(" (baseline)") and table["test accuracy vs baseline"].iloc[0] == "baseline"
    assert sorted(table["test accuracy vs baseline"].iloc[1:]) == ["+1.00 points", "+2.00 points"]
    assert page.get("download_button")


def test_compare_runs_says_what_is_missing_in_words(page):
    """A preset without a validation set, a run with no start time: words, never "None"."""
    finished_run(0.97)
    finished_run(0.98, best_val=None, started=False)
    page.session_state["eval_tab"] = "Compare runs"
    page.run()
    assert not page.exception, messages(page)
    table = page.dataframe[0].value
    assert no_raw_values(table), table
    assert table["best validation accuracy"].iloc[1] == "no validation set"
    assert table["training time"].iloc[1] == "–" and table["validation vs baseline"].iloc[1] == "–"


def test_the_clicked_cell_is_still_open_after_a_look_inside_the_network(page, lenet_predictions):
    click_cell(page, 7, 2)  # not the most confused cell, which the page opens on
    page.selectbox(key="cm_open_index").select(int(ev.cell_indices(lenet_predictions, 7, 2)[1])).run()
    next(b for b in page.button if b.label == "Open in Inside the network").click().run()
    assert page.title[0].value == "Inside the network"
    page.switch_page("app_pages/evaluate.py").run()
    assert not page.exception, messages(page)
    assert page.subheader[0].value.startswith("True 7, predicted 2: ")
    assert page.selectbox(key="cm_open_index").value == int(ev.cell_indices(lenet_predictions, 7, 2)[1])


def test_model_card_headers_are_short_enough_to_be_read_whole(page):
    """Seen: the model cards' headers cut off ("latency ms (C...", "MFLOPs / i..."): columns set "small"
    (75 px) under headers twice that long. A header fits its column; the details are in its help."""
    page.session_state["eval_tab"] = "Model cards"
    page.run()
    assert not page.exception, messages(page)
    cards = page.dataframe[0]
    config = json.loads(cards.proto.columns)
    for column in cards.value.columns:
        shown = config.get(column, {})
        header = shown.get("label") or column
        assert len(header) <= 13, (column, header)
        assert shown.get("width") != "small" or len(header) <= 8, (column, shown)  # 75 px hold about 8
    assert "milliseconds" in config["latency ms (CPU, 1 thread)"]["help"]
