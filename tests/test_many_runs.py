"""Pages stay bounded however many runs the registry holds: Draw compares a chosen few models, not
every checkpoint, and every list of runs or checkpoints reads a page of them, not the registry."""

from __future__ import annotations

import os
import shutil

import pytest

from mnist_core import predict, registry, runfiles
from mnist_core.checkpoints import default_checkpoint, sidecar_path
from mnist_core.records import RunStatus

from apptest_util import messages, open_page
from test_page_draw import CANVAS, canvas_state, drawn

COMPARE_CAP = 8    # Draw compares at most this many models on a drawing
PICKER_CAP = 30    # a checkpoint picker offers at most this many at once (a search box finds the others)
CONFIG = {"model": "cnn-small", "epochs": 1, "batch_size": 256, "train_size": 1000, "val_size": 500, "lr": 0.003}


def add_completed_runs(n: int) -> list[str]:
    """`n` completed runs made through the registry's API, no training: two in three with their own
    checkpoint file here (a link to the committed cnn-small), one in three trained "on another host",
    its checkpoint only in the registry."""
    source = default_checkpoint("cnn-small")
    ids = []
    for k in range(n):
        run_id = registry.create_run(CONFIG)
        path = runfiles.default_checkpoint_path("cnn-small", run_id)
        if k % 3:
            path.parent.mkdir(parents=True, exist_ok=True)
            for src, dst in ((source, path), (sidecar_path(source), sidecar_path(path))):
                try:
                    os.link(src, dst)
                except OSError:  # another file system
                    shutil.copyfile(src, dst)
        else:
            registry.put_artifact(run_id, "checkpoint.safetensors", b"weights")
            registry.put_artifact(run_id, "checkpoint.json", b"{}")
            path = f"/another/host/{path.name}"
        registry.finish_run(run_id, RunStatus.COMPLETED, checkpoint=str(path), best_val_accuracy=0.97,
                            test_accuracy=0.97 + k / 1e5)
        ids.append(run_id)
    return ids


@pytest.fixture
def predictions(monkeypatch):
    """How many times a page asked a model for probabilities."""
    calls = []
    real = predict.predict_proba

    def counting(model, images):
        calls.append(1)
        return real(model, images)

    monkeypatch.setattr(predict, "predict_proba", counting)
    return calls


@pytest.fixture
def runs_read(monkeypatch):
    """How many runs each registry listing returned, while a page drew."""
    read = []
    real = registry.list_runs

    def counting(*args, **kwargs):
        found = real(*args, **kwargs)
        read.append(len(found))
        return found

    monkeypatch.setattr(registry, "list_runs", counting)  # what pages call
    monkeypatch.setattr(registry.runs, "list_runs", counting)  # ... and recent_runs within the registry
    return read


def test_compare_models_evaluates_at_most_the_cap_with_300_runs(predictions):
    ids = add_completed_runs(300)
    at = open_page("app_pages/draw.py")
    at.session_state[CANVAS] = canvas_state(drawn("one"))
    at.run()
    predictions.clear()
    at.toggle(key="draw_compare").set_value(True).run()
    assert not at.exception, messages(at)

    assert len(predictions) <= 1 + COMPARE_CAP  # the model in use, and the compared ones
    compared = [m.label for m in at.metric][1:]
    assert compared == ["mlp-256-64", "lenet5", "cnn-small", "cnn-strong"]  # by default: the committed ones
    pick = at.multiselect(key="draw_compare_pick")
    assert len(pick.options) <= PICKER_CAP
    # the newest runs' checkpoints are offered (newest by run id: runs made in one second order by
    # their random suffix); two runs in three have a checkpoint file here
    offered = [o.removeprefix("cnn-small-") for o in pick.options if o.startswith("cnn-small-")]
    local = sorted((run_id for k, run_id in enumerate(ids) if k % 3), reverse=True)
    assert offered and offered == local[:len(offered)]

    pick.set_value([o + ".safetensors" for o in pick.options[-COMPARE_CAP:]]).run()
    predictions.clear()
    at.session_state[CANVAS] = canvas_state(drawn("zero"))  # a stroke
    at.run()
    assert not at.exception, messages(at)
    assert len(predictions) == 1 + COMPARE_CAP
    assert len(at.metric) == 1 + COMPARE_CAP

    at.text_input(key="draw_compare_pick_search").set_value(ids[1]).run()  # the oldest run with a file here
    assert f"cnn-small-{ids[1]}" in at.multiselect(key="draw_compare_pick").options


def render(page: str):
    at = open_page(page)
    if page == "app_pages/evaluate.py":
        at.session_state["eval_tab"] = "Compare runs"
        at.run()
    assert not at.exception, messages(at)
    return at


@pytest.mark.parametrize("page", ["app_pages/home.py", "app_pages/train.py", "app_pages/evaluate.py",
                                  "app_pages/draw.py"])
def test_pages_read_as_many_runs_with_300_in_the_registry_as_with_150(page, runs_read):
    add_completed_runs(150)
    render(page)
    with_150 = sum(runs_read)
    add_completed_runs(150)
    runs_read.clear()
    at = render(page)

    assert sum(runs_read) == with_150 < 300, runs_read  # bounded: less than one listing of them all
    for box in at.selectbox:
        assert len(box.options) <= 100, box.key
    if page == "app_pages/train.py":
        assert len(at.dataframe[-1].value) == 25  # the runs table: a page of them
        assert any("of 300, newest first" in c.value for c in at.caption)


def test_trains_runs_table_pages_through_every_run_newest_first():
    ids = add_completed_runs(60)
    at = open_page("app_pages/train.py")
    assert list(at.dataframe[-1].value["run"]) == ids[::-1][:25]
    at.number_input(key="runs_page").set_value(3).run()
    assert not at.exception, messages(at)
    assert list(at.dataframe[-1].value["run"]) == ids[::-1][50:]  # the oldest ten
    assert any("Runs 51-60 of 60, newest first." == c.value for c in at.caption)
