"""Small helpers on the frame table (a Textual DataTable): which columns are in view, the sort
mark in the header, the row of a photo, and the width of the columns fitted to their widest cell.
What to sort by is ``triage.next_sort_column``."""
from __future__ import annotations

from collections import Counter

from rich.cells import cell_len
from rich.text import Text
from textual.widgets import DataTable

from ..triage import COLUMNS

SORT_MARKS = ("▲", "▼")  # in order, the worst first


def visible_columns(table: DataTable) -> list[str]:
    """The keys of the columns wholly in view (the preview takes a third of a wide terminal)."""
    left, right = table.scroll_x, table.scroll_x + table.scrollable_content_region.width
    x, shown = 0, []
    for column in table.ordered_columns:
        width = column.get_render_width(table)
        if x >= left and x + width <= right:
            shown.append(column.key.value)
        x += width
    return shown


def mark_sort_column(table: DataTable, sort_column: str, worst_first: bool) -> None:
    """The sort column's header says so: ▼ when the worst come first, else ▲; the others lose their mark."""
    for key, label, _ in COLUMNS:
        mark = SORT_MARKS[worst_first] if key == sort_column else ""
        column = table.columns[key]
        column.label = Text(label + mark)
        column.content_width = max(column.content_width, column.label.cell_len)
    table.refresh()


def move_to_row(table: DataTable, row_key: str | None) -> bool:
    """Put the cursor on the row of ``row_key`` if it is in the table; True when the cursor moved."""
    if row_key is None or row_key not in table.rows:
        return False
    index = table.get_row_index(row_key)
    if index == table.cursor_row:
        return False
    table.move_cursor(row=index)
    return True


class FittedWidth:
    """How wide a column of fitted width must be: its widest cell (at most ``maximum``: a longer one
    is cut), at least ``minimum`` (its header and sort mark). Kept as cells are set and dropped, as a
    count of rows per width, so a change never costs a pass over the rows; the table is then given
    the width (``cells.fit_column``) and need not measure a cell of the column."""

    def __init__(self, minimum: int, maximum: int):
        self.minimum, self.maximum = minimum, maximum
        self._width: dict[str, int] = {}  # row key -> its cell's width (capped)
        self._rows: Counter = Counter()  # width -> rows whose cell is that wide

    def set(self, key: str, text: str) -> None:
        width = min(cell_len(text), self.maximum)
        if self._width.get(key) == width:
            return
        self.drop(key)
        self._width[key] = width
        self._rows[width] += 1

    def drop(self, key: str) -> None:
        width = self._width.pop(key, None)
        if width is not None:
            self._rows[width] -= 1
            if not self._rows[width]:
                del self._rows[width]

    @property
    def width(self) -> int:
        return max(self.minimum, max(self._rows, default=0))


class FrameTable(DataTable):
    """The frame table: a DataTable whose columns all have a width (fixed, or fitted by the app to
    their widest cell) and whose rows are one line. A DataTable measures every cell of every new row
    on its next idle, to size the columns that size themselves and the rows of several lines; with
    neither, that pass (0.6-1.1 s over the 10,000 rows of a library's open) changes nothing and is
    left out. Should a column without a width appear, the table measures as before. (Cells are
    updated with ``update_width=False``: the table measures none of them.)"""

    def _update_dimensions(self, new_rows) -> None:
        if any(column.auto_width for column in self.columns.values()):
            super()._update_dimensions(new_rows)
        else:
            super()._update_dimensions(())  # the scrollable size from the widths, as it would be
