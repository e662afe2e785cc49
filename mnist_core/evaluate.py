"""Evaluation and comparison: test-set predictions, the confusion matrix and its cells, per-class
precision and recall, a model on the visitors' drawings (evaluate_on_drawings), model cards (layers,
parameters, FLOPs, latency, accuracy), and runs compared against a baseline run.

The Evaluate page draws these; they are plain functions on numpy arrays so tests need no browser.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch
from torch import nn

from .csvfile import csv_text
from .drawings import drawing_set
from .errors import DrawingRefused
from .models import count_parameters, create_model, layer_table, list_models, model_info
from .predict import predict_proba


@dataclass
class Predictions:
    """A model's answers on a set of images."""

    labels: np.ndarray       # int64 [N] true labels
    predicted: np.ndarray    # int64 [N]
    confidence: np.ndarray   # float32 [N], probability of the predicted class
    probs: np.ndarray        # float32 [N,10]

    @property
    def accuracy(self) -> float:
        return float((self.labels == self.predicted).mean()) if len(self.labels) else float("nan")


def predictions(model: nn.Module, images_u8, labels) -> Predictions:
    """Run `model` over uint8 images [N,28,28] (numpy or torch) in large inference batches."""
    images = torch.as_tensor(np.asarray(images_u8)).float().div_(255)
    probs = predict_proba(model, images)
    labels = np.asarray(labels, dtype=np.int64)
    predicted = probs.argmax(1).astype(np.int64)
    return Predictions(labels, predicted, probs[np.arange(len(probs)), predicted], probs)


def accuracies(models: list[nn.Module], images_u8, labels) -> list[float]:
    """Each model's accuracy on the same images: one job for a whole leaderboard."""
    return [predictions(model, images_u8, labels).accuracy for model in models]


def confusion_matrix(labels: np.ndarray, predicted: np.ndarray, n: int = 10) -> np.ndarray:
    """[true, predicted] counts, int64 [n,n]."""
    return np.bincount(np.asarray(labels) * n + np.asarray(predicted), minlength=n * n).reshape(n, n)


def per_class(cm: np.ndarray) -> list[dict]:
    """Precision, recall and support of each class from a confusion matrix."""
    rows = []
    for c in range(cm.shape[0]):
        tp, predicted_c, actual_c = cm[c, c], cm[:, c].sum(), cm[c, :].sum()
        rows.append({"digit": c, "precision": tp / predicted_c if predicted_c else float("nan"),
                     "recall": tp / actual_c if actual_c else float("nan"), "support": int(actual_c)})
    return rows


def cell_indices(p: Predictions, true: int, predicted: int) -> np.ndarray:
    """Indices of the images with this true and predicted label, most confident first."""
    idx = np.flatnonzero((p.labels == true) & (p.predicted == predicted))
    return idx[np.argsort(-p.confidence[idx], kind="stable")]


def mistakes(p: Predictions) -> np.ndarray:
    """Indices of every wrong prediction, most confident mistakes first."""
    idx = np.flatnonzero(p.labels != p.predicted)
    return idx[np.argsort(-p.confidence[idx], kind="stable")]


# --- on the visitors' drawings -----------------------------------------------------------------------

@dataclass
class SetEvaluation:
    """A model's answers on a set of pictures, with the pictures (what Evaluate shows for a set)."""

    predictions: Predictions
    images: np.ndarray   # uint8 [N,28,28]
    ids: np.ndarray      # int64 [N]: the drawings' ids

    @property
    def accuracy(self) -> float:
        return self.predictions.accuracy

    def confusion(self) -> np.ndarray:
        return confusion_matrix(self.predictions.labels, self.predictions.predicted)

    def per_digit(self) -> list[dict]:
        """Precision, recall and count of each digit (per_class)."""
        return per_class(self.confusion())

    def mistakes(self) -> np.ndarray:
        """Indices (into images) of every wrong answer, most confident first."""
        return mistakes(self.predictions)


def evaluate_on_drawings(model: nn.Module, part: str = "all", root=None) -> SetEvaluation:
    """`model` on the visitors' drawings: the whole set, or its "train" or "held-out" part (split by
    giver: a run trained on the drawings is measured fairly only on "held-out"). DrawingRefused when
    that part holds no drawing yet."""
    images, labels, ids = drawing_set(root, part)
    if not len(images):
        raise DrawingRefused("the drawing set has no drawings yet" if part == "all" else
                             f"the drawing set has no {part} drawings yet")
    return SetEvaluation(predictions(model, images, labels), images, ids)


