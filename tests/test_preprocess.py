"""mnist_core.preprocess: a drawing on an RGBA canvas -> a 28x28 image made the way MNIST was made."""

from __future__ import annotations

import numpy as np
import pytest

from mnist_core.preprocess import canvas_to_mnist, ink_map

# --- drawing helpers: a stroke as an ink mask in [0,1], with soft (anti-aliased) edges ----------------------


def _soft(distance_outside: np.ndarray) -> np.ndarray:
    """Ink 1 inside the stroke, fading to 0 over a pixel and a half outside it."""
    return np.clip(1 - distance_outside / 1.5, 0, 1)


def bar_mask(h: int, w: int, top: float, bottom: float, left: float, right: float) -> np.ndarray:
    """A thick vertical bar, coordinates as fractions of the canvas."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    dy = np.maximum(np.maximum(top * h - y, y - bottom * h), 0)
    dx = np.maximum(np.maximum(left * w - x, x - right * w), 0)
    return _soft(np.hypot(dx, dy))


def ring_mask(h: int, w: int, cy: float, cx: float, radius: float, thickness: float) -> np.ndarray:
    """A ring (a drawn zero), centre and sizes as fractions of the canvas's smaller side."""
    s = min(h, w)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    r = np.hypot(y - cy * h, x - cx * w)
    return _soft(np.maximum(np.abs(r - radius * s) - thickness * s / 2, 0))


def canvas(mask: np.ndarray, style: str) -> np.ndarray:
    """Paint an ink mask on an RGBA uint8 canvas in one of the styles a drawing widget produces."""
    m = mask[..., None]
    h, w = mask.shape
    if style == "white-on-black":
        rgb = 255 * m
        alpha = np.full((h, w, 1), 255.0)
    elif style == "black-on-white":
        rgb = 255 * (1 - m)
        alpha = np.full((h, w, 1), 255.0)
    elif style == "dark-ink-on-transparent":
        rgb = np.broadcast_to(np.array([20.0, 30.0, 60.0]), (h, w, 3))  # navy ink
        alpha = 255 * m
    elif style == "white-ink-on-transparent":
        rgb = np.full((h, w, 3), 255.0)
        alpha = 255 * m
    else:
        raise ValueError(style)
    return np.rint(np.concatenate([np.broadcast_to(rgb, (h, w, 3)), alpha], axis=2)).astype(np.uint8)


STYLES = ["white-on-black", "black-on-white", "dark-ink-on-transparent", "white-ink-on-transparent"]
SHAPES = {
    "bar": lambda h, w: bar_mask(h, w, 0.2, 0.8, 0.45, 0.55),
    "ring": lambda h, w: ring_mask(h, w, 0.5, 0.5, 0.3, 0.08),
    "corner-ring": lambda h, w: ring_mask(h, w, 0.3, 0.25, 0.15, 0.06),
}


def centre_of_mass(img: np.ndarray) -> tuple[float, float]:
    total = img.sum()
    return ((img.sum(1) * np.arange(28)).sum() / total, (img.sum(0) * np.arange(28)).sum() / total)


def bounding_box(img: np.ndarray, threshold: float = 0.0) -> tuple[int, int]:
    rows, cols = np.flatnonzero((img > threshold).any(1)), np.flatnonzero((img > threshold).any(0))
    return rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1


# --- the tests -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("shape", list(SHAPES))
def test_every_canvas_style_gives_the_same_digit(shape):
    mask = SHAPES[shape](300, 300)
    results = {style: canvas_to_mnist(canvas(mask, style)) for style in STYLES}
    reference = results["white-on-black"]
    for style, img in results.items():
        np.testing.assert_allclose(img, reference, atol=0.02, err_msg=f"{style} differs from white-on-black")


@pytest.mark.parametrize("style", STYLES)
@pytest.mark.parametrize("shape", list(SHAPES))
def test_output_is_an_mnist_style_image(shape, style):
    img = canvas_to_mnist(canvas(SHAPES[shape](300, 300), style))
    assert img.dtype == np.float32 and img.shape == (28, 28)
    assert img.min() >= 0.0 and img.max() <= 1.0
    assert img.max() > 0.9, "a solid stroke keeps full-strength ink"
    # MNIST: centred by centre of mass in the 28x28 field ...
    cy, cx = centre_of_mass(img)
    assert abs(cy - 13.5) <= 0.75 and abs(cx - 13.5) <= 0.75, (cy, cx)
    # ... after fitting into a 20x20 box keeping the aspect ratio (so the longer side is 20).
    height, width = bounding_box(img)
    assert max(height, width) == 20 and min(height, width) <= 20
    # The border MNIST leaves around every digit stays empty.
    assert img[:2].sum() == 0 and img[-2:].sum() == 0 and img[:, :2].sum() == 0 and img[:, -2:].sum() == 0


def test_a_bar_keeps_its_aspect_ratio():
    img = canvas_to_mnist(canvas(SHAPES["bar"](300, 300), "white-on-black"))
    height, width = bounding_box(img, threshold=0.1)
    assert height == 20 and width <= 6


