"""A small plot under the table: the residual of every frame over time, the selected one marked.
What to draw comes from ``triage.residual_series``; this only colours it."""
from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from ...triage import FrameRow, residual_order, residual_series


class SeriesPlot(Static):
    DEFAULT_CSS = "SeriesPlot { height: 2; padding: 0 1; }"
    _ordered: tuple = (None, [])  # (the rows' version, the hashes of those with a residual, in date order)

    def plot(self, rows: dict[str, FrameRow], selected: str | None, selected_name: str = "", version=None) -> None:
        """``rows``: hash -> row; ``version``: changes whenever their date order may (a row comes or
        goes, its date or whether it has a residual changes; None: unknown). They are put in date
        order again only then: not for every move of the cursor, nor a new status or verdict
        (10,000 rows: 30 ms a key press)."""
        label_width = 24
        if version is None or self._ordered[0] != version:
            self._ordered = (version, [r.hash for r in residual_order(list(rows.values()))])
        ordered = [rows[h] for h in self._ordered[1]]
        series = residual_series(ordered, max(1, self.size.width - 2 - label_width), selected, ordered)
        if not series.bars:
            self.update(Text("residual over time: no aligned frame yet", style="dim"))
            return
        bars = Text(series.bars, style="cyan")
        marker = Text(" " * len(series.bars))
        if series.marked is not None:
            bars.stylize("bold yellow reverse", series.marked, series.marked + 1)
            marker = Text(" " * series.marked + "▲", style="bold yellow")
        bars.append(f"  resid% max {series.top:.2f}", style="dim")
        marker.append(" " * max(0, len(series.bars) - len(marker.plain)) + f"  {selected_name}"[:label_width + 2],
                      style="dim")
        self.update(Text("\n").join([bars, marker]))
