"""mnist_core.evaluate: confusion matrix, per-class metrics, cells, model cards, run comparison."""

import numpy as np
import pytest

from mnist_core import evaluate as ev
from mnist_core.models import create_model


def fake_predictions() -> ev.Predictions:
    labels = np.array([0, 0, 1, 1, 1, 2, 2, 2])
    predicted = np.array([0, 1, 1, 1, 2, 2, 2, 0])
    confidence = np.array([0.9, 0.6, 0.8, 0.7, 0.95, 0.5, 0.9, 0.99], dtype=np.float32)
    probs = np.zeros((8, 10), np.float32)
    return ev.Predictions(labels, predicted, confidence, probs)


def test_confusion_matrix_counts_true_by_predicted():
    p = fake_predictions()
    cm = ev.confusion_matrix(p.labels, p.predicted)
    assert cm.shape == (10, 10) and cm.sum() == 8
    assert cm[0, 0] == 1 and cm[0, 1] == 1 and cm[1, 2] == 1 and cm[2, 0] == 1 and cm[2, 2] == 2


def test_per_class_precision_and_recall():
    p = fake_predictions()
    rows = ev.per_class(ev.confusion_matrix(p.labels, p.predicted))
    assert rows[1]["recall"] == pytest.approx(2 / 3)
    assert rows[1]["precision"] == pytest.approx(2 / 3)
    assert rows[0]["precision"] == pytest.approx(1 / 2) and rows[0]["support"] == 2
    assert np.isnan(rows[5]["precision"])


def test_cell_and_mistakes_are_most_confident_first():
    p = fake_predictions()
    assert ev.cell_indices(p, 2, 2).tolist() == [6, 5]
    assert ev.mistakes(p).tolist() == [7, 4, 1]
    assert p.accuracy == pytest.approx(5 / 8)


def test_predictions_of_a_model_on_uint8_images():
    model = create_model("lenet5")
    images = np.random.default_rng(0).integers(0, 256, (5, 28, 28), dtype=np.uint8)
    p = ev.predictions(model, images, np.arange(5))
    assert p.probs.shape == (5, 10) and p.predicted.shape == (5,)
    np.testing.assert_allclose(p.confidence, p.probs.max(1))


def test_model_card_counts_flops_and_parameters():
    card = ev.model_card(create_model("mlp-50"), "mlp-50", 0.97)
    # two matrix multiplies: 2 * (784*50 + 50*10) FLOPs
    assert card["MFLOPs / image"] == pytest.approx(2 * (784 * 50 + 50 * 10) / 1e6)
    assert card["parameters"] == 784 * 50 + 50 + 50 * 10 + 10
    assert card["latency ms (CPU, 1 thread)"] > 0
    assert card["article reports"] == "96.23%"
    assert "fc1 50" in card["layers"]


def test_compare_runs_gives_differences_to_the_baseline():
    class R:
        def __init__(self, id, acc):
            self.id, self.config, self.status = id, {"model": "lenet5"}, "completed"
            self.best_val_accuracy, self.test_accuracy, self.test_loss, self.duration = acc, acc, 0.1, 10.0

    rows = ev.compare_runs(R("a", 0.98), [R("b", 0.99)])
    assert rows[0]["Δ test_accuracy"] == 0 and rows[1]["Δ test_accuracy"] == pytest.approx(0.01)
    csv_text = ev.to_csv(rows)
    assert csv_text.splitlines()[0].startswith("run,model,status") and len(csv_text.splitlines()) == 3


def test_the_comparison_csv_writes_differences_as_the_page_does_not_with_float_noise():
    """Seen in the downloaded comparison: a difference of 0.013000000000000012."""
    import csv
    import io

    class R:
        def __init__(self, id, acc):
            self.id, self.config, self.status = id, {"model": "=cmd"}, "completed"
            self.best_val_accuracy, self.test_accuracy, self.test_loss, self.duration = acc, acc, 0.1, 10.0

    rows = list(csv.DictReader(io.StringIO(ev.to_csv(ev.compare_runs(R("a", 0.98), [R("b", 0.993)])))))
    assert rows[1]["Δ test_accuracy"] == "0.013" and rows[1]["test_accuracy"] == "0.993"
    assert rows[1]["model"] == "'=cmd"  # no formula a spreadsheet would run, here too


def test_measuring_a_model_cards_latency_leaves_every_other_thread_its_thread_count():
    """The server's sessions share one process: the one-thread latency of a card must not leave the
    server, or a session starting meanwhile, on one thread."""
    import threading

    import torch

    from mnist_core.evaluate import latency_ms

    class Probe(torch.nn.Module):  # notes the thread count inside the timing and in a thread started then
        def __init__(self):
            super().__init__()
            self.inside, self.started_meanwhile = [], []

        def forward(self, x):
            self.inside.append(torch.get_num_threads())
            t = threading.Thread(target=lambda: self.started_meanwhile.append(torch.get_num_threads()))
            t.start()
            t.join()
            return x

    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        probe = Probe()
        assert latency_ms(probe, repeats=3) >= 0
        assert set(probe.inside) == {1}  # timed on one thread
        assert set(probe.started_meanwhile) == {2}  # a session starting meanwhile keeps the server's count
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(previous)
