"""The hand-written CPU kernels (mnist_core.kernels) against PyTorch's stock operators.

Where a C compiler exists (CI's machine has one) the kernels must build; the tests skip only on a
machine without one, and the fallback tests run everywhere.
"""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from mnist_core import kernels
from mnist_core.data import MNIST_MEAN, MNIST_STD
from mnist_core.models import create_model

HAS_CC = shutil.which("cc") is not None
# `make unit-stock` runs the suite with the kernels off (MNIST_KERNELS=0): the tests of the kernels
# themselves have nothing to test there.
needs_kernels = pytest.mark.skipif(not HAS_CC or os.environ.get("MNIST_KERNELS") == "0",
                                   reason="no C compiler (cc) on this machine, or MNIST_KERNELS=0")


@pytest.fixture
def fresh_kernels(monkeypatch, tmp_path):
    """Kernels loaded again, built into a temporary folder, under whatever env the test sets (not the
    suite's: `make unit-stock` runs it all with MNIST_KERNELS=0)."""
    monkeypatch.setenv("MNIST_KERNEL_DIR", str(tmp_path / "kernels"))
    monkeypatch.delenv("MNIST_KERNELS", raising=False)
    kernels.reset()
    yield tmp_path / "kernels"
    kernels.reset()


def stock_stage(x, weight, bias):
    padded = F.pad(x, (2,) * 4)
    return F.max_pool2d(F.relu(F.conv2d((padded - MNIST_MEAN) / MNIST_STD, weight, bias)), 2)


