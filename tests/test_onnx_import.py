"""Bring your own model: ONNX files from elsewhere, read in their own input convention, hostile ones refused.

Every file here is made by the test itself (tests/onnx_files.py): zoo checkpoints exported behind
another input convention (so their true accuracy is the checkpoint's), and hostile files written with
onnx.helper.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading

import numpy as np
import onnx
import psutil
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn

import onnx_files
from mnist_core import export, inspection
from mnist_core.__main__ import main
from mnist_core.errors import OnnxRefused
from mnist_core.onnx_import import checks, choose, load_onnx
from mnist_core.paths import REPO_ROOT

GB = 1 << 30


@pytest.fixture(scope="module")
def test_set(mnist):
    from mnist_core.data import load_mnist

    return load_mnist("test")


def true_accuracy(base: str, test_set) -> float:
    from mnist_core.training import evaluate

    return evaluate(onnx_files.zoo_model(base), *test_set)[1]


CONVENTIONS = [  # (zoo checkpoint, layout, scale, ink, output, dynamic batch)
    ("mlp-256-64", "NHWC", "0..255", "normal", "logits", True),
    ("mlp-256-64", "flat", "-1..1", "normal", "probabilities", True),
    ("lenet5", "NHW", "mean/std", "inverted", "log-probabilities", True),
    ("mlp-256-64", "NCHW", "0..1", "normal", "logits", False),
]


@pytest.mark.parametrize("base,layout,scale,ink,output,dynamic", CONVENTIONS,
                         ids=lambda v: str(v) if not isinstance(v, bool) else ("any-batch" if v else "batch-of-1"))
def test_a_model_in_any_input_convention_is_evaluated_within_a_third_of_a_point_untold(
        tmp_path, capsys, test_set, base, layout, scale, ink, output, dynamic):
    path = onnx_files.write(tmp_path, "theirs", onnx_files.convention_model(base, layout, scale, ink, output, dynamic))

    assert main(["evaluate", str(path)]) == 0

    out, err = capsys.readouterr()
    assert f"theirs.onnx read as {layout}, pixels {scale}" in err
    assert ("inverted" in err) == (ink == "inverted") and f", {output}: " in err
    got = float(out.split("test accuracy ")[1].split()[0])
    assert abs(got - true_accuracy(base, test_set)) <= 0.003, out


def test_flags_fix_the_convention_and_a_wrong_one_reads_badly(tmp_path, capsys, mnist):
    path = onnx_files.write(tmp_path, "nhwc255", onnx_files.convention_model("mlp-256-64", "NHWC", "0..255"))

    assert main(["inspect", str(path), "--scale", "0..1", "--ink", "inverted"]) == 0

    err = capsys.readouterr().err
    assert "read as NHWC, pixels 0..1 inverted" in err
    assert main(["evaluate", str(path), "--layout", "NCHW"]) == 2
    assert capsys.readouterr().err.strip() == "error: nhwc255.onnx cannot be read as NCHW: its input admits NHWC"


@pytest.mark.parametrize("layout,dynamic", [("NHWC", True), ("NCHW", False)], ids=["any-batch", "batch-of-1"])
def test_a_graph_with_a_named_batch_runs_images_together_and_one_fixed_to_1_one_by_one(mnist, test_set, layout,
                                                                                        dynamic):
    # The batch-of-1 export reshapes its input to [1,1,28,28], a constant: it cannot take two images.
    loaded = load_onnx(onnx_files.convention_model("lenet5", layout, "0..1", dynamic_batch=dynamic),
                       "theirs.onnx", owner="test")
    images = test_set[0][:5].float().div(255)[:, None]

    assert loaded.model.found.any_batch == dynamic
    with torch.inference_mode():
        assert (loaded.model(images) - onnx_files.zoo_model("lenet5")(images)).abs().max() <= 1e-4


def test_every_admitted_convention_is_scored_and_another_can_be_chosen_without_a_second_check(mnist, test_set):
    loaded = load_onnx(onnx_files.convention_model("mlp-256-64", "NHWC", "0..255"), "theirs.onnx", owner="test")
    options = {(o["layout"], o["scale"], o["ink"]): o["accuracy"] for o in loaded.meta["options"]}

    other = choose(loaded, "NHWC", "0..1", "normal")

    assert len(options) == 8 and max(options, key=options.get) == ("NHWC", "0..255", "normal")
    assert other.meta["reading"].startswith(f"NHWC, pixels 0..1, logits: {options['NHWC', '0..1', 'normal']:.1%} "
                                            "on 512 training images")
    assert other.key != loaded.key and other.model.package.data is loaded.model.package.data
    images = test_set[0][:64].float().div(255)[:, None]
    with torch.inference_mode():
        assert (other.model(images * 255) - loaded.model(images)).abs().max() <= 1e-4  # 0..1 given 0..255 reads alike
    with pytest.raises(OnnxRefused, match="cannot be read as NCHW"):
        choose(loaded, "NCHW", "0..1", "normal")


def test_a_model_no_convention_reads_says_it_is_near_chance(mnist):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 784])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 10])
    w = numpy_helper.from_array(np.zeros((784, 10), np.float32), "w")
    b = numpy_helper.from_array(np.eye(10, dtype=np.float32)[3], "b")  # always "3"
    nodes = [helper.make_node("MatMul", ["x", "w"], ["xw"]), helper.make_node("Add", ["xw", "b"], ["y"])]
    graph = helper.make_graph(nodes, "constant", [x], [y], initializer=[w, b])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])

    loaded = load_onnx(model.SerializeToString(), "always-three.onnx", owner="test")

    assert loaded.meta["near_chance"]
    assert "near chance" in loaded.meta["reading"]
    assert len(loaded.meta["options"]) == 8  # flat: four scales, two inks


def test_the_labs_own_export_comes_back_within_1e_5_with_the_same_feature_maps(test_set):
    model = onnx_files.zoo_model("lenet5")
    loaded = load_onnx(export.onnx_bytes(model), "lenet5.onnx", owner="test")
    images = test_set[0][:256].float().div(255)[:, None]

    with torch.inference_mode():
        assert (loaded.model(images) - model(images)).abs().max() <= 1e-5
    theirs = dict(inspection.feature_maps(loaded.model, images[0, 0].numpy())[0])
    for name, ours in inspection.feature_maps(model, images[0, 0].numpy())[0]:
        assert any(m.shape == ours.shape and np.abs(m - ours).max() <= 1e-5 for m in theirs.values()), name
    assert loaded.meta["reading"].startswith("NCHW, pixels 0..1, logits")


def test_inspect_json_lists_a_cnns_feature_maps(tmp_path, capsys, mnist):
    path = onnx_files.write(tmp_path, "lenet", onnx_files.convention_model("lenet5", "NHWC", "0..1"))

    assert main(["inspect", str(path), "--json"]) == 0

    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["op"] for r in rows][:6] == ["Conv", "Relu", "MaxPool", "Conv", "Relu", "AveragePool"]
    assert [r["shape"] for r in rows][:3] == [[6, 28, 28], [6, 28, 28], [6, 14, 14]]
    assert all(set(r) == {"name", "op", "shape"} for r in rows)


def _peak_rss_of_tree(process: subprocess.Popen, peak: list) -> None:
    """Sample the RSS of `process` and every descendant until it ends; the largest seen goes in peak[0]."""
    try:
        root = psutil.Process(process.pid)
        while process.poll() is None:
            for p in [root, *root.children(recursive=True)]:
                try:
                    peak[0] = max(peak[0], p.memory_info().rss)
                except psutil.Error:
                    pass
            threading.Event().wait(0.02)
    except psutil.Error:
        pass


@pytest.mark.subprocess
@pytest.mark.parametrize("hostile", list(onnx_files.HOSTILE))
def test_a_hostile_file_is_refused_in_one_line_on_the_cli_with_no_process_above_3_gb(tmp_path, hostile):
    path = onnx_files.write(tmp_path, hostile, onnx_files.HOSTILE[hostile]())
    env = {**os.environ, "MNIST_ONNX_CHECK_SECONDS": "30"}
    process = subprocess.Popen([sys.executable, "-m", "mnist_core", "evaluate", str(path)], cwd=REPO_ROOT, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = [0]
    sampler = threading.Thread(target=_peak_rss_of_tree, args=(process, peak))
    sampler.start()
    out, err = process.communicate(timeout=240)
    sampler.join()

    lines = (out + err).strip().splitlines()
    assert process.returncode != 0
    assert len(lines) == 1 and lines[0].startswith(f"error: {hostile}.onnx"), lines
    assert onnx_files.HOSTILE_REASONS[hostile] in lines[0]
    assert str(tmp_path) not in lines[0] and "Traceback" not in err
    assert 0 < peak[0] < 3 * GB


def test_a_check_that_runs_out_of_memory_ends_its_child_not_the_caller(monkeypatch, mnist):
    monkeypatch.setenv("MNIST_ONNX_CHECK_MEMORY_MB", "1")
    wide = nn.Sequential(nn.Conv2d(1, 16384, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(16384, 10))  # 51 MB of feature maps for each image
    data = onnx_files.onnx_bytes(wide, (1, 28, 28))

    with pytest.raises(OnnxRefused, match=r"^theirs\.onnx (needs more memory|stopped its check process)"):
        load_onnx(data, "theirs.onnx", owner="test")


# --- the checks alone, without a child --------------------------------------------------------------

def _linear_model() -> onnx.ModelProto:
    return onnx_files.parsed(onnx_files.convention_model("mlp-256-64", "NCHW", "0..1"))


def test_a_file_over_the_size_cap_is_refused_before_it_is_parsed(monkeypatch):
    monkeypatch.setenv("MNIST_MAX_ONNX_BYTES", str(1 << 20))
    with pytest.raises(OnnxRefused, match=r"^big\.onnx is 2 MB: the lab takes ONNX files up to 1 MB$"):
        checks.check_size(b"\0" * (2 << 20), "big.onnx")


def test_weights_that_are_not_finite_are_refused():
    model = _linear_model()
    weights = model.graph.initializer[0]
    values = numpy_helper.to_array(weights).copy()
    values.flat[0] = np.nan
    weights.CopyFrom(numpy_helper.from_array(values, weights.name))

    with pytest.raises(OnnxRefused, match="not finite"):
        checks.check(model.SerializeToString(), "nan.onnx")


def test_a_tensor_that_lies_about_its_size_is_refused():
    model = _linear_model()
    weights = model.graph.initializer[0]
    weights.dims[0] = 10 ** 9  # the data stays as it was: its shape now claims gigabytes

    with pytest.raises(OnnxRefused, match="does not hold the data its shape says"):
        checks.check(model.SerializeToString(), "liar.onnx")


def test_a_tensor_that_grows_faster_than_the_batch_is_refused():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 784])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 10])
    w = numpy_helper.from_array(np.zeros((784, 10), np.float32), "w")
    nodes = [helper.make_node("Transpose", ["x"], ["xt"]), helper.make_node("MatMul", ["x", "xt"], ["square"]),
             helper.make_node("ReduceSum", ["square"], ["total"], keepdims=1),
             helper.make_node("MatMul", ["x", "w"], ["xw"]), helper.make_node("Add", ["xw", "total"], ["y"])]
    model = helper.make_model(helper.make_graph(nodes, "square", [x], [y], initializer=[w]),
                              opset_imports=[helper.make_opsetid("", 11)])

    with pytest.raises(OnnxRefused, match="grows faster than the batch"):
        checks.check(model.SerializeToString(), "square.onnx")


def test_a_scikit_learn_style_export_is_read_by_its_probabilities_and_its_label_output_left_out():
    x = helper.make_tensor_value_info("float_input", TensorProto.FLOAT, [None, 784])
    label = helper.make_tensor_value_info("label", TensorProto.INT64, [None])
    probabilities = helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [None, 10])
    w = numpy_helper.from_array(np.full((784, 10), 0.01, np.float32), "coef")
    classes = numpy_helper.from_array(np.arange(10, dtype=np.int64), "classes")
    nodes = [helper.make_node("MatMul", ["float_input", "coef"], ["scores"]),
             helper.make_node("Softmax", ["scores"], ["probabilities"], axis=1),
             helper.make_node("ArgMax", ["probabilities"], ["index"], axis=1, keepdims=0),
             helper.make_node("ArrayFeatureExtractor", ["classes", "index"], ["label"], domain="ai.onnx.ml")]
    model = helper.make_model(helper.make_graph(nodes, "sklearn-like", [x], [label, probabilities],
                                                initializer=[w, classes]),
                              opset_imports=[helper.make_opsetid("", 13), helper.make_opsetid("ai.onnx.ml", 1)])

    proto, found = checks.check(model.SerializeToString(), "mlp.onnx")

    assert [o.name for o in proto.graph.output] == ["probabilities"]
    assert {n.op_type for n in proto.graph.node} == {"MatMul", "Softmax"}
    assert found.layouts == ("flat",) and found.any_batch


def test_the_docs_list_exactly_the_ops_the_lab_runs():
    text = (REPO_ROOT / "docs" / "onnx.md").read_text()
    listed = text.split("<!-- allowed ops -->")[1].split("<!-- end -->")[0]
    assert sorted(op.strip(" `\n") for op in listed.split(",")) == sorted(checks.ALLOWED_OPS)
