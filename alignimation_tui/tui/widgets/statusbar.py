"""The status bar: one line, always. What it says is ``statusline.status_parts``; what fits in
the width it has is ``statusline.fit_status``, worked out again at every size."""
from __future__ import annotations

from rich.text import Text
from textual.widget import Widget

from ...statusline import Part, fit_status


class StatusBar(Widget):
    DEFAULT_CSS = "StatusBar { height: 1; }"

    def __init__(self, *, id: str | None = None):
        super().__init__(id=id)
        self._parts: list[Part] = [Part("starting…", 0)]

    def show(self, parts: list[Part]) -> None:
        self._parts = parts
        self.refresh()

    def render(self) -> Text:
        return Text(fit_status(self._parts, self.content_size.width), no_wrap=True, overflow="ellipsis")
