"""Classes: a teacher's class code, the students' display names, and what the class page shows.

A class is nothing but a code (`period-3`) that runs are tagged with, beside the display name the
student chose (registry.create_run(..., class_code=, student=)). There are no accounts: whoever opens the
app with the code is in the class for that browser, and the code only scopes what is *shown* (the
class's runs, names and leaderboard). It gives no power: cancelling or deleting a run still takes
the run's owner token (registry._check_owner), and a class's runs obey the same hosting bounds as any
visitor's (limits: the queue caps are per owner and for everyone together, never per class).

Codes and names are visitor input: a code is a short slug or refused in one line; a name is free
text cleaned of control characters and capped in length. Names are shown only inside their class,
and the CSV export neutralises spreadsheet formulas (a name like `=HYPERLINK(...)`: csvfile).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import unicodedata
import urllib.parse
from typing import Callable, Optional

from .class_codes import CODE_MAX, ClassError, check_code
from .csvfile import csv_text
from .errors import MnistLabError
from .live import collapse
from .registry import Run, list_runs
from .sweeps import varied_fields

NAME_MAX = 24

# A run's key settings, shown beside each leaderboard row and in the CSV (config names; the page
# puts them in the form's words).
KEY_SETTINGS = ("model", "optimizer", "lr", "batch_size", "epochs", "train_size", "augment")


# --- codes and names ------------------------------------------------------------------------------

def new_code(prefix: str = "class") -> str:
    """A fresh code that is hard to guess (the prefix a teacher would say, then a random part): anyone
    who knows a code sees that class, so a guessable one like `period-3` is only as private as its name."""
    stem = re.sub(r"[^a-z0-9]+", "-", prefix.lower()).strip("-")[:CODE_MAX - 7] or "class"
    return check_code(f"{stem}-{secrets.token_hex(3)}")


def clean_name(text: object) -> str:
    """A display name fit to show: control and format characters (newlines, bidi overrides, zero-width
    marks) removed, runs of spaces made one, at most NAME_MAX characters; ClassError when nothing is left."""
    raw = text if isinstance(text, str) else ""
    kept = "".join(" " if ch.isspace() else ch for ch in unicodedata.normalize("NFC", raw)
                   if ch.isspace() or not unicodedata.category(ch).startswith("C"))
    name = " ".join(kept.split())[:NAME_MAX].strip()
    if not name:
        raise ClassError(f"Choose a display name (up to {NAME_MAX} characters; no email or account needed).")
    return name


def membership_cookie(code: Optional[str], name: Optional[str]) -> str:
    """A browser's class membership as a cookie value: percent-encoded JSON (letters, digits, % and a
    few marks only, so it is safe inside a script string and a Set-Cookie header); "" outside a class."""
    return urllib.parse.quote(json.dumps({"code": code, "name": name}), safe="") if code else ""


def read_membership_cookie(value: object) -> tuple[Optional[str], Optional[str]]:
    """(code, name) from a cookie a browser sent back: untrusted, so each part is checked like typed
    input and dropped when it fails (a bad code: no class; a bad name: no name yet)."""
    try:
        saved = json.loads(urllib.parse.unquote(value)) if isinstance(value, str) and value else {}
        code = check_code(saved.get("code"))
    except (ValueError, TypeError, AttributeError, MnistLabError):
        return None, None
    try:
        name = clean_name(saved.get("name")) if saved.get("name") else None
    except MnistLabError:
        name = None
    return code, name


# --- the class's runs -----------------------------------------------------------------------------

def class_runs(code: str, root: Optional[os.PathLike] = None) -> list[Run]:
    """The runs tagged with this class, oldest first; nothing of any other class."""
    return list_runs(root=root, class_code=check_code(code))


def student_of(run: Run) -> str:
    """The name a run is shown under in its class."""
    return run.student or "(no name)"


def _settings(run: Run) -> dict:
    return {name: run.config.get(name) for name in KEY_SETTINGS}


def students(class_runs: list[Run]) -> dict[str, list[Run]]:
    """{shown name: that student's runs, oldest first}, students in the order they first ran. A student
    is a browser (its owner token), so two who chose the same name stay apart: the later one is shown
    as "Sam (2)". The token itself never leaves this function."""
    by_owner: dict[str, list[Run]] = {}
    for r in class_runs:
        by_owner.setdefault(r.owner or f"name:{student_of(r)}", []).append(r)
    shown: dict[str, list[Run]] = {}
    for mine in by_owner.values():
        name, n = student_of(mine[-1]), 2
        while name in shown:
            name, n = f"{student_of(mine[-1])} ({n})", n + 1
        shown[name] = mine
    return shown


def leaderboard(class_runs: list[Run], metrics: Optional[Callable[[str], list[dict]]] = None) -> list[dict]:
    """One row per student, best test accuracy first: the student's best completed run (ties: the
    earlier run) with its key settings and how many runs they made. Students with no completed run
    yet are listed last, without a rank or an accuracy.

    With `metrics(run_id)` (its metric rows; the validation rows are enough), a best run whose training
    collapsed (live.collapse) keeps its place, since its model was saved before the collapse, and its
    "note" says so; every other row's note is empty."""
    rows = []
    for name, mine in students(class_runs).items():
        scored = [r for r in mine if r.status == "completed" and r.test_accuracy is not None]
        best = max(scored, key=lambda r: (r.test_accuracy, -r.created_at)) if scored else None
        fell = collapse(metrics(best.id)) if best and metrics else None
        rows.append({"student": name, "test_accuracy": best.test_accuracy if best else None,
                     "run": best.id if best else None, "runs": len(mine), **(_settings(best) if best else {}),
                     "note": fell.note() if fell else "", "_created": (best or mine[-1]).created_at})
    rows.sort(key=lambda row: (row["test_accuracy"] is None, -(row["test_accuracy"] or 0.0), row["_created"]))
    for rank, row in enumerate(rows, start=1):
        del row["_created"]
        row["rank"] = rank if row["test_accuracy"] is not None else None
    return rows


