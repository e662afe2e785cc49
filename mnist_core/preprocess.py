"""A drawing (RGBA canvas, any size) -> a 28x28 image made the way MNIST itself was made.

MNIST's digits were size-normalized to fit a 20x20 box keeping their aspect ratio (with
anti-aliasing, which gives the grey edges), then centred by centre of mass in a 28x28 field.
We do the same to a drawing, so the model sees what it was trained on:

1. find the ink: white on black, black on white, or any ink on a transparent background;
2. crop to the ink's bounding box;
3. fit it into 20x20 keeping the aspect ratio, with anti-aliasing;
4. paste it into 28x28 so that its centre of mass lands on the centre.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

INK_THRESHOLD = 0.1   # ink below this (after background removal) counts as background
BOX = 20              # MNIST's digit box
SIZE = 28


def ink_map(rgba: np.ndarray) -> np.ndarray:
    """Float [H,W] in [0,1]: how much ink each pixel holds, whatever the canvas polarity."""
    rgba = np.asarray(rgba)
    if rgba.ndim != 3 or rgba.shape[2] not in (3, 4) or rgba.shape[0] < 1 or rgba.shape[1] < 1:
        raise ValueError(f"expected an RGBA image [H,W,4], got shape {rgba.shape}")
    img = rgba.astype(np.float32) / 255.0
    grey = img[..., :3] @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    alpha = img[..., 3] if img.shape[2] == 4 else np.ones(grey.shape, np.float32)

    if np.median(alpha) < 0.5:
        # Transparent background: the strokes are where the alpha is, whatever their colour.
        return alpha
    # Opaque background: the border tells its colour; ink is whatever differs from it.
    composite = grey * alpha + (1 - alpha) * 0.0
    border = np.concatenate([composite[0], composite[-1], composite[:, 0], composite[:, -1]])
    background = float(np.median(border))
    if background < 0.5:
        ink = (composite - background) / max(1.0 - background, 1e-6)
    else:
        ink = (background - composite) / max(background, 1e-6)
    return np.clip(ink, 0.0, 1.0)


def canvas_to_mnist(rgba: np.ndarray) -> np.ndarray:
    """RGBA uint8 [H,W,4] (any size) -> float32 [28,28] in [0,1]; an empty canvas gives zeros."""
    ink = ink_map(rgba)
    mask = ink > INK_THRESHOLD
    if not mask.any():
        return np.zeros((SIZE, SIZE), np.float32)

    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    crop = ink[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
    h, w = crop.shape
    scale = BOX / max(h, w)
    new_h, new_w = max(1, round(h * scale)), max(1, round(w * scale))
    resized = F.interpolate(torch.from_numpy(np.ascontiguousarray(crop))[None, None], size=(new_h, new_w),
                            mode="bilinear", antialias=True, align_corners=False)[0, 0].numpy()
    resized = np.clip(resized, 0.0, 1.0)

    # Centre of mass of the fitted digit -> the centre of the 28x28 field (clamped to stay inside).
    total = resized.sum()
    cy = (resized.sum(1) * np.arange(new_h)).sum() / total
    cx = (resized.sum(0) * np.arange(new_w)).sum() / total
    top = int(np.clip(round((SIZE - 1) / 2 - cy), 0, SIZE - new_h))
    left = int(np.clip(round((SIZE - 1) / 2 - cx), 0, SIZE - new_w))
    out = np.zeros((SIZE, SIZE), np.float32)
    out[top:top + new_h, left:left + new_w] = resized
    return out
