"""The drawing set in the run registry: add, list, count, delete, and the set as arrays.

The drawings live in the registry's `drawings` table (registry/schema.py), so a cluster's hosts
share one set as they share the runs. A row: its id, when it was given, the digit, the model's
answer, the pointer type, the 28x28 picture (784 bytes), the picture's hash (unique: a duplicate is
refused), the strokes (JSON), the giver (a hash, givers.py) and the class code. Nothing else.

A visitor's add is checked field by field (strokes.py) before the registry is touched, then counted
against the caps (settings.py: the set's size, the browser's drawings in the last hour) and the
duplicates in one write transaction: BEGIN IMMEDIATE on SQLite, an advisory lock on PostgreSQL, so
two adds at once can neither both take the last place nor both add the same picture.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np
import sqlalchemy as sa

from ..class_codes import check_code
from ..errors import DrawingRefused
from ..preprocess import CANVAS_SIZE, SIZE
from ..registry.db import transaction
from ..registry.schema import DRAWINGS
from . import settings
from .givers import giver_of, split_by_giver
from .strokes import (POINTERS, check_canvas, check_digit, check_picture, check_pointer, check_predicted,
                      check_strokes, picture_key, strokes_text)

# A PostgreSQL advisory lock key of its own (registry/db.py's are ...01 and ...02): held by a write
# that counts the set before it adds to it.
DRAWINGS_LOCK = 0x4D4E495354_03
HOUR = 3600.0
PARTS = ("all", "train", "held-out")  # drawing_set's parts (givers.py: the held-out part, by giver)


@dataclass
class Drawing:
    id: int
    created_at: float               # seconds since the epoch
    digit: int                      # what the giver says it is
    predicted: Optional[int]        # what the model answered
    pointer: str                    # mouse, touch or pen
    picture: np.ndarray             # uint8 [28,28], as MNIST keeps its images
    strokes: list                   # [[[x, y, t_ms], ...], ...] in canvas pixels (strokes.py)
    canvas: int                     # the canvas side the strokes were drawn on
    giver: str                      # givers.giver_of(the owner token), never the token
    class_code: Optional[str]

    def given_by(self, token: Optional[str]) -> bool:
        """Whether the browser holding owner token `token` gave this drawing."""
        try:
            return token is not None and giver_of(token) == self.giver
        except DrawingRefused:
            return False


def add_drawing(picture: Any, digit: Any, strokes: Any, pointer: Any, owner: Any, *, predicted: Any = None,
                class_code: Any = None, canvas: Any = CANVAS_SIZE, root: Optional[os.PathLike] = None) -> int:
    """Add a visitor's drawing to the set; its id. Refused in one line (DrawingRefused) when the set is
    off, a field is wrong, the picture is blank or already in the set, or a cap is reached.

    `picture` is the 28x28 image the model saw (canvas_to_mnist's float [28,28] in [0,1], or uint8);
    `strokes` the canvas's strokes (a list, or its JSON text) on a canvas of side `canvas`; `pointer`
    mouse, touch or pen; `owner` the browser's owner token (kept only as its hash); `predicted` the
    model's answer; `class_code` the class the browser is in, if any.
    """
    config = settings.current()
    if not config.enabled:
        raise DrawingRefused("this server does not collect drawings (MNIST_DRAWINGS=off)")
    giver = giver_of(owner)
    row = dict(digit=check_digit(digit), predicted=check_predicted(predicted), pointer=check_pointer(pointer),
               class_code=None if class_code is None else check_code(class_code))
    pixels = check_picture(picture)
    side = check_canvas(canvas)
    checked = check_strokes(strokes, side)
    row.update(picture=pixels.tobytes(), picture_key=picture_key(pixels), strokes=strokes_text(checked, side),
               giver=giver)
    now = time.time()
    with transaction(root, write=True, lock=DRAWINGS_LOCK) as conn:
        held = conn.scalar(sa.select(sa.func.count()).select_from(DRAWINGS))
        if held >= config.max_drawings:
            raise DrawingRefused(f"the drawing set is full ({held:,} drawings): thank you all the same")
        recent = conn.scalar(sa.select(sa.func.count()).select_from(DRAWINGS)
                             .where(DRAWINGS.c.giver == giver, DRAWINGS.c.created_at > now - HOUR))
        if recent >= config.per_hour:
            raise DrawingRefused(f"this browser has given {recent} drawings in the last hour, the most this "
                                 "server takes: thank you, and try again later")
        if conn.scalar(sa.select(DRAWINGS.c.id).where(DRAWINGS.c.picture_key == row["picture_key"])) is not None:
            raise DrawingRefused("this drawing is already in the set")
        return conn.execute(DRAWINGS.insert().values(created_at=now, **row)).inserted_primary_key[0]


def _filters(digit=None, pointer=None, mine=None, class_code=None) -> list:
    """SQL conditions for the filters every read takes: a digit, a pointer type, "mine" (the owner
    token of the browser asking), a class code. Each is checked like any visitor input."""
    where = []
    if digit is not None:
        where.append(DRAWINGS.c.digit == check_digit(digit))
    if pointer is not None:
        where.append(DRAWINGS.c.pointer == check_pointer(pointer))
    if mine is not None:
        where.append(DRAWINGS.c.giver == giver_of(mine))
    if class_code is not None:
        where.append(DRAWINGS.c.class_code == check_code(class_code))
    return where


def list_drawings(root: Optional[os.PathLike] = None, *, digit: Optional[int] = None, pointer: Optional[str] = None,
                  mine: Optional[str] = None, class_code: Optional[str] = None, newest_first: bool = False,
                  limit: Optional[int] = None, offset: int = 0) -> list[Drawing]:
    """The drawings, oldest first (or newest first), matching the filters (see _filters), at most
    `limit` of them after skipping `offset` (the database's LIMIT and OFFSET: a page of the grid reads
    only its own rows)."""
    order = DRAWINGS.c.id.desc() if newest_first else DRAWINGS.c.id
    query = sa.select(DRAWINGS).where(*_filters(digit, pointer, mine, class_code)).order_by(order) \
        .limit(limit).offset(offset or None)
    with transaction(root) as conn:
        rows = conn.execute(query).all()
    return [_to_drawing(r) for r in rows]


def _to_drawing(row) -> Drawing:
    kept = json.loads(row.strokes)
    return Drawing(id=row.id, created_at=row.created_at, digit=row.digit, predicted=row.predicted,
                   pointer=row.pointer, picture=np.frombuffer(bytes(row.picture), np.uint8).reshape(SIZE, SIZE),
                   strokes=kept["strokes"], canvas=kept["canvas"], giver=row.giver, class_code=row.class_code)


def count_drawings(root: Optional[os.PathLike] = None, *, digit: Optional[int] = None, pointer: Optional[str] = None,
                   mine: Optional[str] = None, class_code: Optional[str] = None) -> int:
    """How many drawings list_drawings would list with the same filters (no limit)."""
    with transaction(root) as conn:
        return conn.scalar(sa.select(sa.func.count()).select_from(DRAWINGS)
                           .where(*_filters(digit, pointer, mine, class_code)))


@dataclass
class Counts:
    total: int
    by_digit: list[int]        # index = digit
    by_pointer: dict[str, int]  # every pointer type, 0 where none


def counts(root: Optional[os.PathLike] = None, *, mine: Optional[str] = None,
           class_code: Optional[str] = None) -> Counts:
    """The drawings per digit and per pointer type (of this browser's, or of a class, if asked)."""
    where = _filters(mine=mine, class_code=class_code)
    with transaction(root) as conn:
        per = conn.execute(sa.select(DRAWINGS.c.digit, DRAWINGS.c.pointer, sa.func.count()).where(*where)
                           .group_by(DRAWINGS.c.digit, DRAWINGS.c.pointer)).all()
    by_digit, by_pointer = [0] * 10, dict.fromkeys(POINTERS, 0)
    for digit, pointer, n in per:
        by_digit[digit] += n
        by_pointer[pointer] = by_pointer.get(pointer, 0) + n
    return Counts(total=sum(by_digit), by_digit=by_digit, by_pointer=by_pointer)


def drawing_set(root: Optional[os.PathLike] = None, part: str = "all") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(uint8 pictures [N,28,28], int64 digits [N], int64 ids [N]) of the whole set, oldest first, or of
    one part: "train" or "held-out", split by giver (givers.py)."""
    if part not in PARTS:
        raise DrawingRefused(f"part must be one of {', '.join(PARTS)}")
    with transaction(root) as conn:
        rows = conn.execute(sa.select(DRAWINGS.c.id, DRAWINGS.c.digit, DRAWINGS.c.picture, DRAWINGS.c.giver)
                            .order_by(DRAWINGS.c.id)).all()
    if part != "all":
        train, held_out = split_by_giver(r.giver for r in rows)
        rows = [rows[i] for i in (train if part == "train" else held_out)]
    images = np.frombuffer(b"".join(bytes(r.picture) for r in rows), np.uint8).reshape(len(rows), SIZE, SIZE)
    return (images.copy(), np.array([r.digit for r in rows], np.int64), np.array([r.id for r in rows], np.int64))


def delete_drawing(drawing_id: Any, root: Optional[os.PathLike] = None, by: Optional[str] = None) -> None:
    """Remove one drawing. A visitor (`by`, their owner token) may remove only the drawings their
    browser gave; `by=None` is the operator (the CLI), who may remove any."""
    if not isinstance(drawing_id, int) or isinstance(drawing_id, bool) or drawing_id < 1:
        raise DrawingRefused("a drawing's id is a whole number from 1")
    with transaction(root, write=True) as conn:
        giver = conn.scalar(sa.select(DRAWINGS.c.giver).where(DRAWINGS.c.id == drawing_id))
        if giver is None:
            raise DrawingRefused(f"no drawing {drawing_id}")
        if by is not None and giver_of(by) != giver:
            raise DrawingRefused(f"drawing {drawing_id} was given from another browser: only that browser can "
                                 "remove it")
        conn.execute(DRAWINGS.delete().where(DRAWINGS.c.id == drawing_id))
