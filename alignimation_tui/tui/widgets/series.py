"""A small plot under the table: the residual of every frame over time, the selected one marked.
What to draw comes from ``triage.residual_bars`` and ``marked_column``; this only colours it."""
from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from ...triage import FrameRow, marked_column, residual_bars, residual_order


class SeriesPlot(Static):
    DEFAULT_CSS = "SeriesPlot { height: 2; padding: 0 1; }"
    _ordered: tuple = (None, [], {})  # (the rows' version, the hashes with a residual in date order, hash -> place)
    _bars: tuple = (None, "", 0.0)  # ((versions, width) they were made for, the bars, a full bar's value)

    def plot(self, rows: dict[str, FrameRow], selected: str | None, selected_name: str = "", version=None,
             values_version=None) -> None:
        """``rows``: hash -> row; ``version``: changes whenever their date order may (a row comes or
        goes, its date or whether it has a residual changes; None: unknown); ``values_version``:
        whenever a residual's value may (None: unknown). The order is made again only when the first
        changes, the bars only when either does: not for every move of the cursor, nor a new status
        or verdict (10,000 rows: 30 ms a key press to order them, 7 ms to draw the bars)."""
        label_width = 24
        width = max(1, self.size.width - 2 - label_width)
        if version is None or self._ordered[0] != version:
            hashes = [r.hash for r in residual_order(list(rows.values()))]
            self._ordered = (version, hashes, {h: k for k, h in enumerate(hashes)})
        _, hashes, places = self._ordered
        made_for = (version, values_version, width)
        if None in made_for or self._bars[0] != made_for:
            self._bars = (made_for, *residual_bars([rows[h] for h in hashes], width))
        _, text, top = self._bars
        if not text:
            self.update(Text("residual over time: no aligned frame yet", style="dim"))
            return
        marked = marked_column(places.get(selected) if selected is not None else None, len(hashes), width)
        bars = Text(text, style="cyan")
        marker = Text(" " * len(text))
        if marked is not None:
            bars.stylize("bold yellow reverse", marked, marked + 1)
            marker = Text(" " * marked + "▲", style="bold yellow")
        bars.append(f"  resid% max {top:.2f}", style="dim")
        marker.append(" " * max(0, len(text) - len(marker.plain)) + f"  {selected_name}"[:label_width + 2],
                      style="dim")
        self.update(Text("\n").join([bars, marker]))