def images(n: int, seed: int = 0) -> torch.Tensor:
    """Random strokes on a blank background: blank regions make the 2x2 windows tie, as in MNIST."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, 28, 28, generator=g)
    x[torch.rand(n, 1, 28, 28, generator=g) < 0.7] = 0.0
    x[:, :, :6] = 0.0
    if n > 1:
        x[1] = 0.0  # one image entirely blank
    return x


@needs_kernels
def test_kernels_build_where_a_compiler_exists(fresh_kernels):
    assert kernels.status().startswith("not built yet: `make kernels` builds them")
    assert kernels.available(), kernels.status()
    assert kernels.status().startswith("compiled")
    built = list(fresh_kernels.glob("lenet5-*.so"))
    assert len(built) == 1 and not list(fresh_kernels.glob(".lenet5-*"))  # no temporary left behind
    kernels.reset()
    assert kernels.status() == f"built ({built[0].name}), used by training workers"  # said without loading
    assert kernels.available() and list(fresh_kernels.glob("lenet5-*.so")) == built  # reused, not rebuilt


@needs_kernels
@pytest.mark.parametrize("n,maps,threads", [(64, 6, 2), (64, 6, 1), (1, 6, 1), (5, 16, 2), (3, 1, 2)])
def test_conv_relu_maxpool_matches_the_stock_operators(n, maps, threads):
    torch.set_num_threads(threads)
    try:
        x = images(n)
        g = torch.Generator().manual_seed(1)
        w = (torch.randn(maps, 1, 5, 5, generator=g) * 0.3).requires_grad_()
        b = (torch.randn(maps, generator=g) * 0.3).requires_grad_()
        grad_out = torch.randn(n, maps, 14, 14, generator=g)

        ours = kernels.conv_relu_maxpool(x, w, b, MNIST_MEAN, MNIST_STD)
        ref = stock_stage(x, w, b)
        assert ours.shape == (n, maps, 14, 14) and ours.is_contiguous()
        torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-5)
        assert (ours == 0).sum() == (ref == 0).sum()  # ReLU zeroes the same outputs

        ours_g = torch.autograd.grad(ours, (w, b), grad_out)
        ref_g = torch.autograd.grad(ref, (w, b), grad_out)
        for a, r in zip(ours_g, ref_g):
            torch.testing.assert_close(a, r, rtol=1e-4, atol=1e-4 * r.abs().max().item())
    finally:
        torch.set_num_threads(1)


@needs_kernels
def test_the_gradient_goes_to_the_first_maximum_of_a_window():
    # A window with two equal positive maxima at different pixels: max_pool2d gives the whole
    # gradient to the first (row-major); so must the kernel, or the weight gradient differs.
    x = torch.zeros(1, 1, 28, 28)
    x[0, 0, 10, 10] = x[0, 0, 10, 11] = 1.0  # conv output peaks tie inside windows
    w = torch.zeros(1, 1, 5, 5)
    w[0, 0, 2, 2] = 1.0
    w[0, 0, 0, 0] = 0.5  # makes the two tied positions see different neighbourhoods elsewhere
    w.requires_grad_()
    b = torch.tensor([2.0], requires_grad=True)
    grad_out = torch.rand(1, 1, 14, 14, generator=torch.Generator().manual_seed(0))
    ours = kernels.conv_relu_maxpool(x, w, b, MNIST_MEAN, MNIST_STD)
    ref = stock_stage(x, w, b)
    torch.testing.assert_close(ours, ref)
    for a, r in zip(torch.autograd.grad(ours, (w, b), grad_out), torch.autograd.grad(ref, (w, b), grad_out)):
        torch.testing.assert_close(a, r, rtol=1e-5, atol=1e-5)


@needs_kernels
def test_nan_propagates_as_in_the_stock_operators():
    x = images(2)
    x[0, 0, 14, 14] = float("nan")
    g = torch.Generator().manual_seed(3)
    w, b = torch.randn(6, 1, 5, 5, generator=g), torch.randn(6, generator=g)
    ours, ref = kernels.conv_relu_maxpool(x, w, b, MNIST_MEAN, MNIST_STD), stock_stage(x, w, b)
    assert torch.equal(ours.isnan(), ref.isnan()) and ours.isnan().any()
    torch.testing.assert_close(ours, ref, equal_nan=True, rtol=1e-5, atol=1e-5)


@needs_kernels
def test_the_gradient_reads_any_strides():
    x = images(4)
    g = torch.Generator().manual_seed(2)
    w = torch.randn(6, 1, 5, 5, generator=g).requires_grad_()
    b = torch.randn(6, generator=g).requires_grad_()
    ours = kernels.conv_relu_maxpool(x, w, b, MNIST_MEAN, MNIST_STD)
    for grad_out in (torch.randn(4, 14, 14, 6, generator=g).permute(0, 3, 1, 2),
                     torch.randn(1, 6, 1, 1, generator=g).expand(4, 6, 14, 14)):
        got = torch.autograd.grad(ours, (w, b), grad_out, retain_graph=True)
        want = torch.autograd.grad(stock_stage(x, w, b), (w, b), grad_out.contiguous())
        for a, r in zip(got, want):  # sums of thousands of terms in another order: relative to the largest
            torch.testing.assert_close(a, r, rtol=1e-4, atol=1e-4 * r.abs().max().item())


@needs_kernels
def test_same_input_same_bits():
    torch.set_num_threads(2)
    try:
        x = images(64)
        w = torch.randn(6, 1, 5, 5, requires_grad=True)
        b = torch.randn(6, requires_grad=True)
        grad_out = torch.randn(64, 6, 14, 14)
        runs = [torch.autograd.grad(kernels.conv_relu_maxpool(x, w, b, MNIST_MEAN, MNIST_STD), (w, b), grad_out)
                for _ in range(3)]
        assert all(torch.equal(r[0], runs[0][0]) and torch.equal(r[1], runs[0][1]) for r in runs)
    finally:
        torch.set_num_threads(1)


@needs_kernels
def test_inputs_it_does_not_cover_are_refused_with_one_line():
    w, b = torch.randn(6, 1, 5, 5), torch.randn(6)
    for x, weight in ((torch.rand(2, 1, 32, 32), w), (torch.rand(2, 1, 28, 28).double(), w),
                      (torch.rand(2, 1, 28, 28), torch.randn(17, 1, 5, 5)), (torch.rand(2, 3, 28, 28), w),
                      (torch.rand(2, 1, 28, 28, requires_grad=True), w)):
        assert not kernels.conv_relu_maxpool_applies(x, weight, b)
        with pytest.raises(ValueError, match="conv_relu_maxpool: needs"):
            kernels.conv_relu_maxpool(x, weight, b[:weight.shape[0]], MNIST_MEAN, MNIST_STD)


def stock_stage2(x, weight, bias):
    return F.avg_pool2d(F.relu(F.conv2d(x, weight, bias)), 2)


def stage2_inputs(n: int, layout: str, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.relu(torch.randn(n, 6, 14, 14, generator=g))  # what S2 hands on: ReLU'd, many zeros
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    elif layout == "strided":  # a view with gaps between rows
        x = torch.relu(torch.randn(n, 6, 14, 20, generator=g))[..., 3:17]
    w = (torch.randn(16, 6, 5, 5, generator=g) * 0.2).requires_grad_()
    b = (torch.randn(16, generator=g) * 0.2).requires_grad_()
    return x.requires_grad_(), w, b, torch.randn(n, 16, 5, 5, generator=g)


@needs_kernels
@pytest.mark.parametrize("n,threads,layout", [(64, 2, "contiguous"), (64, 1, "channels_last"), (1, 1, "contiguous"),
                                              (7, 2, "strided")])
def test_conv_relu_avgpool_matches_the_stock_operators(n, threads, layout):
    torch.set_num_threads(threads)
    try:
        x, w, b, grad_out = stage2_inputs(n, layout)
        ours, ref = kernels.conv_relu_avgpool(x, w, b), stock_stage2(x, w, b)
        assert ours.shape == (n, 16, 5, 5) and ours.is_contiguous()
        torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-5)
        for a, r in zip(torch.autograd.grad(ours, (x, w, b), grad_out), torch.autograd.grad(ref, (x, w, b), grad_out)):
            torch.testing.assert_close(a, r, rtol=1e-4, atol=1e-4 * r.abs().max().item())
    finally:
        torch.set_num_threads(1)


@needs_kernels
def test_conv_relu_avgpool_passes_nan_on_and_repeats_its_bits():
    x, w, b, grad_out = stage2_inputs(3, "contiguous")
    x = x.detach().clone()
    x[0, 2, 7, 7] = float("nan")
    ours, ref = kernels.conv_relu_avgpool(x, w, b), stock_stage2(x, w, b)
    assert torch.equal(ours.isnan(), ref.isnan()) and ours.isnan().any()
    x, w, b, grad_out = stage2_inputs(64, "contiguous")
    runs = [torch.autograd.grad(kernels.conv_relu_avgpool(x, w, b), (x, w, b), grad_out) for _ in range(3)]
    assert all(torch.equal(a, c) for run in runs for a, c in zip(run, runs[0]))


@needs_kernels
def test_conv_relu_avgpool_refuses_what_it_does_not_cover():
    x, w, b, _ = stage2_inputs(2, "contiguous")
    for args in ((torch.rand(2, 6, 16, 16), w, b), (x.double(), w, b), (x, torch.randn(8, 6, 5, 5), b[:8]),
                 (x, w, None)):
        assert not kernels.conv_relu_avgpool_applies(*args)
        with pytest.raises(ValueError, match="conv_relu_avgpool: needs"):
            kernels.conv_relu_avgpool(*args)
    assert kernels.conv_relu_avgpool_applies(None, w, b)  # parameters alone, for LeNet5's check


# --- the seam: a LeNet-5 fused for training uses the kernels where it can, the stock layers elsewhere ----

def ran_on_kernels(model, x) -> bool:
    """Whether a forward pass took the kernels: the stock path runs aten convolutions (C5, a matrix
    product, never does)."""
    with torch.profiler.profile() as prof:
        model(x)
    return not [e.key for e in prof.key_averages() if "conv" in e.key]


def fused_lenet5(**to):
    """A zoo LeNet-5 and a copy of it (the same weights) fused for training."""
    torch.manual_seed(0)
    model = create_model("lenet5")
    if to:
        model = model.to(**to)
    fused = copy.deepcopy(model)
    assert kernels.fuse(fused) and kernels.is_fused(fused) and not kernels.is_fused(model)
    return model, fused


@needs_kernels
@pytest.mark.parametrize("training", [True, False])
def test_a_fused_lenet5_gives_the_zoo_models_outputs_and_gradients(training):
    model, fused = fused_lenet5()
    model.train(training), fused.train(training)
    x = images(16)
    assert ran_on_kernels(fused, x) and not ran_on_kernels(model, x)
    ours, stock = fused(x), model(x)
    torch.testing.assert_close(ours, stock, rtol=1e-5, atol=1e-5)
    grads = torch.autograd.grad(ours.sum(), list(fused.parameters()))
    for a, r in zip(grads, torch.autograd.grad(stock.sum(), list(model.parameters()))):
        torch.testing.assert_close(a, r, rtol=1e-4, atol=1e-5)
    assert fused.state_dict().keys() == model.state_dict().keys()
    assert type(kernels.unfuse(fused)) is type(model) and not ran_on_kernels(fused, x)


@needs_kernels
def test_a_fused_lenet5_in_channels_last_memory_gives_the_same_results():
    # channels_last weights are copied to plain layout for the kernels (C3's is not contiguous then)
    model, fused = fused_lenet5(memory_format=torch.channels_last)
    assert not fused.body.C3.conv.weight.is_contiguous()
    x = images(8)
    ours, stock = fused.train()(x), model.train()(x)
    torch.testing.assert_close(ours, stock, rtol=1e-5, atol=1e-5)
    grads = torch.autograd.grad(ours.sum(), list(fused.parameters()))
    for a, r in zip(grads, torch.autograd.grad(stock.sum(), list(model.parameters()))):
        torch.testing.assert_close(a, r, rtol=1e-4, atol=1e-5)


@needs_kernels
def test_a_fused_lenet5_steps_aside_for_hooks_input_gradients_and_other_inputs():
    _, model = fused_lenet5()
    model.eval()
    x = images(2)
    assert ran_on_kernels(model, x)
    seen = []
    handle = model.body.C1.register_forward_hook(lambda m, i, o: seen.append(o.shape))
    assert not ran_on_kernels(model, x)
    handle.remove()
    assert seen == [torch.Size([2, 6, 28, 28])]  # the feature-map hook still sees C1's own output
    xg = x.clone().requires_grad_()  # saliency wants d(output)/d(input)
    assert not ran_on_kernels(model, xg)
    (grad,) = torch.autograd.grad(model(xg)[:, 3].sum(), xg)
    assert grad.abs().sum() > 0
    assert not ran_on_kernels(model.double(), x.double())
    model.float()
    handle = model.body.S4.register_forward_pre_hook(lambda m, i: None)  # any of the four fused layers
    assert not ran_on_kernels(model, x)
    handle.remove()
    assert ran_on_kernels(model, x)


def test_only_a_lenet5_is_fused_and_nothing_is_built_with_the_kernels_off(fresh_kernels, monkeypatch):
    monkeypatch.setenv("MNIST_KERNELS", "0")
    assert kernels.status().startswith("off (MNIST_KERNELS=0)")
    model = create_model("lenet5").train()
    assert kernels.fits(model) and not kernels.fits(create_model("cnn-small"))
    assert not kernels.fuse(model) and not kernels.is_fused(model) and not kernels.available()
    out = model(images(4))
    assert out.shape == (4, 10) and torch.isfinite(out).all()
    assert not fresh_kernels.exists()  # nothing was compiled


@needs_kernels
def test_the_engine_trains_lenet5_on_the_kernels_and_hands_back_the_zoo_model(mnist):
    from mnist_core.training import TrainConfig, train

    during = []
    config = TrainConfig(model="lenet5", train_size=128, val_size=64, batch_size=64, epochs=1, threads=1,
                         device="cpu", schedule="none")
    result = train(config, on_snapshot=lambda model, step, epoch: during.append(kernels.is_fused(model)))
    assert during and all(during)  # the live model trained on the kernels
    assert not kernels.is_fused(result.model) and type(result.model) is type(create_model("lenet5"))


@needs_kernels
@pytest.mark.parametrize("lanes", [8, 16])
def test_both_vector_widths_give_the_stock_results(fresh_kernels, monkeypatch, lanes):
    """lenet5.c picks 16-float vectors with AVX-512 and 8 otherwise; each width is built here (the one
    this CPU does not pick still compiles and runs, GCC splitting its vectors), NaN included; under
    `make kernels-asan` with the sanitizers too."""
    monkeypatch.setenv("MNIST_KERNEL_CFLAGS", f"{os.environ.get('MNIST_KERNEL_CFLAGS', '')} -DMNIST_LANES={lanes}")
    assert kernels.available(), kernels.status()
    torch.set_num_threads(2)
    try:
        x1 = images(9, seed=lanes)
        x1[3, 0, 10, 10] = float("nan")
        w1, b1 = torch.randn(6, 1, 5, 5, requires_grad=True), torch.randn(6, requires_grad=True)
        g1 = torch.randn(9, 6, 14, 14)
        ours1, ref1 = kernels.conv_relu_maxpool(x1, w1, b1, MNIST_MEAN, MNIST_STD), stock_stage(x1, w1, b1)
        torch.testing.assert_close(ours1, ref1, equal_nan=True, rtol=1e-5, atol=1e-5)
        x1[3] = 0.0  # the gradients, without the NaN
        ours1, ref1 = kernels.conv_relu_maxpool(x1, w1, b1, MNIST_MEAN, MNIST_STD), stock_stage(x1, w1, b1)
        for a, r in zip(torch.autograd.grad(ours1, (w1, b1), g1), torch.autograd.grad(ref1, (w1, b1), g1)):
            torch.testing.assert_close(a, r, rtol=1e-4, atol=1e-4 * r.abs().max().item())
        x2, w2, b2, g2 = stage2_inputs(9, "strided", seed=lanes)
        ours2, ref2 = kernels.conv_relu_avgpool(x2, w2, b2), stock_stage2(x2, w2, b2)
        torch.testing.assert_close(ours2, ref2, rtol=1e-5, atol=1e-5)
        for a, r in zip(torch.autograd.grad(ours2, (x2, w2, b2), g2), torch.autograd.grad(ref2, (x2, w2, b2), g2)):
            torch.testing.assert_close(a, r, rtol=1e-4, atol=1e-4 * r.abs().max().item())
    finally:
        torch.set_num_threads(1)


@needs_kernels
@pytest.mark.parametrize("threads", [3, 4])
def test_more_threads_than_cores_give_the_stock_results_and_the_same_bits_every_time(threads):
    """OpenMP regions sized by torch's thread count, above the 2 cores CI has: each thread sums its own
    slice, so the answer must not depend on how the threads were scheduled."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        x1 = images(64, seed=threads)
        w1, b1 = torch.randn(6, 1, 5, 5, requires_grad=True), torch.randn(6, requires_grad=True)
        x2 = torch.randn(64, 6, 14, 14, requires_grad=True)
        w2, b2 = torch.randn(16, 6, 5, 5, requires_grad=True), torch.randn(16, requires_grad=True)
        g1, g2 = torch.randn(64, 6, 14, 14), torch.randn(64, 16, 5, 5)

        def both():
            out1 = kernels.conv_relu_maxpool(x1, w1, b1, MNIST_MEAN, MNIST_STD)
            out2 = kernels.conv_relu_avgpool(x2, w2, b2)
            return [out1, out2, *torch.autograd.grad(out1, (w1, b1), g1), *torch.autograd.grad(out2, (x2, w2, b2), g2)]

        first = both()
        assert all(all(torch.equal(a, b) for a, b in zip(first, both())) for _ in range(3))
        ref1, ref2 = stock_stage(x1, w1, b1), stock_stage2(x2, w2, b2)
        torch.testing.assert_close(first[0], ref1, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(first[1], ref2, rtol=1e-5, atol=1e-5)
        stock_grads = [*torch.autograd.grad(ref1, (w1, b1), g1), *torch.autograd.grad(ref2, (x2, w2, b2), g2)]
        for a, r in zip(first[2:], stock_grads):
            torch.testing.assert_close(a, r, rtol=1e-4, atol=1e-4 * r.abs().max().item())
    finally:
        torch.set_num_threads(previous)


def test_the_web_servers_code_paths_never_load_the_kernel_library(tmp_path):
    """What the Streamlit server runs on a LeNet-5 (load a checkpoint, predict, feature maps, a model card
    with its latency, FLOPs, the Train page's kernel status line) maps no lenet5-*.so into the process."""
    script = (
        "import torch\n"
        "from mnist_core import evaluate, inspection, kernels, predict\n"
        "from mnist_core.checkpoints import load_checkpoint\n"
        "from mnist_core.models import create_model\n"
        "model = create_model('lenet5').eval()\n"
        "predict.predict_proba(model, torch.rand(3, 1, 28, 28))\n"
        "predict.predict_proba(model, torch.rand(64, 1, 28, 28))\n"
        "inspection.feature_maps(model, torch.zeros(28, 28, dtype=torch.uint8).numpy())\n"
        "evaluate.model_card(model, 'lenet5')\n"
        "print(kernels.status())\n"
        "maps = open('/proc/self/maps').read()\n"
        "print('LOADED' if 'lenet5-' in maps else 'CLEAN')\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                          cwd=Path(__file__).resolve().parent.parent)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.splitlines()[-1] == "CLEAN", done.stdout


def test_a_missing_compiler_falls_back_with_the_reason(fresh_kernels, monkeypatch):
    monkeypatch.setenv("CC", "no-such-compiler-xyz")
    assert kernels.status() == "no C compiler (no-such-compiler-xyz): PyTorch's stock layers"
    model = create_model("lenet5").train()
    assert not kernels.fuse(model) and not kernels.available()
    assert kernels.status() == "no C compiler (no-such-compiler-xyz): PyTorch's stock layers"
    assert model(images(2)).shape == (2, 10)


def test_a_failing_compiler_leaves_nothing_half_written(fresh_kernels, monkeypatch, tmp_path):
    broken = tmp_path / "broken-cc"
    broken.write_text("#!/bin/sh\nif [ \"$1\" = --version ]; then echo broken 1.0; exit 0; fi\n"
                      "echo 'broken-cc: error: out of luck' >&2\nexit 1\n")
    broken.chmod(0o755)
    monkeypatch.setenv("CC", str(broken))
    assert not kernels.available()
    assert kernels.status() == f"not built ({broken} failed: broken-cc: error: out of luck): PyTorch's stock layers"
    assert list(fresh_kernels.iterdir()) == []
