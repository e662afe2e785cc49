"""CSV downloads (the class's runs, runs compared): rows as text a spreadsheet reads as they were meant.

- A number is written as the page shows it, without binary floating point's noise: 0.993 - 0.98 is
  0.013, not 0.013000000000000012. Floats are rounded to 12 significant digits, far past what any
  figure here measures (the noise sits near the 17th) and short of none of them (a learning rate of
  1e-06, a timestamp to the hundredth of a second).
- A text cell a spreadsheet would run as a formula (one starting with =, +, -, @, a tab or a carriage
  return: a display name like `=HYPERLINK(...)`) gets a leading apostrophe, as OWASP advises against
  CSV injection.
"""

from __future__ import annotations

import csv
import io
import math
from typing import Iterable, Optional, Sequence

SIGNIFICANT_DIGITS = 12
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def cell(value):
    """One value as its CSV cell: a float without its noise, a formula-like text defused, the rest as is."""
    if isinstance(value, float) and math.isfinite(value):
        return float(f"{value:.{SIGNIFICANT_DIGITS}g}")
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def csv_text(rows: Iterable[dict], columns: Optional[Sequence[str]] = None) -> str:
    """`rows` as CSV text, a header line first: `columns` in that order (default: the first row's keys),
    a missing value as an empty cell, every cell through `cell`."""
    rows = list(rows)
    if columns is None:
        columns = list(rows[0]) if rows else []
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(columns), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: cell(row.get(k)) for k in columns})
    return out.getvalue()
