"""One model object, many visitors: the server caches one model per checkpoint and every session uses it.

Each test runs one visitor's inspection (feature maps, attribution, penultimate features, the layer
table) over and over on one thread while a second visitor predicts other drawings on the same model
object on another thread, and checks that every answer either of them got is the answer it gets
alone. The second visitor keeps going until the first is done, so the test sets the pace, not the
machine. Python's thread switch interval is shortened for these tests so the two interleave often.
"""

from __future__ import annotations

import sys
import threading

import numpy as np
import pytest
import torch

from mnist_core import explain, inspection
from mnist_core.models import create_model, layer_table
from mnist_core.predict import predict_proba

ROUNDS = 150


@pytest.fixture(autouse=True)
def frequent_thread_switches():
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(before)


def drawings(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).random((n, 28, 28), dtype=np.float32)


def same(a, b) -> bool:
    """Equal answers: arrays to float rounding (the fused and stock LeNet-5 layers differ by 1e-7)."""
    if isinstance(a, (tuple, list)):
        return isinstance(b, (tuple, list)) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, np.ndarray):
        return isinstance(b, np.ndarray) and a.shape == b.shape and np.allclose(a, b, rtol=1e-4, atol=1e-5)
    if hasattr(a, "__dataclass_fields__"):
        return type(a) is type(b) and same(vars(a), vars(b))
    return a == b


def visitors_at_once(model, inspect_once, rounds: int = ROUNDS) -> tuple[int, int]:
    """(wrong inspections, wrong predictions) when one visitor inspects `rounds` times while another predicts."""
    theirs = drawings(3, seed=1)
    want_inspection = inspect_once(model)
    want_probs = predict_proba(model, theirs)
    done = threading.Event()
    wrong = {"inspection": 0, "prediction": 0}
    errors: list[BaseException] = []

    def inspector():
        try:
            for _ in range(rounds):
                wrong["inspection"] += not same(inspect_once(model), want_inspection)
        except BaseException as exc:  # noqa: BLE001 - reported by the test below
            errors.append(exc)
        finally:
            done.set()

    def predictor():
        try:
            while not done.is_set():
                wrong["prediction"] += not same(predict_proba(model, theirs), want_probs)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=inspector), threading.Thread(target=predictor)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[0]
    return wrong["inspection"], wrong["prediction"]


def shared(name: str):
    torch.manual_seed(0)
    return create_model(name).eval()  # as the server caches it: loaded once, in eval mode


MINE = drawings(1, seed=0)

INSPECTIONS = {  # what a visitor's inspection runs, and how many times the test repeats it
    "feature maps": (lambda model: inspection.feature_maps(model, MINE[0]), ROUNDS),
    "penultimate features": (lambda model: explain.penultimate(model, MINE), ROUNDS),
    "layer table": (lambda model: layer_table(model), ROUNDS),
    "saliency": (lambda model: explain.attribute(model, MINE[0], "saliency"), 30),  # a backward pass each
    "prediction": (lambda model: predict_proba(model, MINE), ROUNDS),  # two visitors drawing at once
}


@pytest.mark.parametrize("what", list(INSPECTIONS))
def test_inspecting_while_another_visitor_draws_shows_only_my_own_drawing(what):
    inspect_once, rounds = INSPECTIONS[what]
    assert visitors_at_once(shared("lenet5"), inspect_once, rounds) == (0, 0)


@pytest.mark.parametrize("name, rounds", [("cnn-strong", 100), ("mlp-256-64", 300)])  # an MLP's pass is brief
def test_feature_maps_of_every_kind_of_network_stay_private_under_concurrent_prediction(name, rounds):
    inspect_once, _ = INSPECTIONS["feature maps"]
    assert visitors_at_once(shared(name), inspect_once, rounds) == (0, 0)


def test_inspection_leaves_the_shared_model_untouched():
    model = shared("lenet5")
    for inspect_once, _ in INSPECTIONS.values():
        inspect_once(model)
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())
    assert not any(m.training for m in model.modules())