# --- model cards ---------------------------------------------------------------------------------

def flops_per_image(model: nn.Module) -> int:
    """Floating-point operations of one forward pass on one 28x28 image (torch's flop counter)."""
    from torch.utils.flop_counter import FlopCounterMode  # here: it loads torch's tracing code, for cards only

    model.eval()
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, 1, 28, 28))
    return int(counter.get_total_flops())


_one_thread_timing = threading.Lock()


def latency_ms(model: nn.Module, repeats: int = 50) -> float:
    """Median single-image CPU latency in milliseconds, on one thread, in inference mode.

    The server is shared: its other sessions must keep their thread count while a card is measured.
    torch.set_num_threads sets the calling thread's own count and the default that threads started
    afterwards begin with. So the timing runs in a thread of its own set to one thread, and the
    caller puts the default straight back (its own count is that value already) before the timing
    starts: no other thread, running or new, ever runs on one thread because of it.
    """
    model.eval()
    x = torch.rand(1, 1, 28, 28)
    times: list[float] = []
    failure: list[BaseException] = []
    set_to_one, default_restored = threading.Event(), threading.Event()

    def measure() -> None:
        try:
            torch.get_num_threads()  # a thread takes the default at its first torch call: take it before setting 1
            torch.set_num_threads(1)
            set_to_one.set()
            default_restored.wait()
            with torch.inference_mode():
                for _ in range(5):
                    model(x)
                for _ in range(repeats):
                    t = time.perf_counter()
                    model(x)
                    times.append(time.perf_counter() - t)
        except BaseException as exc:  # noqa: BLE001 - raised again in the caller
            failure.append(exc)
        finally:
            set_to_one.set()

    with _one_thread_timing:  # one measurement at a time, so the default put back is never a "1"
        threads = torch.get_num_threads()
        timer = threading.Thread(target=measure, name="latency", daemon=True)
        timer.start()
        set_to_one.wait()
        torch.set_num_threads(threads)
        default_restored.set()
        timer.join()
    if failure:
        raise failure[0]
    return float(np.median(times) * 1000)


SHOWN_LAYERS = ("Conv2d", "Linear", "MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d")


def model_card(model: nn.Module, name: str, test_accuracy: Optional[float] = None, kind: str = "checkpoint") -> dict:
    """One row of the model-card table."""
    arch = getattr(model, "arch_name", name)
    info = model_info(arch) if arch in list_models() else None  # an imported model is no zoo architecture
    layers = layer_table(model)
    return {
        "model": name, "kind": kind, "architecture": arch,
        "layers": " → ".join(f"{r['layer']} {r['output shape']}" for r in layers if r["type"] in SHOWN_LAYERS),
        "parameters": count_parameters(model), "MFLOPs / image": flops_per_image(model) / 1e6,
        "latency ms (CPU, 1 thread)": latency_ms(model),
        "test accuracy": test_accuracy, "article reports": info.reported_accuracy if info else "",
        "provenance": info.provenance if info else "uploaded ONNX file",
    }


def architecture_cards() -> list[dict]:
    """A card per zoo architecture, untrained (no accuracy)."""
    return [model_card(create_model(n), n, kind="architecture (untrained)") for n in list_models()]


# --- comparing runs --------------------------------------------------------------------------------

COMPARE_FIELDS = ("best_val_accuracy", "test_accuracy", "test_loss", "duration")


def compare_runs(baseline, others) -> list[dict]:
    """Rows of final metrics for the baseline and each other run, with the difference to the baseline."""
    rows = []
    for r in [baseline, *others]:
        row = {"run": r.id, "model": r.config.get("model"), "status": r.status}
        for f in COMPARE_FIELDS:
            value = getattr(r, f)
            base = getattr(baseline, f)
            row[f] = value
            row[f"Δ {f}"] = (value - base) if value is not None and base is not None else None
        rows.append(row)
    return rows


def to_csv(rows: list[dict]) -> str:
    """compare_runs' rows as CSV text (csvfile: 0.013, not 0.013000000000000012); "" for no rows."""
    return csv_text(rows) if rows else ""
