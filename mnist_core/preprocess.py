"""A drawing (RGBA canvas, any size) -> a 28x28 image made the way MNIST itself was made.

MNIST's digits were size-normalized to fit a 20x20 box keeping their aspect ratio (with
anti-aliasing, which gives the grey edges), then centred by centre of mass in a 28x28 field.
We do the same to a drawing, so the model sees what it was trained on:

1. find the ink: white on black, black on white, or any ink on a transparent background;
2. crop to the ink's bounding box;
3. fit it into 20x20 keeping the aspect ratio, with anti-aliasing;
4. paste it into 28x28 so that its centre of mass lands on the centre.

Two ways in from a visitor, both untrusted and checked before anything is decoded: `load_image`
(an uploaded file) and `decode_canvas` (the Draw page's canvas value, sent by the browser).
"""

from __future__ import annotations

import base64
import binascii
import io
import struct
import sys
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
import torch.nn.functional as F
from PIL import ExifTags, Image, UnidentifiedImageError

from .errors import ImageError

INK_THRESHOLD = 0.1   # ink below this (after background removal) counts as background
BOX = 20              # MNIST's digit box
SIZE = 28
MAX_UPLOAD_BYTES = 10 << 20     # 10 MB
MAX_PIXELS = 4096 * 4096        # larger JPEGs are refused before they are decoded (a JPEG decodes reduced)
# The same for the formats that decode at full size: a 2560x1600 screen. A WebP costs ~4.5 bytes of memory
# per byte of its RGBA pixels while it decodes (+75 MB at this size), a PNG ~2.5 (tests/test_upload_bounds.py).
MAX_FULL_DECODE_PIXELS = 2560 * 1600
# What an uploaded picture may be, read from its header (Pillow's format names; docs/hosting.md names these).
# A phone camera's JPEG with a second picture in it (MPO) opens through the JPEG plugin.
ACCEPTED_FORMATS = ("PNG", "JPEG", "GIF", "BMP", "WEBP")
_ACCEPTED_NAMES = "PNG, JPEG, GIF, BMP or WebP"
WORK_SIDE = 512                 # an uploaded picture is reduced to at most this many pixels a side as it is decoded
MAX_CONCURRENT_DECODES = 2      # pictures decoding at once in one server, whoever sent them
DECODE_WAIT_SECONDS = 5.0       # how long a visitor past that bound waits for a turn before being told to retry
_decode_slots = threading.BoundedSemaphore(MAX_CONCURRENT_DECODES)
# The decodes run on these long-lived threads, not on the visitors' own (Streamlit starts a thread for
# each script run): glibc gives each concurrent thread a malloc arena of its own and keeps some of what
# a decode freed there, so decodes spread over many visitors' threads left memory behind in each.
_decoders = ThreadPoolExecutor(MAX_CONCURRENT_DECODES, thread_name_prefix="picture-decode")
# EXIF orientation -> the transpose that puts the picture upright (as PIL.ImageOps.exif_transpose does).
_EXIF_TRANSPOSE = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
                   4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE,
                   6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE, 8: Image.Transpose.ROTATE_90}
CANVAS_SIZE = 280               # the Draw page's canvas, in its own pixels (square)
STROKE_PX = 18                  # the Draw canvas's brush, in canvas pixels (MNIST's strokes: a tenth of the box)
# A 280x280 RGBA PNG that does not compress at all is 280 * (280 * 4 + 1) bytes of pixels plus a few
# hundred of chunk overhead; real drawings (white strokes on black) are a few kilobytes.
MAX_CANVAS_PNG_BYTES = 320_000
CANVAS_DATA_URL_PREFIX = "data:image/png;base64,"
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


_GREY = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def ink_map(rgba: np.ndarray) -> np.ndarray:
    """Float [H,W] in [0,1]: how much ink each pixel holds, whatever the canvas polarity."""
    rgba = np.asarray(rgba)
    if rgba.ndim != 3 or rgba.shape[2] not in (3, 4) or rgba.shape[0] < 1 or rgba.shape[1] < 1:
        raise ValueError(f"expected an RGBA image [H,W,4], got shape {rgba.shape}")
    # Speed (the Draw page calls this on every stroke): for uint8 canvases the float32 image comes in
    # one pass, and "mostly transparent" (more than half the pixels below alpha 0.5) is a count, not a
    # median (benchmarks/predict_latency).
    u8 = rgba.dtype == np.uint8
    levels = _grey_levels(rgba) if u8 and rgba.shape[2] == 4 else None
    if levels is not None:
        # The Draw page's canvas: opaque, grey strokes on grey. Grey is the red channel (the weights
        # sum to 1), so no float copy of the whole RGBA and no weighted sum: about half the ink map's
        # time (benchmarks/predict_latency, BENCHMARKS.md). (A 256-entry lookup table was slower: numpy's gather.)
        grey = levels.astype(np.float32)
        grey *= np.float32(1 / 255)
        return _ink(grey, float(np.median(_border(grey))))
    img = np.divide(rgba, np.float32(255.0), dtype=np.float32) if u8 else rgba.astype(np.float32) / 255.0
    grey = img[..., :3] @ _GREY
    opaque = True
    if img.shape[2] == 4:
        alpha = img[..., 3]
        if u8:  # on the uint8 alpha: a min and a count, no float sort
            opaque = int(rgba[..., 3].min()) == 255
            transparent = not opaque and 2 * np.count_nonzero(rgba[..., 3] < 128) > rgba[..., 3].size
        else:
            transparent = bool(np.median(alpha) < 0.5)
            opaque = not transparent and bool((alpha == 1.0).all())
        if transparent:
            # Transparent background: the strokes are where the alpha is, whatever their colour.
            return alpha
    # Opaque background: the border tells its colour; ink is whatever differs from it.
    # (grey * 1 + 0 * 0 is grey exactly, so a fully opaque canvas skips the compositing.)
    composite = grey if opaque else grey * alpha + (1 - alpha) * 0.0
    return _ink(composite, float(np.median(_border(composite))))


