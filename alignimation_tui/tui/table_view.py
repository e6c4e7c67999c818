"""Small helpers on the frame table (a Textual DataTable): which columns are in view, the sort
mark in the header, the row of a photo, and the width of the columns fitted to their widest cell.
What to sort by is ``triage.next_sort_column``."""
from __future__ import annotations

from collections import Counter
from itertools import zip_longest
from collections.abc import Sequence
from typing import Callable, Iterable

from rich.cells import cell_len
from rich.console import RenderableType
from rich.text import Text
from textual.cache import LRUCache
from textual.geometry import Region
from textual.widgets import DataTable
from textual.widgets._data_table import DuplicateKey, Row, RowKey, RowRenderables, default_cell_formatter

from ..triage import COLUMNS

SORT_MARKS = ("▲", "▼")  # in order, the worst first
CELLS_DRAWN = 8192  # cells kept as drawn: a tall screen's rows, with and without the cursor, several times over


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

    def set_many(self, cells: Iterable[tuple[str, str]]) -> None:
        """``set`` of each (row key, text) of ``cells``; in one go while no row is kept yet."""
        if self._width:
            for key, text in cells:
                self.set(key, text)
            return
        maximum = self.maximum
        self._width = {key: min(cell_len(text), maximum) for key, text in cells}
        self._rows = Counter(self._width.values())

    def drop(self, key: str) -> None:
        width = self._width.pop(key, None)
        if width is not None:
            self._rows[width] -= 1
            if not self._rows[width]:
                del self._rows[width]

    @property
    def width(self) -> int:
        return max(self.minimum, max(self._rows, default=0))


class _OneLineRows(Sequence):
    """A table's rows in screen order when every row is one line, each looked up when asked for:
    the DataTable makes the list of all its rows, and of every line, again after each change to
    any cell (10,000 rows: 20-40 ms each time the table is drawn after a change)."""

    def __init__(self, table: DataTable):
        self.table = table

    def __len__(self) -> int:
        return len(self.table.rows)

    def _key(self, index: int):
        n = len(self)
        if index < 0:
            index += n
        if not 0 <= index < n:
            raise IndexError(index)
        return self.table._row_locations.get_key(index)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        return self.table.rows[self._key(index)]


class _OneLineOffsets(_OneLineRows):
    """``DataTable._y_offsets`` when every row is one line: line y is row y's first line."""

    def __getitem__(self, y):
        if isinstance(y, slice):
            return [self[i] for i in range(*y.indices(len(self)))]
        return self._key(y), 0

    def clear(self) -> None:  # (``DataTable.clear`` empties the cached list it expects)
        pass


