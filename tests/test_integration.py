"""End to end on the full training set: queue a run, let the worker train LeNet-5 for one epoch,
then check the checkpoint it wrote. About 10-20 s on one CPU thread (seconds on a GPU)."""

from __future__ import annotations

import pytest

from mnist_core import runs
from mnist_core.checkpoints import load_checkpoint
from mnist_core.data import load_mnist
from mnist_core.predict import predict_proba
from mnist_core.training import TrainConfig, evaluate
from mnist_core.worker import execute_run


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_lenet5_reaches_98_percent_in_one_epoch_on_the_full_training_set(mnist):
    config = TrainConfig.from_dict(dict(model="lenet5", epochs=1, batch_size=128, optimizer="adamw", lr=0.006,
                                        schedule="onecycle", train_size=0, val_size=5_000, threads=1, device="cpu"))
    run_id = runs.create_run(config.to_dict())
    run = execute_run(run_id)

    assert run.status == "completed", run.error
    assert run.test_accuracy >= 0.98, f"LeNet-5 after one epoch: {run.test_accuracy:.4f} test accuracy"
    train_rows = runs.get_metrics(run_id, split="train")
    assert len(train_rows) == run.steps == -(-55_000 // 128)  # every one of the 55,000 images, once

    # The checkpoint on disk is the model that scored it.
    model, meta = load_checkpoint(run.checkpoint)
    images, labels = load_mnist("test")
    _, accuracy = evaluate(model, images, labels)
    assert accuracy == pytest.approx(run.test_accuracy, abs=1e-4)
    assert meta["metrics"]["test_accuracy"] == run.test_accuracy
    p = predict_proba(model, images[:2000].float() / 255)
    assert (p.argmax(1) == labels[:2000].numpy()).mean() >= 0.97