def _grey_levels(rgba: np.ndarray):
    """The grey levels (uint32 [H,W]) of a canvas whose every pixel is fully opaque with R == G == B,
    else None; checked on the pixels as 32-bit words."""
    if not rgba.flags.c_contiguous:
        return None
    word = rgba.view(np.uint32)[..., 0]
    if sys.byteorder == "little":  # the word is R + G<<8 + B<<16 + A<<24
        red = word & 0xFF
        expected = red * 0x00010101 + 0xFF000000
    else:
        red = word >> 24
        expected = red * 0x01010100 + 0xFF
    return red if np.array_equal(word, expected) else None


def _border(image: np.ndarray) -> np.ndarray:
    return np.concatenate([image[0], image[-1], image[:, 0], image[:, -1]])


def _ink(grey: np.ndarray, background: float) -> np.ndarray:
    """How far each grey value is from the background, towards the other extreme, in [0, 1] (in place)."""
    if background < 0.5:
        np.subtract(grey, background, out=grey)
        grey /= max(1.0 - background, 1e-6)
    else:
        np.subtract(background, grey, out=grey)
        grey /= max(background, 1e-6)
    return np.clip(grey, 0.0, 1.0, out=grey)


def canvas_to_mnist(rgba: np.ndarray) -> np.ndarray:
    """RGBA uint8 [H,W,4] (any size) -> float32 [28,28] in [0,1]; an empty canvas gives zeros."""
    ink = ink_map(rgba)
    mask = ink > INK_THRESHOLD
    rows = np.flatnonzero(mask.any(1))
    if not len(rows):
        return np.zeros((SIZE, SIZE), np.float32)

    cols = np.flatnonzero(mask[rows[0]:rows[-1] + 1].any(0))  # ink columns lie within the ink rows
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


