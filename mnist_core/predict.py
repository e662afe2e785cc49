"""Class probabilities for 28x28 images."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


def as_batch(images) -> torch.Tensor:
    """[28,28], [N,28,28] or [N,1,28,28] floats in [0,1] (numpy or torch) -> float32 [N,1,28,28]."""
    x = torch.as_tensor(np.asarray(images) if not isinstance(images, torch.Tensor) else images)
    x = x.to(torch.float32)
    if x.ndim == 2:
        x = x[None]
    if x.ndim == 3:
        x = x[:, None]
    if x.ndim != 4 or tuple(x.shape[1:]) != (1, 28, 28):
        raise ValueError(f"expected images of shape [28,28] or [N,28,28], got {tuple(x.shape)}")
    return x


@torch.inference_mode()
def predict_proba(model: nn.Module, images, batch_size: int = 4096) -> np.ndarray:
    """Softmax probabilities, numpy float32 [N,10]."""
    x = as_batch(images)
    if any(m.training for m in model.modules()):  # eval() sets every module; skip it when already done
        model.eval()
    device = next(model.parameters()).device
    out = [model(x[i:i + batch_size].to(device)).softmax(1).float().cpu() for i in range(0, len(x), batch_size)]
    if len(out) == 1:  # one image from the Draw page: no copy through torch.cat
        return out[0].numpy()
    return torch.cat(out).numpy() if out else np.zeros((0, 10), np.float32)
