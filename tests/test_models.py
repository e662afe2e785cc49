"""mnist_core.models: the model zoo."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from mnist_core.errors import ConfigError
from mnist_core.evaluate import flops_per_image
from mnist_core.models import (FullConv2d, SmallBatchConv2d, count_parameters, create_model, layer_table, list_models,
                               model_info, stock_path_needed)


def test_the_zoo_has_the_tutorial_models():
    assert {"mlp-50", "mlp-90", "mlp-256-64", "mlp-128-64", "lenet5", "cnn-small", "cnn-strong"} <= set(list_models())


@pytest.mark.parametrize("name", list_models())
def test_every_model_maps_n_images_to_10_logits(name):
    torch.manual_seed(0)
    model = create_model(name).eval()
    assert model.arch_name == name
    with torch.no_grad():
        out = model(torch.rand(3, 1, 28, 28))
        single = model(torch.rand(1, 1, 28, 28))
    assert out.shape == (3, 10) and single.shape == (1, 10)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", list_models())
def test_every_model_has_info_and_inspectable_feature_layers(name):
    info = model_info(name)
    assert info.name == name and info.description and info.provenance
    model = create_model(name)
    assert model.feature_layers, "the inspection page needs at least one feature layer"
    for layer in model.feature_layers:
        model.body.get_submodule(layer)  # raises AttributeError when the name is wrong


def test_create_model_gives_fresh_weights_each_time():
    a, b = create_model("mlp-50"), create_model("mlp-50")
    assert a.body.fc1.weight.data_ptr() != b.body.fc1.weight.data_ptr()


def test_lenet5_has_the_classic_layers_in_order():
    body = create_model("lenet5").body
    names = [name for name, _ in body.named_children()]
    classic = ["C1", "S2", "C3", "S4", "C5", "F6", "F7"]
    assert [n for n in names if n in classic] == classic
    assert isinstance(body.C1.conv, torch.nn.Conv2d) and body.C1.conv.out_channels == 6
    assert isinstance(body.S2, torch.nn.MaxPool2d)
    assert body.C3.conv.out_channels == 16
    assert isinstance(body.S4, torch.nn.AvgPool2d)
    assert body.C5.conv.out_channels == 120
    assert body.F6.fc.out_features == 84
    assert body.F7.out_features == 10


def test_unknown_model_is_a_config_error_listing_the_choices():
    with pytest.raises(ConfigError) as excinfo:
        create_model("nope")
    assert "'nope'" in str(excinfo.value) and "lenet5" in str(excinfo.value)
    with pytest.raises(ConfigError):
        model_info("nope")


def test_layer_table_of_lenet5():
    model = create_model("lenet5").train()
    rows = layer_table(model)
    by_name = {r["layer"]: r for r in rows}
    # LeNet-5 pads the 28x28 input to 32x32, so C1's 5x5 convolution gives 6x28x28.
    assert by_name["C1.conv"]["output shape"] == "6x28x28"
    assert by_name["S2"]["output shape"] == "6x14x14"
    assert by_name["C3.conv"]["output shape"] == "16x10x10"
    assert by_name["S4"]["output shape"] == "16x5x5"
    assert by_name["C5.conv"]["output shape"] == "120x1x1"
    assert by_name["F7"]["output shape"] == "10" and by_name["F7"]["parameters"] == 84 * 10 + 10
    assert by_name["C1.conv"]["type"] == "Conv2d"
    assert sum(r["parameters"] for r in rows) == count_parameters(model)
    assert model.training, "layer_table must leave the model's mode as it found it"


@pytest.mark.parametrize("name", list_models())
def test_layer_table_counts_every_parameter(name):
    model = create_model(name)
    rows = layer_table(model)
    assert rows and rows[-1]["output shape"] == "10"
    assert sum(r["parameters"] for r in rows) == count_parameters(model)


@pytest.mark.parametrize("name", list_models())
def test_zoo_layer_classes_do_not_take_torch_nn_names(name):
    own = {type(m).__name__ for m in create_model(name).modules() if not type(m).__module__.startswith("torch.nn")}
    assert own and not own & set(dir(nn)), own  # `Conv2d` in the zoo would read as torch's own to a student


@pytest.mark.parametrize("name", ["lenet5", "cnn-small", "cnn-strong"])
def test_the_layer_table_calls_every_convolution_conv2d(name):
    model = create_model(name)
    types = {r["layer"]: r["type"] for r in layer_table(model)}
    convs = [n.removeprefix("body.") for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    assert convs and {types[n] for n in convs} == {"Conv2d"}


def test_lenet5_c5_computed_as_a_matrix_product_equals_the_convolution():
    model = create_model("lenet5").eval()
    conv = model.body.C5.conv
    assert isinstance(conv, FullConv2d) and isinstance(conv, torch.nn.Conv2d)
    x = torch.randn(7, 16, 5, 5, requires_grad=True)
    for fmt in (torch.contiguous_format, torch.channels_last):
        xf = x.detach().contiguous(memory_format=fmt).requires_grad_()
        ref = torch.nn.functional.conv2d(xf, conv.weight, conv.bias)
        out = conv(xf)
        assert out.shape == ref.shape == (7, 120, 1, 1)
        torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
        g = torch.randn_like(ref)
        grads = torch.autograd.grad(out, (xf, conv.weight, conv.bias), g)
        ref_grads = torch.autograd.grad(ref, (xf, conv.weight, conv.bias), g)
        for a, b in zip(grads, ref_grads):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    # any other input size is an ordinary convolution
    big = torch.randn(2, 16, 9, 9)
    torch.testing.assert_close(conv(big), torch.nn.functional.conv2d(big, conv.weight, conv.bias))
    assert {r["layer"]: r["type"] for r in layer_table(model)}["C5.conv"] == "Conv2d"


@pytest.mark.parametrize("name", ["lenet5", "cnn-small", "cnn-strong"])
@pytest.mark.parametrize("batch", [1, 4, 9])
def test_small_batch_inference_convolutions_equal_the_stock_ones(name, batch):
    model = create_model(name).eval()
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(isinstance(m, SmallBatchConv2d) for m in convs)
    x = torch.rand(batch, 1, 28, 28)
    with torch.inference_mode(), torch.profiler.profile() as prof:
        ours = model(x)
    ops = {e.key for e in prof.key_averages()}
    assert ("aten::thnn_conv2d" in ops) == (batch <= SmallBatchConv2d.SMALL_BATCH)  # every net's first conv is small
    stock = create_model(name).eval()
    for module in stock.modules():  # the same weights, every convolution through torch's own forward
        if isinstance(module, torch.nn.Conv2d):
            module._conv_forward = torch.nn.Conv2d._conv_forward.__get__(module)
    stock.load_state_dict(model.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(ours, stock(x), rtol=1e-4, atol=1e-5)
    # with autograd on (training, saliency) the stock path runs and gradients flow
    x.requires_grad_()
    model(x).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_flop_counting_sees_the_stock_convolutions():
    # a dispatch mode (torch's FLOP counter) turns the small-batch shortcut off: C1 + C3 + C5 + F6 + F7
    expected = 2 * (6 * 28 * 28 * 25 + 16 * 10 * 10 * 150 + 120 * 400 + 84 * 120 + 10 * 84)
    assert flops_per_image(create_model("lenet5")) == expected


def test_the_stock_path_is_needed_under_hooks_tracing_and_dispatch_modes():
    """models.stock_path_needed reads torch's private state; each case it must see, checked on this torch."""
    model = create_model("lenet5")
    conv = model.body.C1.conv
    assert not stock_path_needed(conv)
    for register in (conv.register_forward_hook, conv.register_forward_pre_hook, conv.register_full_backward_hook):
        handle = register(lambda *args: None)
        assert stock_path_needed(conv) and not stock_path_needed(model.body.C3.conv)
        handle.remove()
    assert not stock_path_needed(conv)
    handle = torch.nn.modules.module.register_module_forward_hook(lambda *args: None)  # on every module
    try:
        assert stock_path_needed()
    finally:
        handle.remove()
    with FlopCounterMode(display=False):
        assert stock_path_needed()
    seen = []
    torch.jit.trace(lambda x: (seen.append(stock_path_needed()), x * 2)[1], torch.ones(1), check_trace=False)
    assert seen == [True] and not stock_path_needed()
