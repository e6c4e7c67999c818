"""The app's actions in the command palette (ctrl+p), by the names the keys panel gives them, each
with its key: "Reject frame  x", "Nudge left  ⇧←"."""
from __future__ import annotations

from functools import partial

from textual.command import DiscoveryHit, Hit, Hits, Provider
from textual.content import Content

from ..triage import COLUMNS
from .keys import KEYS, Key


def _with_key(name: Content | str, k: Key) -> Content:
    return (name if isinstance(name, Content) else Content(name)).append_text(f"  {k.display}", "bold")


class ActionCommands(Provider):
    """Every key that runs an action, by its label."""

    @property
    def _keys(self) -> list[Key]:
        return [k for k in KEYS if k.action]

    def _run(self, k: Key):
        return partial(self.app.run_action, k.action)

    async def discover(self) -> Hits:
        for k in self._keys:
            yield DiscoveryHit(_with_key(k.label, k), self._run(k), text=k.label, help=f"{k.group} · key {k.display}")

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for k in self._keys:
            score = matcher.match(k.label)
            if score > 0:
                yield Hit(score, _with_key(matcher.highlight(k.label), k), self._run(k), text=k.label,
                          help=f"{k.group} · key {k.display}")


SORT_NAMES = {"name": "photo name", "residual": "residual", "sharpness": "sharpness", "confidence": "confidence",
              "identity": "identity distance", "eye": "eye ratio", "mouth": "mouth ratio"}


class SortCommands(Provider):
    """"Sort by date", "Sort by flag", …: every column, in view or not (``s`` cycles them too)."""

    def _commands(self) -> list[tuple[str, str]]:
        return [(f"Sort by {SORT_NAMES.get(key, key)}", key) for key, _, _ in COLUMNS]

    def _run(self, key: str):
        return partial(self.app.run_action, f"sort_by('{key}')")

    async def discover(self) -> Hits:
        for name, key in self._commands():
            yield DiscoveryHit(name, self._run(key), text=name, help="sort the table (s cycles the columns)")

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for name, key in self._commands():
            score = matcher.match(name)
            if score > 0:
                yield Hit(score, matcher.highlight(name), self._run(key), text=name,
                          help="sort the table (s cycles the columns)")
