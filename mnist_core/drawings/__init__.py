"""The visitors' drawing set: digits drawn on the Draw page's canvas, given with one click, kept in
the run registry, measured against MNIST, trained on, exported in MNIST's own format.

What a drawing keeps: the 28x28 picture the model saw, the strokes (points, times, pointer type),
the digit the giver says it is, the model's answer, the day and time, the class code if the browser
is in a class, and the giver as a hash of the browser's owner token. Nothing about the person: no
IP address, no user agent, no name. docs/drawings.md tells the whole story.

The API (pages and the CLI use these names; `token` is the browser's owner token, the pages'
visitor_token()):

    add_drawing(picture, digit, strokes, pointer, owner=token, predicted=, class_code=, canvas=) -> id
    list_drawings(digit=, pointer=, mine=token, class_code=, newest_first=, limit=, offset=) -> [Drawing]
    count_drawings(same filters) -> int;  counts(mine=, class_code=) -> Counts (total, by digit, by pointer)
    delete_drawing(id, by=token)          only the browser that gave it; by=None is the operator (CLI)
    drawing_set(part="all"|"train"|"held-out") -> (uint8 pictures [N,28,28], int64 digits, int64 ids)
    Drawing.given_by(token)               "mine": this browser gave it
    settings.current()                    MNIST_DRAWINGS on|off, the caps, the licence;  consent_line()
    describe(images, labels) -> SetStats  mean image, ink, stroke width, slant per digit (MNIST too)
    export_set(folder), import_set(folder, class_code=)   the IDX files, strokes.jsonl, DATASHEET.md

Every refusal a visitor can cause is one line: DrawingRefused (a field, blank, a duplicate, a cap,
the set off), or ClassError for a bad class code. The modules, in reading order:

    strokes    the fields a drawing is given with and their checks; the picture's key (duplicates)
    givers     the giver kept as a hash; the held-out part, split by giver, never by drawing
    settings   MNIST_DRAWINGS, MNIST_DRAWINGS_PER_HOUR, MNIST_DRAWINGS_MAX, MNIST_DRAWINGS_LICENCE
    store      add, list, count, delete, the set as arrays (the registry's `drawings` table)
    exchange   export and import: drawings-images-idx3-ubyte, drawings-labels-idx1-ubyte,
               strokes.jsonl, DATASHEET.md
    stats      the set measured as MNIST is: mean image, ink, stroke width, slant

How a model does on the set is mnist_core.evaluate.evaluate_on_drawings; training mixes the set in
with TrainConfig.drawings_weight (training/loop.py).
"""

from ..errors import DrawingRefused
from . import settings
from .exchange import Exported, Imported, export_set, import_set
from .givers import HELD_OUT, giver_of, split_by_giver
from .settings import consent_line
from .stats import SetStats, describe
from .store import (PARTS, Counts, Drawing, add_drawing, count_drawings, counts, delete_drawing, drawing_set,
                    list_drawings)
from .strokes import CANVAS_SIZE, MAX_DURATION_MS, MAX_POINTS, MAX_STROKES, POINTERS

__all__ = [
    "add_drawing", "list_drawings", "count_drawings", "counts", "delete_drawing", "drawing_set", "Drawing",
    "Counts", "PARTS", "settings", "consent_line", "describe", "SetStats", "export_set", "import_set",
    "Exported", "Imported", "giver_of", "split_by_giver", "HELD_OUT", "DrawingRefused", "POINTERS",
    "CANVAS_SIZE", "MAX_STROKES", "MAX_POINTS", "MAX_DURATION_MS",
]
