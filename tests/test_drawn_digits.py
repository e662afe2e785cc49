"""Digits redrawn as a visitor draws them on the canvas (benchmarks.redraw), and the Draw
page's default model reading them."""

import numpy as np
import pytest
from sklearn.datasets import load_digits

from benchmarks import redraw
from mnist_core.checkpoints import DRAW_DEFAULT, default_checkpoint, load_checkpoint
from mnist_core.predict import predict_proba
from mnist_core.preprocess import CANVAS_SIZE, STROKE_PX


def ring(side: int = 28, centre_ink: float = 0.0) -> np.ndarray:
    """An "0": a ring of ink, its middle holding `centre_ink`."""
    yy, xx = np.mgrid[:side, :side]
    r = np.hypot(yy - (side - 1) / 2, xx - (side - 1) / 2)
    image = ((r > side * 0.22) & (r < side * 0.36)).astype(np.float32)
    image[r <= side * 0.22] = centre_ink
    return image


def bar(side: int = 28) -> np.ndarray:
    """A "1": an upright bar three pixels wide."""
    image = np.zeros((side, side), np.float32)
    image[4:24, 13:16] = 1.0
    return image


def closes(path: np.ndarray) -> bool:
    return len(path) > 3 and np.linalg.norm(path[0] - path[-1]) < 1.0


def test_the_same_seed_draws_the_same_digit_and_another_seed_another():
    first, again, other = redraw.render(ring(), 7), redraw.render(ring(), 7), redraw.render(ring(), 8)
    assert first.dtype == np.float32 and first.shape == (28, 28)
    assert np.array_equal(first, again)
    assert not np.array_equal(first, other)


def test_a_drawing_is_an_opaque_canvas_with_white_strokes_of_the_canvas_brush():
    rng = np.random.default_rng(0)
    style = redraw.Style(size=200, centre=(140, 140), slant=0, rotation=0, aspect=1, width=STROKE_PX,
                         pointer="mouse", step=5, jitter=0, wobble=0)
    canvas = redraw.draw(redraw.strokes_from_image(bar()), style, rng)
    assert canvas.shape == (CANVAS_SIZE, CANVAS_SIZE, 4) and canvas.dtype == np.uint8
    assert (canvas[..., 3] == 255).all() and (canvas[..., 0] == canvas[..., 1]).all()
    across = canvas[140, :, 0]  # a row through the middle of the upright stroke
    assert abs(int((across > 127).sum()) - STROKE_PX) <= 1
    assert 0 < across[(across > 0) & (across < 255)].size  # anti-aliased edges, as a browser draws
    assert canvas[:, :, 0].any(1).sum() == pytest.approx(200 + STROKE_PX, abs=2)  # the digit is `size` tall


def test_a_ring_is_traced_as_one_closed_stroke():
    strokes = redraw.strokes_from_image(ring())
    assert len(strokes) == 1 and closes(strokes[0])


def test_a_loop_blurred_full_in_a_small_picture_is_still_drawn_as_a_loop():
    # An 8x8 "0" like optdigits': a ring of full ink whose middle holds ink too, less than the ring but
    # above the threshold: thresholded alone, it is a filled square, whose skeleton is no loop.
    small = np.zeros((8, 8), np.float32)
    small[1:7, 1:7] = 1.0
    small[2:6, 2:6] = 10 / 16
    strokes = redraw.strokes_from_image(small)
    assert len(strokes) == 1 and closes(strokes[0])


def test_a_six_whose_loop_is_blurred_shut_in_an_8x8_picture_keeps_its_loop():
    # optdigits' 7th picture, a "6": its loop's middle (11 of 16) is inked above the threshold and a
    # channel of 11s leads out of it, so no basin holds it; it is only dimmer than the ink round it.
    six = load_digits().images[6]
    assert load_digits().target[6] == 6 and six[6, 4] == 11
    strokes = redraw.strokes_from_image(six / 16)
    assert any(closes(s) for s in strokes)


def test_a_blank_picture_has_no_strokes_and_draws_a_blank_canvas():
    assert redraw.strokes_from_image(np.zeros((28, 28), np.float32)) == []
    assert not redraw.render(np.zeros((28, 28), np.float32), 0).any()


def test_each_visitor_of_a_set_draws_in_their_own_style():
    styles = [redraw.visitor_style(0, i) for i in range(40)]
    assert {s.pointer for s in styles} == set(redraw.POINTERS)
    assert len({round(s.size) for s in styles}) > 20
    assert all(s.size / 2 <= c <= CANVAS_SIZE - s.size / 2 for s in styles for c in s.centre)
    many = redraw.render_many(np.stack([bar(), ring()]), seed=0)
    assert np.array_equal(many[1], redraw.render(ring(), redraw.visitor_seed(0, 1)))


@pytest.mark.parametrize("seed", range(6))
def test_a_drawn_one_and_a_drawn_zero_are_read_right_by_the_default_model(seed):
    model, _ = load_checkpoint(default_checkpoint(DRAW_DEFAULT))
    drawn = np.stack([redraw.render(bar(), seed), redraw.render(ring(), seed)])
    assert list(predict_proba(model, drawn).argmax(1)) == [1, 0]