def load_image(data: bytes) -> np.ndarray:
    """An uploaded image file -> RGBA uint8 [H,W,4] at most WORK_SIDE pixels a side, or ImageError (one line).

    Safe on hostile input, and cheap whatever the file declares:
    - the byte size, then the format and the pixel count are checked before anything is decoded. The
      format is read from the bytes' header, never from the file's name, and only the ones docs/hosting.md
      names are opened (PNG, JPEG, GIF, BMP, WebP): a TIFF named `.png` is refused like any other file
      we do not read, and no other Pillow plugin ever sees the bytes;
    - a JPEG (up to MAX_PIXELS) decodes already reduced (libjpeg's 1/2, 1/4 or 1/8 scale, Pillow's
      `draft`); the other formats decode at full size, so they are held to MAX_FULL_DECODE_PIXELS, and
      are box-averaged down to WORK_SIDE at once (a 28x28 digit needs no more). 16-bit images are
      scaled to 8 bits by their own range after that reduction, not before;
    - at most MAX_CONCURRENT_DECODES pictures decode at once in this server, on as many threads kept
      for it; a visitor past that waits up to DECODE_WAIT_SECONDS for a turn, then is told to try again.
    Palettes and greyscale are expanded, EXIF rotation applied, and of an animated image the first
    frame is used. BENCHMARKS.md gives the memory this costs (benchmarks/upload_memory.py).
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ImageError("expected the bytes of an image file")
    if len(data) == 0:
        raise ImageError("the file is empty")
    if len(data) > MAX_UPLOAD_BYTES:
        raise ImageError(f"the file is too large ({len(data) / 2**20:.1f} MB; the limit is "
                         f"{MAX_UPLOAD_BYTES / 2**20:.0f} MB)")
    if not _decode_slots.acquire(timeout=DECODE_WAIT_SECONDS):
        raise ImageError("the server is reading other visitors' pictures right now; try again in a few seconds")
    try:
        return _decoders.submit(_decode_reduced, data).result()
    finally:
        _decode_slots.release()


def _decode_reduced(data) -> np.ndarray:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            # The plugins' own header checks pick the format, and only among ACCEPTED_FORMATS. An
            # animated image opens on its first frame, the one load() decodes.
            img = Image.open(io.BytesIO(data), formats=ACCEPTED_FORMATS)
            width, height = img.size
            limit = MAX_PIXELS if img.format in ("JPEG", "MPO") else MAX_FULL_DECODE_PIXELS
            if width < 1 or height < 1 or width * height > limit:
                raise ImageError(f"the image is {width}x{height} pixels; at most {limit:,} pixels are accepted "
                                 f"in a {img.format} file ({MAX_PIXELS:,} in a JPEG)")
            orientation = img.getexif().get(ExifTags.Base.Orientation)  # read before the reduced copy drops it
            scale = min(1.0, WORK_SIDE / max(width, height))
            size = (max(1, round(width * scale)), max(1, round(height * scale)))
            img.draft(None, size)  # JPEG only: decode at the smallest libjpeg scale still at least `size`
            img.load()
            if img.mode in ("1", "P", "PA"):  # no averaging on a palette: expand it first
                img = img.convert("RGBA" if img.mode == "PA" or "transparency" in img.info else
                                  "L" if img.mode == "1" else "RGB")
            if img.size != size:
                img = img.resize(size, Image.Resampling.BOX)
            if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
                # 16-bit and 32-bit greyscale: scale to 8 bits by the image's own range.
                arr = np.asarray(img, dtype=np.float64)
                lo, hi = float(arr.min()), float(arr.max())
                grey = (np.zeros(arr.shape, np.uint8) if hi <= lo
                        else np.rint((arr - lo) / (hi - lo) * 255).astype(np.uint8))
                img = Image.fromarray(grey, mode="L")
            if orientation in _EXIF_TRANSPOSE:
                img = img.transpose(_EXIF_TRANSPOSE[orientation])
            rgba = np.asarray(img.convert("RGBA"), dtype=np.uint8)
    except ImageError:
        raise
    except (UnidentifiedImageError, Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageError(f"the file is not an image we can read ({_ACCEPTED_NAMES})") from None
    except (OSError, ValueError, SyntaxError, EOFError, MemoryError) as exc:
        why = str(exc).splitlines()[0] if str(exc) else "truncated"
        raise ImageError(f"the image could not be decoded: {why}") from None
    return np.ascontiguousarray(rgba)


def decode_canvas(value, size: int = CANVAS_SIZE) -> np.ndarray | None:
    """The Draw canvas's value -> RGBA uint8 [size,size,4]; None for an empty canvas; else ImageError.

    The value comes from the browser, so it is whatever a visitor chooses to send. The canvas sends
    either nothing (None: no strokes) or `data:image/png;base64,...`, a PNG of exactly its own size.
    Anything else is refused in one line, and the checks run in order of cost, before Pillow sees a
    byte: the type, the string's length (so base64 never decodes more than the cap), the base64,
    then the PNG signature and the IHDR chunk's width, height, bit depth and colour type. Only then
    is the PNG decoded. (streamlit-drawable-canvas's own decoder handed any data URL straight to
    Pillow with no size or format limit: a few kilobytes of PNG declaring a huge image made the
    server allocate gigabytes on every rerun.)
    """
    if value is None:
        return None
    refuse = "the drawing sent by the browser is not a picture of this canvas; draw again or press Clear"
    if not isinstance(value, str) or not value.startswith(CANVAS_DATA_URL_PREFIX):
        raise ImageError(refuse)
    encoded = value[len(CANVAS_DATA_URL_PREFIX):]
    if len(encoded) > 4 * -(-MAX_CANVAS_PNG_BYTES // 3):
        raise ImageError(f"the drawing sent by the browser is too large (the limit is "
                         f"{MAX_CANVAS_PNG_BYTES // 1000} KB)")
    try:
        png = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise ImageError(refuse) from None
    width, height, depth, colour = _png_header(png)
    if (width, height) != (size, size):
        raise ImageError(f"the drawing sent by the browser is {width}x{height} pixels; the canvas is {size}x{size}")
    if depth != 8 or colour not in (0, 2, 4, 6):  # 8-bit grey, RGB, grey+alpha, RGBA: what a canvas writes
        raise ImageError(refuse)

    try:
        with Image.open(io.BytesIO(png), formats=["PNG"]) as img:
            if img.size != (size, size):
                raise ImageError(refuse)
            rgba = np.asarray(img.convert("RGBA"), dtype=np.uint8)
    except ImageError:
        raise
    except (OSError, ValueError, SyntaxError, EOFError, MemoryError):
        raise ImageError(refuse) from None
    return np.ascontiguousarray(rgba)


def _png_header(png: bytes) -> tuple[int, int, int, int]:
    """(width, height, bit depth, colour type) from a PNG's IHDR chunk, read without decoding; ImageError
    if the bytes do not start like a PNG (the signature, then a 13-byte IHDR chunk)."""
    if len(png) < 33 or png[:8] != _PNG_SIGNATURE or png[8:16] != b"\x00\x00\x00\rIHDR":
        raise ImageError("the drawing sent by the browser is not a PNG image")
    width, height, depth, colour = struct.unpack(">IIBB", png[16:26])
    return width, height, depth, colour
