"""The numpy backend: hand-written layers checked against torch autograd and finite differences,
the im2col operators against torch's, and training through train() and the worker like any run."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mnist_core.errors import ConfigError
from mnist_core.models import create_model
from mnist_core.training.numpy_engine import copy_from_torch, copy_to_torch, mlp_for
from mnist_core.scratch import (MLP, SGD, Affine, Flatten, Normalize, ReLU, SoftmaxCrossEntropy, SoftmaxSquaredError,
                                SquaredError, avg_pool2d, conv2d, lenet5_speed_table, max_pool2d, normal_init,
                                xavier_uniform_init)
from mnist_core.training import TrainConfig, admit, train

MLPS = ["mlp-50", "mlp-90", "mlp-256-64", "mlp-128-64"]
SMALL = dict(backend="numpy", optimizer="sgd", schedule="none", threads=1, device="cpu")
TORCH_LOSSES = {
    "cross-entropy": (SoftmaxCrossEntropy, lambda z, y: F.cross_entropy(z, y)),
    "mse-onehot": (SoftmaxSquaredError, lambda z, y: F.mse_loss(z.softmax(1), F.one_hot(y, z.shape[1]).to(z.dtype))),
    "mse-logits": (SquaredError, lambda z, y: F.mse_loss(z, F.one_hot(y, z.shape[1]).to(z.dtype))),
}


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


# --- every layer's gradients against torch autograd (float64) -------------------------------------

def _affine():
    r = rng(1)
    w, b = r.standard_normal((7, 5)), r.standard_normal(5)
    return Affine(w.copy(), b.copy()), {"W": w, "b": b}, lambda x, p: x @ p["W"] + p["b"]


@pytest.mark.parametrize("make", [
    lambda: (Flatten(), {}, lambda x, p: x.reshape(len(x), -1)),
    lambda: (Normalize(0.1307, 0.3081), {}, lambda x, p: (x - 0.1307) / 0.3081),
    lambda: (ReLU(), {}, lambda x, p: torch.relu(x)),
    _affine,
], ids=["flatten", "normalize", "relu", "affine"])
def test_each_layers_backward_matches_torch_autograd(make):
    layer, params, torch_forward = make()
    shape = (6, 7) if isinstance(layer, Affine) else (6, 1, 3, 4)
    x = rng(2).standard_normal(shape)
    out = layer.forward(x)
    dout = rng(3).standard_normal(out.shape)
    dx = layer.backward(dout)

    x_t = torch.tensor(x, requires_grad=True)
    p_t = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
    out_t = torch_forward(x_t, p_t)
    out_t.backward(torch.tensor(dout))
    np.testing.assert_allclose(out, out_t.detach().numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dx, x_t.grad.numpy(), rtol=1e-10, atol=1e-12)
    for name, p in p_t.items():
        np.testing.assert_allclose(layer.grads[name], p.grad.numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("loss", list(TORCH_LOSSES))
def test_each_loss_value_and_gradient_match_torch_autograd(loss):
    ours, theirs = TORCH_LOSSES[loss]
    logits = 3 * rng(4).standard_normal((16, 10))
    labels = rng(5).integers(0, 10, 16)
    layer = ours()
    value = layer.forward(logits, labels)
    grad = layer.backward()

    z = torch.tensor(logits, requires_grad=True)
    expected = theirs(z, torch.tensor(labels))
    expected.backward()
    assert value == pytest.approx(expected.item(), rel=1e-12)
    np.testing.assert_allclose(grad, z.grad.numpy(), rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("loss", list(TORCH_LOSSES))
@pytest.mark.parametrize("name", ["mlp-50", "mlp-256-64"])
def test_the_whole_nets_gradients_match_torch_autograd_on_the_same_weights(name, loss):
    torch.manual_seed(0)
    model = create_model(name).double()
    net = copy_from_torch(model, mlp_for(model, dtype=np.float64))
    x = rng(6).random((32, 1, 28, 28))
    labels = rng(7).integers(0, 10, 32)
    ours, theirs = TORCH_LOSSES[loss]
    loss_layer = ours()
    value = loss_layer.forward(net.forward(x), labels)
    net.backward(loss_layer.backward())

    expected = theirs(model(torch.tensor(x)), torch.tensor(labels))
    expected.backward()
    assert value == pytest.approx(expected.item(), rel=1e-10)
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    for affine, linear in zip(net.affines, linears, strict=True):
        np.testing.assert_allclose(affine.grads["W"], linear.weight.grad.numpy().T, rtol=1e-8, atol=1e-12)
        np.testing.assert_allclose(affine.grads["b"], linear.bias.grad.numpy(), rtol=1e-8, atol=1e-12)


# --- and against finite differences, which need no torch at all ---------------------------------

@pytest.mark.parametrize("loss", list(TORCH_LOSSES))
def test_backprop_matches_central_finite_differences(loss):
    net = MLP((12, 9, 6, 10), init=xavier_uniform_init, rng=rng(8), mean=0.2, std=0.5, dtype=np.float64)
    x = rng(9).random((5, 12))
    labels = rng(10).integers(0, 10, 5)
    loss_layer = TORCH_LOSSES[loss][0]()

    def loss_at() -> float:
        return loss_layer.forward(net.forward(x), labels)

    loss_at()
    dx = net.backward(loss_layer.backward())
    analytic = [dict(a.grads) for a in net.affines]
    eps = 1e-6
    for affine, grads in zip(net.affines, analytic):
        for name, w in affine.params.items():
            numeric = np.zeros_like(w)
            for i in np.ndindex(w.shape):  # a few hundred entries of a tiny net
                saved = w[i]
                w[i] = saved + eps
                plus = loss_at()
                w[i] = saved - eps
                minus = loss_at()
                w[i] = saved
                numeric[i] = (plus - minus) / (2 * eps)
            np.testing.assert_allclose(grads[name], numeric, rtol=1e-5, atol=1e-9, err_msg=name)
    for i in [(0, 0), (2, 5), (4, 11)]:  # and the gradient with respect to the input
        saved = x[i]
        x[i] = saved + eps
        plus = loss_at()
        x[i] = saved - eps
        minus = loss_at()
        x[i] = saved
        assert dx[i] == pytest.approx((plus - minus) / (2 * eps), rel=1e-5, abs=1e-9)


# --- the NumPy net is the zoo's torch model ------------------------------------------------------

@pytest.mark.parametrize("name", MLPS)
def test_numpy_forward_equals_torch_forward_on_the_same_weights(name):
    net = mlp_for(create_model(name), init=xavier_uniform_init, rng=rng(11))
    model = copy_to_torch(net, create_model(name)).eval()
    x = rng(12).random((64, 1, 28, 28), dtype=np.float32)
    with torch.no_grad():
        expected = model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(net.forward(x), expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(net.forward(x).argmax(1), expected.argmax(1))


def test_tutorial_initialisations_have_the_articles_scale():
    w, b = normal_init(784, 50, rng(13))
    assert w.dtype == np.float32 and w.shape == (784, 50) and not b.any()
    assert w.std() == pytest.approx(0.01, rel=0.05)
    w, b = xavier_uniform_init(784, 90, rng(14))
    bound = math.sqrt(6 / (784 + 90))
    assert w.max() <= bound and w.min() >= -bound and w.max() > 0.95 * bound and not b.any()


@pytest.mark.parametrize("momentum, weight_decay", [(0.0, 0.0), (0.9, 0.01)])
def test_sgd_updates_exactly_as_torch_sgd(momentum, weight_decay):
    r = rng(15)
    w, b = r.standard_normal((4, 3)), r.standard_normal(3)
    layer = Affine(w.copy(), b.copy())
    optimizer = SGD([layer], lr=0.1, momentum=momentum, weight_decay=weight_decay)
    w_t, b_t = torch.tensor(w, requires_grad=True), torch.tensor(b, requires_grad=True)
    reference = torch.optim.SGD([w_t, b_t], lr=0.1, momentum=momentum, weight_decay=weight_decay)
    for _ in range(3):
        gw, gb = r.standard_normal((4, 3)), r.standard_normal(3)
        layer.grads = {"W": gw, "b": gb}
        optimizer.step()
        w_t.grad, b_t.grad = torch.tensor(gw), torch.tensor(gb)
        reference.step()
    np.testing.assert_allclose(layer.params["W"], w_t.detach().numpy(), rtol=1e-12)
    np.testing.assert_allclose(layer.params["b"], b_t.detach().numpy(), rtol=1e-12)


# --- tutorial 4: im2col convolution and pooling against torch -----------------------------------

@pytest.mark.parametrize("c_in, c_out, size, k, stride, padding", [
    (1, 6, 32, 5, 1, 0), (6, 16, 14, 5, 1, 0), (16, 120, 5, 5, 1, 0), (3, 4, 9, 3, 2, 1),
])
def test_im2col_conv2d_matches_torch(c_in, c_out, size, k, stride, padding):
    r = rng(16)
    x = r.standard_normal((4, c_in, size, size)).astype(np.float32)
    w = r.standard_normal((c_out, c_in, k, k)).astype(np.float32)
    b = r.standard_normal(c_out).astype(np.float32)
    expected = F.conv2d(torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(b), stride=stride,
                        padding=padding).numpy()
    ours = conv2d(x, w, b, stride=stride, padding=padding)
    assert ours.shape == expected.shape
    np.testing.assert_allclose(ours, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("ours, theirs", [(max_pool2d, F.max_pool2d), (avg_pool2d, F.avg_pool2d)],
                         ids=["max", "avg"])
@pytest.mark.parametrize("kernel, stride", [(2, None), (3, 2)])
def test_pooling_matches_torch(ours, theirs, kernel, stride):
    x = rng(17).standard_normal((3, 6, 11, 11)).astype(np.float32)
    expected = theirs(torch.from_numpy(x), kernel, stride).numpy()
    np.testing.assert_allclose(ours(x, kernel, stride), expected, rtol=1e-6, atol=1e-6)


def test_lenet5_speed_table_has_a_row_per_layer_and_the_operators_agree():
    rows = lenet5_speed_table(batch_size=8, repeats=1)
    assert [r["layer"] for r in rows] == ["C1", "S2", "C3", "S4", "C5"]
    for row in rows:
        assert {"layer", "operation", "numpy ms", "torch ms", "max abs diff"} <= set(row)
        assert row["numpy ms"] > 0 and row["torch ms"] > 0
        assert row["max abs diff"] < 1e-4, row


def test_lenet5_speed_table_uses_a_models_weights_when_given():
    torch.manual_seed(0)
    rows = lenet5_speed_table(batch_size=2, repeats=1, model=create_model("lenet5"))
    assert all(r["max abs diff"] < 1e-4 for r in rows)


# --- the config ------------------------------------------------------------------------------------

@pytest.mark.parametrize("values, field", [
    ({"model": "lenet5"}, "model"),
    ({"optimizer": "adamw"}, "optimizer"),
    ({"schedule": "onecycle"}, "schedule"),
    ({"augment": "affine"}, "augment"),
    ({"device": "cuda"}, "device"),
])
def test_an_unsupported_setting_is_refused_at_admission_and_by_train_naming_the_field(values, field):
    config = TrainConfig.from_dict({"model": "mlp-50", **SMALL, **values})  # a valid config: the torch engine runs it
    for attempt in (admit, train):
        with pytest.raises(ConfigError) as excinfo:
            attempt(config)
        message = str(excinfo.value)
        assert message.startswith(f"{field}:") and "numpy backend" in message and "\n" not in message


# --- training through train() and the worker --------------------------------------------------------

@pytest.fixture(scope="module")
def numpy_run(mnist):
    """The tutorial 1 net trained by the numpy backend on 2,000 images, shared by the tests that read it."""
    config = TrainConfig.from_dict(dict(model="mlp-50", lr=0.1, batch_size=50, epochs=2, train_size=2000,
                                        val_size=1000, **SMALL))
    events = []
    result = train(config, on_event=events.append)
    return config, result, events


def test_numpy_training_on_2000_images_clearly_beats_chance(numpy_run):
    config, result, events = numpy_run
    assert result.status == "completed"
    assert result.test_accuracy > 0.8, f"test accuracy {result.test_accuracy} on 2,000 training images"
    assert math.isfinite(result.test_loss) and result.best_val_accuracy > 0.8
    assert result.model.arch_name == "mlp-50" and not result.model.training


def test_numpy_training_reports_the_torch_engines_events(numpy_run):
    config, result, events = numpy_run
    steps_per_epoch = math.ceil(2000 / 50)
    total = steps_per_epoch * config.epochs
    step_events = [e for e in events if e["split"] == "train"]
    val_events = [e for e in events if e["split"] == "val"]
    assert [e["step"] for e in step_events] == list(range(1, total + 1)) and result.steps == total
    for e in step_events:
        assert set(e) == {"split", "step", "epoch", "loss", "accuracy", "images_per_s"}
        assert 0 <= e["accuracy"] <= 1 and e["images_per_s"] > 0
    assert step_events[-1]["epoch"] == pytest.approx(config.epochs)
    assert [e["step"] for e in val_events] == [steps_per_epoch, 2 * steps_per_epoch]
    assert result.best_val_accuracy == max(e["accuracy"] for e in val_events)
    assert events[-1]["split"] == "test" and events[-1]["accuracy"] == result.test_accuracy
    assert result.history == events


def test_the_returned_torch_model_scores_what_the_numpy_net_scored(numpy_run, mnist):
    from mnist_core.data import load_mnist
    from mnist_core.training import evaluate

    config, result, events = numpy_run
    images, labels = load_mnist("test")
    loss, acc = evaluate(result.model, images, labels, config)
    assert acc == pytest.approx(result.test_accuracy, abs=2e-4)  # float32 sums in another order
    assert loss == pytest.approx(result.test_loss, rel=1e-3)


def test_same_seed_same_numpy_run_and_another_seed_another(mnist):
    def losses(seed: int, **extra):
        config = TrainConfig.from_dict(dict(model="mlp-90", train_size=500, val_size=100, epochs=1, batch_size=50,
                                            eval_every=3, seed=seed, **{**SMALL, **extra}))
        events = []
        train(config, on_event=events.append, should_stop=lambda: sum(e["split"] == "train" for e in events) >= 6)
        return [(e["split"], e["step"], e["loss"]) for e in events]

    first = losses(7)
    assert [s for k, s, _ in first if k == "val"] == [3, 6]
    assert first == losses(7)
    assert first != losses(8)
    momentum = losses(7, optimizer="sgd-momentum", schedule="step", loss="mse-onehot")
    assert all(math.isfinite(x) for _, _, x in momentum) and momentum != first


def test_should_stop_cancels_a_numpy_run_between_steps(mnist):
    config = TrainConfig.from_dict(dict(model="mlp-128-64", train_size=1000, val_size=200, epochs=3, batch_size=50,
                                        **SMALL))
    events = []
    result = train(config, on_event=events.append, should_stop=lambda: sum(e["split"] == "train" for e in events) >= 5)
    assert result.status == "cancelled" and result.steps == 5
    assert result.test_accuracy is None and "test" not in {e["split"] for e in events}


def test_the_workers_checkpoint_of_a_numpy_run_loads_and_predicts(mnist):
    from mnist_core import registry
    from mnist_core.checkpoints import load_checkpoint
    from mnist_core.data import load_mnist
    from mnist_core.predict import predict_proba
    from mnist_core.worker import execute_run

    config = TrainConfig.from_dict(dict(model="mlp-90", lr=1.0, loss="mse-onehot", train_size=1000, val_size=200,
                                        epochs=1, batch_size=50, **SMALL))
    run = execute_run(registry.create_run(config.to_dict()))
    assert run.status == "completed" and run.checkpoint
    model, meta = load_checkpoint(run.checkpoint)
    assert meta["architecture"] == "mlp-90" and meta["config"]["backend"] == "numpy"
    images, labels = load_mnist("test")
    probabilities = predict_proba(model, images[:500].float() / 255)
    accuracy = (probabilities.argmax(1) == labels[:500].numpy()).mean()
    assert accuracy > 0.6
    assert len(registry.get_metrics(run.id, split="train")) == math.ceil(1000 / 50)


@pytest.mark.parametrize("name", ["tutorial-numpy-2layer", "tutorial-numpy-mlp90"])
def test_the_numpy_tutorial_presets_run_on_the_numpy_engine_they_reproduce(name):
    from mnist_core.training import admit, preset_config

    assert admit(preset_config(name)).backend == "numpy"
