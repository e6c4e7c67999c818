"""The frame table's cells: their styles, which columns are numbers, which sort the worst first, and
cells of the fixed-width columns that the table need not measure. What a row says is computed in
``triage`` (no Textual there); this is how it is drawn."""
from __future__ import annotations

from rich.text import Text

from ..triage import COLUMNS

STATUS_STYLES = {"aligned": "green", "skipped": "blue", "turned": "yellow", "outlier": "yellow", "stranger": "magenta",
                 "no_subject": "magenta", "failed": "red", "detecting": "cyan", "queued": "dim"}
VERDICT_STYLES = {"accepted": "bold green", "rejected": "bold red", "auto": "dim"}
NUMERIC = {"eye", "mouth", "confidence", "residual", "sharpness", "identity"}
# Columns sorted the worst first (marked ▼), and whether that is a descending sort.
WORST_FIRST = {"residual": True, "flag": True, "identity": True, "sharpness": False}


class FixedCell(Text):
    """The text of a cell in a column of fixed width: the table has no need to measure it (its width
    is the column's), so it offers no measure. The table measured every cell of every new row; at
    1000 rows that was most of its first layout (ten Rich measures a row)."""

    __slots__ = ()
    __rich_measure__ = None


FIXED_WIDTH = {key for key, _, width in COLUMNS if width is not None}


def cell(column: str, value: str) -> Text | str:
    kind = FixedCell if column in FIXED_WIDTH else Text
    if column == "status":
        return kind(value, style=STATUS_STYLES.get(value, ""))
    if column == "verdict":
        return kind(value, style=VERDICT_STYLES.get(value, ""))
    if column == "flag":
        return kind(value, style="yellow" if value.startswith("⚑") else "red")
    if column in NUMERIC:
        return kind(value, justify="right")
    if column == "date":
        return kind(value)
    return value


def sort_key(column: str):
    if column in NUMERIC:
        return lambda v: float(str(v)) if str(v) else -1.0
    return lambda v: str(v).lower()
