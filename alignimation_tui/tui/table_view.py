"""Small helpers on the frame table (a Textual DataTable): which columns are in view, the sort
mark in the header, and the row of a photo. What to sort by is ``triage.next_sort_column``."""
from __future__ import annotations

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
