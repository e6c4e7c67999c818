"""The frame table's cells: their styles, which columns are numbers, which sort the worst first, and
cells of the fixed-width columns that the table need not measure, and the flag column's width (its
longest flag, kept as flags change). What a row says is computed in
``triage`` (no Textual there); this is how it is drawn."""
from __future__ import annotations

from rich.text import Text
from textual.widgets import DataTable

from ..triage import COLUMNS
from .table_view import FittedWidth

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


FLAG_MAX = next(width for key, _, width in COLUMNS if key == "flag")  # a longer flag is cut; the caption has it whole
FLAG_MIN = len("flag") + 1  # the header and its sort mark


class FlagWidth(FittedWidth):
    """How wide the flag column needs to be: its longest flag (at most FLAG_MAX), at least its header,
    kept as flags are set and dropped without a pass over the rows (there can be 10,000)."""

    def __init__(self) -> None:
        super().__init__(FLAG_MIN, FLAG_MAX)


def fit_column(table: DataTable, key: str, width: int) -> bool:
    """Give the fixed-width column ``key`` of ``table`` the width ``width`` without measuring a cell;
    True when it changed. The table has no public call for this: its rendered rows are cached by
    its update count and its scrollable width is recomputed on its next idle when asked."""
    column = table.columns[key]
    if column.width == width:
        return False
    column.width = width
    table._update_count += 1  # the cached rows were drawn at the old width
    table._require_update_dimensions = True  # the scrollable width
    table.refresh()
    table.check_idle()
    return True