MAX_AXES = 6              # a parallel-coordinates chart stays readable up to about this many axes
MAX_STUDENT_TICKS = 15    # beyond this a student axis is a wall of names


def parallel_rows(class_runs: list[Run]) -> tuple[list[str], list[dict]]:
    """(axes, rows) for one parallel-coordinates chart of the class's finished runs: an axis per setting
    that differs between them (sweeps.varied_fields, at most MAX_AXES; the model when none does), led
    by the student when the class is small enough to label; a row per completed run with its test
    accuracy ("test accuracy") and id ("run")."""
    done = [r for r in class_runs if r.status == "completed" and r.test_accuracy is not None]
    names = {r.id: name for name, mine in students(class_runs).items() for r in mine}
    fields = varied_fields([r.config for r in done])[:MAX_AXES] or ["model"]
    if 1 < len({names[r.id] for r in done}) <= MAX_STUDENT_TICKS:
        fields = ["student", *fields[:MAX_AXES - 1]]
    rows = [{**{f: r.config.get(f) for f in fields if f != "student"}, "student": names[r.id],
             "test accuracy": r.test_accuracy, "run": r.id} for r in done]
    return fields, rows


def runs_table(class_runs: list[Run]) -> list[dict]:
    """Every run of the class, newest first, as rows: who (as `students` shows them), status, key
    settings, accuracies, timing. No owner token and no server path (the CSV and the page show these
    rows as they are)."""
    names = {r.id: name for name, mine in students(class_runs).items() for r in mine}
    return [{"run": r.id, "student": names[r.id], "status": str(r.status), **_settings(r),
             "best_val_accuracy": r.best_val_accuracy, "test_accuracy": r.test_accuracy,
             "duration_s": round(r.duration, 1) if r.duration is not None else None,
             "created_at": r.created_at} for r in reversed(class_runs)]


def runs_csv(class_runs: list[Run]) -> str:
    """The class's runs as CSV text (runs_table's rows, a header line first; csvfile: numbers without float
    noise, no formula a spreadsheet would run)."""
    return csv_text(runs_table(class_runs), ["run", "student", "status", *KEY_SETTINGS, "best_val_accuracy",
                                             "test_accuracy", "duration_s", "created_at"])