def test_where_the_digit_was_drawn_does_not_matter():
    # The same ring drawn in the top-left corner and in the middle of the canvas.
    corner = canvas_to_mnist(canvas(ring_mask(300, 300, 0.25, 0.25, 0.2, 0.06), "black-on-white"))
    middle = canvas_to_mnist(canvas(ring_mask(300, 300, 0.5, 0.5, 0.2, 0.06), "black-on-white"))
    np.testing.assert_allclose(corner, middle, atol=0.05)


@pytest.mark.parametrize("h, w", [(100, 60), (60, 100), (400, 400), (28, 28), (1000, 120), (37, 411)])
def test_any_canvas_size(h, w):
    for shape in ("bar", "ring"):
        img = canvas_to_mnist(canvas(SHAPES[shape](h, w), "black-on-white"))
        assert img.shape == (28, 28) and img.dtype == np.float32
        assert 0 <= img.min() and img.max() <= 1 and img.max() > 0.5
        cy, cx = centre_of_mass(img)
        assert abs(cy - 13.5) <= 1 and abs(cx - 13.5) <= 1
        assert max(bounding_box(img)) <= 20


def test_the_same_drawing_at_two_resolutions_gives_nearly_the_same_image():
    small = canvas_to_mnist(canvas(SHAPES["ring"](200, 200), "white-on-black"))
    large = canvas_to_mnist(canvas(SHAPES["ring"](400, 400), "white-on-black"))
    assert np.abs(small - large).mean() < 0.03


@pytest.mark.parametrize("background", [(0, 0, 0, 255), (255, 255, 255, 255), (0, 0, 0, 0), (255, 255, 255, 0),
                                        (40, 120, 200, 255)],
                         ids=["black", "white", "transparent", "transparent-white", "opaque-blue"])
@pytest.mark.parametrize("h, w", [(280, 280), (100, 60)])
def test_an_empty_canvas_gives_zeros(background, h, w):
    empty = np.broadcast_to(np.array(background, np.uint8), (h, w, 4)).copy()
    img = canvas_to_mnist(empty)
    assert img.dtype == np.float32 and img.shape == (28, 28)
    assert not img.any()


def test_a_faint_speck_below_the_ink_threshold_counts_as_empty():
    speck = np.zeros((100, 100, 4), np.uint8)
    speck[..., 3] = 255
    speck[50, 50, :3] = 10  # 4% grey on black
    assert not canvas_to_mnist(speck).any()


def test_an_rgb_canvas_without_alpha_works():
    rgba = canvas(SHAPES["ring"](150, 150), "black-on-white")
    np.testing.assert_allclose(canvas_to_mnist(rgba[..., :3]), canvas_to_mnist(rgba), atol=1e-6)


@pytest.mark.parametrize("bad", [np.zeros((28, 28)), np.zeros((28, 28, 2)), np.zeros((0, 10, 4))],
                         ids=["2d", "two-channels", "no-rows"])
def test_a_canvas_of_the_wrong_shape_is_a_value_error(bad):
    with pytest.raises(ValueError, match="RGBA"):
        canvas_to_mnist(bad)


def test_ink_map_is_the_ink_whatever_the_polarity():
    mask = SHAPES["bar"](50, 50)
    for style in STYLES:
        np.testing.assert_allclose(ink_map(canvas(mask, style)), mask, atol=0.01, err_msg=style)


def _general_ink(rgba: np.ndarray) -> np.ndarray:
    """The ink map by the general formula (weighted grey of every channel, border median)."""
    grey = (rgba[..., :3].astype(np.float32) / 255) @ np.array([0.299, 0.587, 0.114], np.float32)
    background = float(np.median(np.concatenate([grey[0], grey[-1], grey[:, 0], grey[:, -1]])))
    ink = (grey - background) / (1 - background) if background < 0.5 else (background - grey) / background
    return np.clip(ink, 0, 1)


@pytest.mark.parametrize("background", [0, 30, 255])
def test_the_opaque_grey_shortcut_gives_the_general_ink_map(background):
    from mnist_core.preprocess import _grey_levels

    rng = np.random.default_rng(background)
    grey = np.full((60, 50), background, np.uint8)
    grey[10:40, 20:30] = rng.integers(0, 256, (30, 10), dtype=np.uint8)
    rgba = np.dstack([grey, grey, grey, np.full_like(grey, 255)])
    np.testing.assert_array_equal(_grey_levels(rgba), grey)
    np.testing.assert_allclose(ink_map(rgba), _general_ink(rgba), atol=1e-6)
    # one coloured or one translucent pixel, or a strided view: the general path, the same formula
    for pixel, channel, value in [((12, 22), 1, 7), ((0, 0), 3, 254)]:
        other = rgba.copy()
        other[pixel + (channel,)] = value
        assert _grey_levels(other) is None
    assert _grey_levels(np.dstack([rgba, rgba])[..., ::2]) is None
    coloured = rgba.copy()
    coloured[12, 22, 1] = 7
    np.testing.assert_allclose(ink_map(coloured), _general_ink(coloured), atol=1e-6)
