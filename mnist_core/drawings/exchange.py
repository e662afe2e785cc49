"""The drawing set as files: exported in MNIST's own format, and imported from them.

An export is a folder of four files, every list in the same order (the drawings' ids):

    drawings-images-idx3-ubyte   the 28x28 pictures, uint8, in MNIST's IDX format (as train-images-idx3-ubyte)
    drawings-labels-idx1-ubyte   the digits, uint8, in MNIST's IDX format
    strokes.jsonl                one JSON object a line: digit, predicted, pointer, canvas, strokes (strokes.py),
                                 giver ("g1", "g2"... numbered in the export: one per browser), date (UTC day)
    DATASHEET.md                 what the set is: counts by digit, pointer type and date, the preprocessing,
                                 the consent line the givers saw, the licence (MNIST_DRAWINGS_LICENCE)

What is left out: the givers' hashes (renumbered g1, g2...: nothing derived from a browser's cookie
leaves the server), the class codes (a code opens its class's page, with the students' names), the
time of day. An import reads the same files, checks every field as a visitor's (one line naming the
file and line), skips pictures the set already holds, and adds the rest in one transaction, or
nothing if they would not fit under MNIST_DRAWINGS_MAX. Export, import into an empty registry,
export again: the same bytes.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import sqlalchemy as sa

from ..class_codes import check_code
from ..data import idx_bytes, read_idx
from ..errors import DataError, DrawingRefused, MnistLabError
from ..paths import atomic_write
from ..preprocess import SIZE
from ..registry.db import transaction
from ..registry.schema import DRAWINGS
from . import settings
from .givers import imported_giver
from .settings import consent_line
from .store import DRAWINGS_LOCK, list_drawings
from .strokes import (MAX_STROKES_JSON_BYTES, POINTERS, check_canvas, check_digit, check_picture, check_pointer,
                      check_predicted, check_strokes, picture_key, strokes_text)

IMAGES = "drawings-images-idx3-ubyte"
LABELS = "drawings-labels-idx1-ubyte"
STROKES = "strokes.jsonl"
DATASHEET = "DATASHEET.md"
_LINE_KEYS = ("digit", "predicted", "pointer", "canvas", "strokes", "giver", "date")
_GIVER = re.compile(r"g[1-9][0-9]{0,8}")
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")

PREPROCESSING = (
    "Each picture is the 28x28 image the model saw, made from the canvas as MNIST made its digits: the ink's "
    "bounding box fitted into 20x20 pixels keeping its aspect ratio (with anti-aliasing), then placed in a "
    "28x28 field with its centre of mass at the centre; 0 is background, 255 full ink "
    "(mnist_core.preprocess.canvas_to_mnist).")


def _day(created_at: float) -> str:
    return dt.datetime.fromtimestamp(created_at, dt.timezone.utc).date().isoformat()


@dataclass
class Exported:
    count: int
    folder: Path


def export_set(folder: os.PathLike, root: Optional[os.PathLike] = None) -> Exported:
    """Write the whole set into `folder` (made if need be), each file whole or not at all."""
    drawings = list_drawings(root)
    folder = Path(folder)
    numbers: dict[str, str] = {}
    lines = []
    for d in drawings:
        giver = numbers.setdefault(d.giver, f"g{len(numbers) + 1}")
        line = dict(digit=d.digit, predicted=d.predicted, pointer=d.pointer, canvas=d.canvas, strokes=d.strokes,
                    giver=giver, date=_day(d.created_at))
        lines.append(json.dumps(line, separators=(",", ":")) + "\n")
    images = np.stack([d.picture for d in drawings]) if drawings else np.zeros((0, SIZE, SIZE), np.uint8)
    labels = np.array([d.digit for d in drawings], np.uint8)
    files = {IMAGES: idx_bytes(images), LABELS: idx_bytes(labels), STROKES: "".join(lines).encode(),
             DATASHEET: datasheet(drawings, len(numbers)).encode()}
    try:
        for name, body in files.items():
            atomic_write(folder / name, lambda tmp, body=body: Path(tmp).write_bytes(body))
    except OSError as exc:
        raise DataError(f"cannot write the drawing set into {folder.name or folder}: "
                        f"{exc.strerror or type(exc).__name__}") from None
    return Exported(len(drawings), folder)


def datasheet(drawings: list, givers: int) -> str:
    """DATASHEET.md for these drawings (no date of its own: the same set gives the same bytes)."""
    licence = settings.current().licence
    by_digit = np.bincount(np.array([d.digit for d in drawings], np.int64), minlength=10)
    by_pointer = {p: sum(d.pointer == p for d in drawings) for p in POINTERS}
    by_day: dict[str, int] = {}
    for d in drawings:
        by_day[_day(d.created_at)] = by_day.get(_day(d.created_at), 0) + 1
    out = [
        "# MNIST Lab: the visitors' drawings", "",
        f"{len(drawings)} handwritten digits drawn on MNIST Lab's canvas by {givers} browsers, each given by its "
        "drawer with one click, labelled by them with the digit they meant.", "",
        "## Files", "",
        f"- `{IMAGES}`: the 28x28 pictures, uint8, in MNIST's IDX format (as `train-images-idx3-ubyte`).",
        f"- `{LABELS}`: the digits 0-9, uint8, in MNIST's IDX format.",
        f"- `{STROKES}`: one JSON object a line, in the same order: `digit`; `predicted`, the model's answer (or "
        "null); `pointer` (mouse, touch or pen); `canvas`, the canvas side in pixels; `strokes`, a list of "
        "strokes, each a list of `[x, y, t]` points (canvas pixels from the top left, milliseconds since the "
        "first point); `giver`, `g1`, `g2`... the same for every drawing from one browser, numbered in this "
        "export; `date`, the UTC day it was given.",
        f"- `{DATASHEET}`: this file.", "",
        "## Preprocessing", "", PREPROCESSING, "",
        "## Consent", "",
        "Before adding a drawing, its drawer was shown this line:", "", f"> {consent_line(licence)}", "",
        "Nothing about the drawers is kept: no IP address, no user agent, no name. Class codes are not exported.",
        "",
        "## Licence", "", licence, "",
        "## Counts", "",
        "| digit | " + " | ".join(map(str, range(10))) + " |", "|---" * 11 + "|",
        "| drawings | " + " | ".join(str(int(n)) for n in by_digit) + " |", "",
        "| pointer | drawings |", "|---|---|", *[f"| {p} | {n} |" for p, n in by_pointer.items()], "",
        "| date (UTC) | drawings |", "|---|---|", *[f"| {day} | {n} |" for day, n in sorted(by_day.items())], "",
    ]
    return "\n".join(out)


@dataclass
class Imported:
    added: int
    already_held: int        # pictures the set (or the file, earlier) already had: skipped
    licence: Optional[str]   # the licence its datasheet names, if it has one


def import_set(folder: os.PathLike, root: Optional[os.PathLike] = None, class_code: Optional[str] = None) -> Imported:
    """Add an exported set (export_set's files in `folder`) to this one; `class_code` tags what is added.
    Refused whole, in one line, when a file is missing or wrong or the set would pass MNIST_DRAWINGS_MAX."""
    config = settings.current()
    if not config.enabled:
        raise DrawingRefused("this server does not collect drawings (MNIST_DRAWINGS=off)")
    code = None if class_code is None else check_code(class_code)
    folder = Path(folder)
    if not folder.is_dir():
        raise DrawingRefused(f"{folder.name or folder} is not a folder")
    paths = {name: folder / name for name in (IMAGES, LABELS, STROKES)}
    for name, path in paths.items():
        if not path.is_file():
            raise DrawingRefused(f"{name} is missing from {folder.name or folder}")
    cap = config.max_drawings
    if paths[IMAGES].stat().st_size > 16 + cap * SIZE * SIZE:
        raise DrawingRefused(f"{IMAGES} holds more drawings than this set may (MNIST_DRAWINGS_MAX={cap:,})")
    try:
        images, labels = read_idx(paths[IMAGES]), read_idx(paths[LABELS])
    except DataError as exc:
        raise DrawingRefused(str(exc)) from None
    if images.ndim != 3 or images.shape[1:] != (SIZE, SIZE):
        raise DrawingRefused(f"{IMAGES} does not hold 28x28 pictures")
    if labels.shape != (len(images),):
        raise DrawingRefused(f"{LABELS} does not hold one label per picture of {IMAGES}")
    set_key = hashlib.sha256(images.tobytes() + labels.tobytes()).hexdigest()[:16]
    rows = []
    for i, line in enumerate(_lines(paths[STROKES], len(images))):
        try:
            rows.append(_row(line, images[i], int(labels[i]), set_key, code))
        except MnistLabError as exc:
            raise DrawingRefused(f"{STROKES} line {i + 1}: {exc}") from None
    with transaction(root, write=True, lock=DRAWINGS_LOCK) as conn:
        held = set(conn.scalars(sa.select(DRAWINGS.c.picture_key)))
        new = []
        for row in rows:
            if row["picture_key"] not in held:
                held.add(row["picture_key"])
                new.append(row)
        total = conn.scalar(sa.select(sa.func.count()).select_from(DRAWINGS)) + len(new)
        if total > cap:
            raise DrawingRefused(f"the set would hold {total:,} drawings, over MNIST_DRAWINGS_MAX ({cap:,}): "
                                 "nothing was imported")
        if new:
            conn.execute(DRAWINGS.insert(), new)  # in file order: their ids keep it
    return Imported(len(new), len(rows) - len(new), _licence(folder / DATASHEET))


def _lines(path: Path, expected: int) -> list:
    """strokes.jsonl's lines, parsed: exactly `expected` of them, each at most a drawing's worth of bytes."""
    out = []
    with open(path, "rb") as f:
        while True:
            raw = f.readline(MAX_STROKES_JSON_BYTES + 1000)
            if not raw:
                break
            if len(out) == expected:
                raise DrawingRefused(f"{STROKES} has more lines than {IMAGES} has pictures ({expected:,})")
            if not raw.endswith(b"\n") and len(raw) > MAX_STROKES_JSON_BYTES:
                raise DrawingRefused(f"{STROKES} line {len(out) + 1} is too long")
            try:
                out.append(json.loads(raw, parse_constant=_refuse))
            except (ValueError, RecursionError):
                raise DrawingRefused(f"{STROKES} line {len(out) + 1} is not JSON") from None
    if len(out) != expected:
        raise DrawingRefused(f"{STROKES} has {len(out):,} lines for {expected:,} pictures")
    return out


def _refuse(name: str):
    raise ValueError(name)


def _row(line: object, picture: np.ndarray, label: int, set_key: str, code: Optional[str]) -> dict:
    """One imported drawing as a registry row, every field checked as a visitor's."""
    if not isinstance(line, dict) or set(line) != set(_LINE_KEYS):
        raise DrawingRefused(f"not an object with exactly {', '.join(_LINE_KEYS)}")
    digit = check_digit(line["digit"])
    if digit != label:
        raise DrawingRefused(f"the digit {digit} differs from the label {label} in {LABELS}")
    giver, day = line["giver"], line["date"]
    if not isinstance(giver, str) or not _GIVER.fullmatch(giver):
        raise DrawingRefused("giver must be g1, g2...")
    try:
        created = dt.datetime.strptime(day, "%Y-%m-%d").replace(tzinfo=dt.timezone.utc) \
            if isinstance(day, str) and _DATE.fullmatch(day) else None
    except ValueError:
        created = None
    if created is None:
        raise DrawingRefused("date must be a day, YYYY-MM-DD")
    side = check_canvas(line["canvas"])
    pixels = check_picture(picture)
    return dict(created_at=created.timestamp(), digit=digit, predicted=check_predicted(line["predicted"]),
                pointer=check_pointer(line["pointer"]), picture=pixels.tobytes(), picture_key=picture_key(pixels),
                strokes=strokes_text(check_strokes(line["strokes"], side), side),
                giver=imported_giver(set_key, giver), class_code=code)


def _licence(path: Path) -> Optional[str]:
    """The licence line of an exported DATASHEET.md (the line after "## Licence"), if there is one."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")[:200_000]
    except OSError:
        return None
    found = re.search(r"^## Licence\n\n(.+)$", text, flags=re.MULTILINE)
    return found.group(1).strip()[:settings.MAX_LICENCE_CHARS] if found else None
