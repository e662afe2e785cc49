"""End to end on the full training set: queue a run, let the worker train LeNet-5 for one epoch,
then check the checkpoint it wrote; and a tutorial preset reproducing its article's figure."""

from __future__ import annotations

import pytest

from mnist_core import registry
from mnist_core.checkpoints import load_checkpoint
from mnist_core.data import load_mnist
from mnist_core.predict import predict_proba
from mnist_core.training import TrainConfig, evaluate, preset_config, train
from mnist_core.worker import execute_run


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_lenet5_reaches_98_percent_in_one_epoch_on_the_full_training_set(mnist):
    config = TrainConfig.from_dict(dict(model="lenet5", epochs=1, batch_size=128, optimizer="adamw", lr=0.006,
                                        schedule="onecycle", train_size=0, val_size=5_000, threads=1, device="cpu"))
    run_id = registry.create_run(config.to_dict())
    run = execute_run(run_id)

    assert run.status == "completed", run.error
    assert run.test_accuracy >= 0.98, f"LeNet-5 after one epoch: {run.test_accuracy:.4f} test accuracy"
    train_rows = registry.get_metrics(run_id, split="train")
    assert len(train_rows) == run.steps == -(-55_000 // 128)  # every one of the 55,000 images, once

    # The checkpoint on disk is the model that scored it.
    model, meta = load_checkpoint(run.checkpoint)
    images, labels = load_mnist("test")
    _, accuracy = evaluate(model, images, labels)
    assert accuracy == pytest.approx(run.test_accuracy, abs=1e-4)
    assert meta["metrics"]["test_accuracy"] == run.test_accuracy
    p = predict_proba(model, images[:2000].float() / 255)
    assert (p.argmax(1) == labels[:2000].numpy()).mean() >= 0.97


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_tutorial_mlp_mse_preset_reaches_the_articles_88_percent(mnist):
    """Tutorial 2 reported about 0.88 test accuracy; through a softmax the same recipe stalled at 40.8%
    (it never predicted a 4 or a 7), so the preset's loss is squared error on the raw outputs."""
    config = preset_config("tutorial-mlp-mse", threads=1, device="cpu")
    result = train(config)

    assert result.status == "completed"
    assert 0.86 <= result.test_accuracy <= 0.92, f"tutorial-mlp-mse: {result.test_accuracy:.4f} test accuracy"
    images, labels = load_mnist("test")
    predicted = predict_proba(result.model, images.float() / 255).argmax(1)
    assert set(predicted.tolist()) == set(range(10)), "every digit is predicted at least once"
