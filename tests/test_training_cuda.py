"""The CUDA path of the training loop: the captured training step (CudaGraphStep).

These need an NVIDIA GPU and skip without one; CI has none, they are run on a GPU machine by hand
(BENCHMARKS.md, "GPU").
"""

import copy

import pytest
import torch

from mnist_core.data import load_mnist
from mnist_core.models import create_model
from mnist_core.training import OPTIMIZERS, TrainConfig, preset_config, train
from mnist_core.training.torch_engine import CudaGraphStep, compute_loss, make_optimizer

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def _eager_step(model, optimizer, config, images, labels, idx):
    x = images[idx].unsqueeze(1).float().div_(255)
    y = labels[idx]
    logits = model(x)
    loss = compute_loss(config, logits, y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.item()


@pytest.mark.parametrize("model_name", ["lenet5", "cnn-strong"])  # cnn-strong: batch norm buffers
@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_graph_step_matches_eager_steps(mnist, model_name, optimizer):
    images, labels = (t[:4096].cuda() for t in load_mnist("train"))
    config = TrainConfig(model=model_name, optimizer=optimizer, lr=0.01, weight_decay=0.01, batch_size=128,
                         device="cuda")
    torch.manual_seed(0)
    graph_model = create_model(model_name).cuda().train()
    for module in graph_model.modules():  # no dropout, so both sides are deterministic; batch norm stays live
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    eager_model = copy.deepcopy(graph_model)
    initial = {name: t.detach().clone().float() for name, t in graph_model.state_dict().items()}
    graphed = CudaGraphStep(graph_model, make_optimizer(config, graph_model.parameters(), capturable=True),
                            config, images, labels)
    # the warm-up steps taken while capturing are undone
    for (name, a), b in zip(graph_model.state_dict().items(), eager_model.state_dict().values()):
        assert torch.equal(a, b), name
    # the same optimizer kernels on both sides (a tensor learning rate), so only the capture differs
    eager_opt = make_optimizer(config, eager_model.parameters(), capturable=True)
    gen = torch.Generator().manual_seed(1)
    for _ in range(6):
        idx = torch.randperm(len(images), generator=gen)[:128].cuda()
        graph_loss = graphed(idx)[0].item()
        eager_loss = _eager_step(eager_model, eager_opt, config, images, labels, idx)
        assert graph_loss == pytest.approx(eager_loss, rel=1e-3, abs=1e-4)
    # The same updates: GPU kernels are not bitwise reproducible, and Adam turns the tiniest gradient
    # into a full-size step, so weights are compared by how far each tensor moved, not element by element.
    moved = 0
    for (name, a), b in zip(graph_model.state_dict().items(), eager_model.state_dict().values()):
        if not a.is_floating_point():
            assert torch.equal(a, b), name  # batch norm's step counter
            continue
        graph_update, eager_update = a.float() - initial[name], b.float() - initial[name]
        gap = (graph_update - eager_update).norm()
        assert gap <= 0.02 * eager_update.norm() + 1e-6, (name, gap.item(), eager_update.norm().item())
        moved += eager_update.norm() > 0
    assert moved > 0


def test_cuda_run_with_a_partial_last_batch_and_a_schedule(mnist):
    # 1,000 images at batch 192: five graph replays and one eager step of 40 images per epoch
    config = preset_config("fast", device="cuda", train_size=1000, val_size=500, epochs=2)
    events = []
    result = train(config, on_event=events.append)
    steps = [e for e in events if e["split"] == "train"]
    assert result.status == "completed" and result.steps == len(steps) == 12
    assert all(0 <= e["accuracy"] <= 1 and e["loss"] == e["loss"] for e in steps)
    assert steps[-1]["loss"] < steps[0]["loss"]
    assert result.test_accuracy > 0.3  # 12 steps on 1,000 images: well above chance (0.1), far from trained
    assert next(result.model.parameters()).device.type == "cpu"


def test_fast_preset_reaches_99_percent_on_cuda(mnist):
    result = train(preset_config("fast", device="cuda", seed=0))
    assert result.test_accuracy >= 0.99