class FrameTable(DataTable):
    """The frame table: a DataTable whose columns all have a width (fixed, or fitted by the app to
    their widest cell) and whose rows are one line. A DataTable measures every cell of every new row
    on its next idle, to size the columns that size themselves and the rows of several lines; with
    neither, that pass (0.6-1.1 s over the 10,000 rows of a library's open) changes nothing and is
    left out. Should a column without a width appear, the table measures as before. (Cells are
    updated with ``update_width=False``: the table measures none of them.)

    Its cells hold the plain text of each value (what ``get_cell`` gives and sorts compare);
    ``style_cell(column, text)`` makes the styled cell when a row is drawn, so only the rows in
    view are ever styled (at 10,000 rows, making 120,000 styled cells up front was a third of the
    table's fill). A plain string is never read as markup ("[brackets]" in a name stay as they are).
    ``add_rows`` adds many rows as ``add_row`` adds one, with the cursor checked and the table
    refreshed once, not once a row. While every row is one line (always, here), the rows in screen
    order and the table's lines are looked up as asked for (``_OneLineRows``), not listed anew
    after every change."""

    def __init__(self, *args, style_cell: Callable[[str, str], RenderableType] | None = None, **kwargs):
        # Cells as drawn, by what they are drawn from (see ``_render_cell``); made first: the
        # DataTable clears its caches while it is made
        self._cells_drawn: LRUCache[tuple, object] = LRUCache(CELLS_DRAWN)
        super().__init__(*args, **kwargs)
        self.style_cell = style_cell or (lambda column, text: Text(text, end=""))

    def _clear_caches(self) -> None:
        super()._clear_caches()
        self._cells_drawn.clear()

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._cells_drawn.clear()

    def _render_cell(self, row_index: int, column_index: int, base_style, width: int, cursor: bool = False,
                     hover: bool = False):
        """A cell drawn, kept by what it is drawn from: its text, place, width, styles and the
        cursor. The DataTable keeps its drawn cells only until any cell changes, and then draws
        every cell in view again (Rich's rendering, 12 columns a row: tens of milliseconds a
        change, several changes a second while photos arrive); unchanged cells are kept here."""
        if row_index < 0 or column_index < 0 or self._tall_rows:
            return super()._render_cell(row_index, column_index, base_style, width, cursor, hover)
        row_key = self._row_locations.get_key(row_index)
        column_key = self._column_locations.get_key(column_index)
        value = self._data[row_key].get(column_key) if row_key in self._data else None
        if not isinstance(value, str):
            return super()._render_cell(row_index, column_index, base_style, width, cursor, hover)
        key = (row_key, column_key, row_index, column_index, value, width, base_style, cursor, hover,
               self._show_hover_cursor, self._pseudo_class_state, self.show_cursor, self.fixed_rows,
               self.fixed_columns, self.cell_padding, self.cursor_foreground_priority,
               self.cursor_background_priority)
        drawn = self._cells_drawn.get(key)
        if drawn is None:
            drawn = self._cells_drawn[key] = super()._render_cell(row_index, column_index, base_style, width,
                                                                  cursor, hover)
        return drawn

    _tall_rows = False  # a row of more than one line was added: the DataTable's own bookkeeping from then on

    def add_row(self, *cells, height: int | None = 1, key: str | None = None, label=None) -> RowKey:
        if height != 1 or label is not None:
            self._tall_rows = True
        return super().add_row(*cells, height=height, key=key, label=label)

    @property
    def ordered_rows(self) -> Sequence[Row]:
        """The rows in screen order: looked up as asked for while every row is one line."""
        if self._tall_rows:
            return DataTable.ordered_rows.fget(self)
        return _OneLineRows(self)

    @property
    def _y_offsets(self):
        if self._tall_rows:
            return DataTable._y_offsets.fget(self)
        return _OneLineOffsets(self)

    def _get_row_region(self, row_index: int) -> Region:
        """As the DataTable's, without adding up the heights of every row above (one line each)."""
        if self._tall_rows or not self.is_valid_row_index(row_index):
            return super()._get_row_region(row_index)
        width = sum(column.get_render_width(self) for column in self.columns.values()) + self._row_label_column_width
        y = row_index + (self.header_height if self.show_header else 0)  # every row above is one line
        return Region(0, y, max(self.size.width, width), 1)

    def _get_cell_region(self, coordinate) -> Region:
        """As the DataTable's, without adding up the heights of every row above (one line each)."""
        if self._tall_rows or not self.is_valid_coordinate(coordinate):
            return super()._get_cell_region(coordinate)
        row_index, column_index = coordinate
        x = sum(column.get_render_width(self) for column in self.ordered_columns[:column_index]) \
            + self._row_label_column_width
        column = self.columns[self._column_locations.get_key(column_index)]
        y = row_index + (self.header_height if self.show_header else 0)
        return Region(x, y, column.get_render_width(self), 1)

    def _update_dimensions(self, new_rows) -> None:
        if any(column.auto_width for column in self.columns.values()):
            super()._update_dimensions(new_rows)
        else:
            super()._update_dimensions(())  # the scrollable size from the widths, as it would be

    def add_rows(self, rows: Iterable[tuple[str, Iterable]]) -> list[RowKey]:  # type: ignore[override]
        """Add ``(key, cells)`` rows at the bottom, one line each, in order: what ``add_row(*cells,
        key=key)`` does for each (a duplicate key raises ``DuplicateKey`` before any row is added),
        with the cursor validated, the first row highlighted and the table refreshed once."""
        rows = [(RowKey(key), tuple(cells)) for key, cells in rows]
        seen = set()
        columns = len(self.ordered_columns)  # (a list made anew each time it is asked for: once, not per row)
        for key, cells in rows:
            if key in self._row_locations or key in seen:
                raise DuplicateKey(f"The row key {key!r} already exists.")
            if len(cells) > columns:
                raise ValueError("More values provided than there are columns.")
            seen.add(key)
        if not rows:
            return []
        was_empty = self.row_count == 0
        column_keys = [column.key for column in self.ordered_columns]
        index = self.row_count
        locations, data, meta, new_rows = self._row_locations, self._data, self.rows, self._new_rows
        for key, cells in rows:
            locations[key] = index
            index += 1
            data[key] = dict(zip_longest(column_keys, cells)) if len(cells) < len(column_keys) \
                else dict(zip(column_keys, cells))
            meta[key] = Row(key, 1, None, False)
            new_rows.add(key)
        self._require_update_dimensions = True
        self.cursor_coordinate = self.cursor_coordinate
        if was_empty and len(self.columns) > 0 and self.show_cursor and self.cursor_type != "none":
            self._highlight_cursor()
        self._update_count += 1
        self.check_idle()
        return [key for key, _ in rows]

    def _compute_row_renderables(self, row_index: int) -> RowRenderables:
        if row_index == -1:
            return super()._compute_row_renderables(row_index)
        row_key = self._row_locations.get_key(row_index)
        if row_key is None or row_key not in self.rows:
            return RowRenderables(None, [])
        values = self._data[row_key]
        style = self.style_cell
        cells = []
        for column in self.ordered_columns:
            value = values.get(column.key)
            if value is None:
                cells.append(Text("", end=""))
            elif isinstance(value, str):
                cells.append(style(column.key.value, value))
            else:
                cells.append(default_cell_formatter(value, wrap=False, height=1) or Text("", end=""))
        return RowRenderables(None, cells)
