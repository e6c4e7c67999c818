"""Every key of the app in one table: the bindings, the Footer, the keys panel (`?`) and the
command palette's names all come from ``KEYS``, so they cannot disagree.

One plain label per key ("Reject frame", "Nudge left"); the Footer shows a short word for the
most used ones, dropping the least used first on a narrow terminal but always keeping `?` and
`q`.
"""
from __future__ import annotations

from dataclasses import dataclass
from itertools import product

from rich.text import Text
from textual.app import ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Footer, Static
from textual.widgets._footer import FooterKey

GROUPS = ("triage", "navigation", "nudge", "view", "render")


@dataclass(frozen=True)
class Key:
    group: str
    key: str  # Textual key name(s), comma-separated
    display: str  # what the panel, the palette and the Footer show
    label: str  # the one plain label: the panel and the palette say this
    action: str | None = None  # None: a key of a widget (the table's arrows), listed for completeness
    footer: str | None = None  # the Footer's short word; None: not in the Footer
    footer_rank: int = 99  # lower stays longer in a narrow Footer; 0 is never dropped


KEYS: tuple[Key, ...] = (
    Key("triage", "a", "a", "Accept frame", "verdict('accepted')", "Accept", 1),
    Key("triage", "x", "x", "Reject frame", "verdict('rejected')", "Reject", 1),
    Key("triage", "u", "u", "Verdict back to auto", "verdict('auto')", "Auto", 4),
    Key("triage", "p", "p", "Pin as reference", "pin", "Pin", 3),
    Key("navigation", "up", "↑", "Previous photo"),
    Key("navigation", "down", "↓", "Next photo"),
    Key("navigation", "n", "n", "Next flagged frame", "next_flagged(1)", "Next flagged", 7),
    Key("navigation", "N", "N", "Previous flagged frame", "next_flagged(-1)"),
    Key("navigation", "f", "f", "Next filter", "cycle_filter", "Filter", 5),
    Key("navigation", "s", "s", "Sort by the next column", "cycle_sort", "Sort", 6),
    Key("navigation", "q", "q", "Quit (or ctrl+q)", "quit", "Quit", 0),
    Key("nudge", "shift+left", "⇧←", "Nudge left", "nudge('x', -1)"),
    Key("nudge", "shift+right", "⇧→", "Nudge right", "nudge('x', 1)"),
    Key("nudge", "shift+up", "⇧↑", "Nudge up", "nudge('y', -1)"),
    Key("nudge", "shift+down", "⇧↓", "Nudge down", "nudge('y', 1)"),
    Key("nudge", "left_square_bracket", "[", "Rotate anticlockwise", "nudge('angle', -1)"),
    Key("nudge", "right_square_bracket", "]", "Rotate clockwise", "nudge('angle', 1)"),
    Key("nudge", "minus", "-", "Zoom out", "nudge('scale', -1)"),
    Key("nudge", "plus,equals_sign", "+", "Zoom in", "nudge('scale', 1)"),
    Key("nudge", "full_stop", ".", "Nudge step fine / coarse", "nudge_step"),
    Key("nudge", "0", "0", "Reset nudge", "nudge_reset"),
    Key("view", "o", "o", "Onion skin", "preview_mode('onion')", "Onion", 8),
    Key("view", "l", "l", "Landmarks, zoomed in", "preview_mode('detections')", "Landmarks", 9),
    Key("view", "L", "L", "Landmarks, whole photo", "preview_mode('photo')"),
    Key("view", "v", "v", "Hide / show the preview", "toggle_preview"),
    Key("view", "z", "z", "Zoom the preview", "zoom_preview"),
    Key("view", "question_mark", "?", "Keys (this panel)", "show_keys", "Keys", 0),
    Key("view", "ctrl+p", "^p", "Command palette"),
    Key("render", "w", "w", "Render now", "render", "Render", 2),
)


def bindings() -> list[Binding]:
    """The app's bindings, in Footer order (the most used first, `?` and `q` last)."""
    def binding(k: Key) -> Binding:
        return Binding(k.key, k.action, k.footer or k.label, show=k.footer is not None, key_display=k.display,
                       tooltip=k.label)

    with_action = [k for k in KEYS if k.action]
    in_footer = sorted((k for k in with_action if k.footer), key=lambda k: (k.footer_rank == 0, FOOTER_ORDER.index(k.key)))
    return [binding(k) for k in in_footer] + [binding(k) for k in with_action if not k.footer]


FOOTER_ORDER = ("a", "x", "u", "p", "w", "n", "f", "s", "o", "l", "question_mark", "q")


def footer_width(k: Key) -> int:
    """Cells a Footer key takes (Textual's FooterKey: key and description, padded)."""
    return len(k.display) + 2 + len(k.footer or "") + 1


PALETTE_KEY_WIDTH = 13  # "▏ ^p palette " docked at the right


def footer_keys(width: int) -> set[str]:
    """Which keys the Footer shows in ``width`` columns: rank 0 always, then by rank while they fit."""
    shown = [k for k in KEYS if k.footer]
    budget = width - PALETTE_KEY_WIDTH
    chosen: set[str] = set()
    for k in sorted(shown, key=lambda k: k.footer_rank):
        if k.footer_rank == 0 or footer_width(k) <= budget:
            chosen.add(k.key)
            budget -= footer_width(k)
    return chosen


class AppFooter(Footer):
    """Textual's Footer, showing only what fits: the least used keys go first, `?` and `q` stay."""

    def compose(self) -> ComposeResult:
        keep = footer_keys(self.app.size.width)
        self._shown = keep
        for widget in super().compose():
            if isinstance(widget, FooterKey) and not widget.has_class("-command-palette") and widget.key not in keep:
                continue
            yield widget

    def on_resize(self) -> None:
        if getattr(self, "_shown", None) is not None and footer_keys(self.app.size.width) != self._shown:
            self.call_after_refresh(self.recompose)


def group_text(group: str) -> Text:
    keys = [k for k in KEYS if k.group == group]
    width = max(len(k.display) for k in keys)
    text = Text(group, style="bold underline")
    for k in keys:
        text.append("\n")
        text.append(k.display.ljust(width), style="bold")
        text.append(f"  {k.label}")
    return text


GAP = 3  # columns between two columns of groups


def pack_groups(width: int) -> list[list[str]]:
    """The groups in columns for a panel ``width`` cells wide: as many columns as fit, each group
    whole, the tallest column as short as can be (so 80x24 shows every key without scrolling)."""
    texts = {g: group_text(g) for g in GROUPS}
    widest = max(t.cell_len for g in GROUPS for t in texts[g].split("\n"))
    heights = {g: len(texts[g].plain.splitlines()) for g in GROUPS}
    n = max(1, min(len(GROUPS), (width + GAP) // (widest + GAP)))
    best: list[list[str]] | None = None
    for assignment in product(range(n), repeat=len(GROUPS)):
        columns = [[g for g, c in zip(GROUPS, assignment) if c == i] for i in range(n)]
        if any(not c for c in columns):
            continue
        tallest = max(sum(heights[g] for g in c) + len(c) - 1 for c in columns)
        if best is None or tallest < best[0]:
            best = (tallest, columns)
    return best[1]


class KeysScreen(ModalScreen[None]):
    """`?`: every key, grouped; Escape (or `?`, `q`) closes it."""

    DEFAULT_CSS = """
    KeysScreen { align: center middle; }
    KeysScreen > VerticalScroll {
        width: auto; max-width: 100%; height: auto; max-height: 100%;
        background: $panel; border: round $primary; padding: 0 1;
    }
    KeysScreen Horizontal { width: auto; height: auto; }
    KeysScreen .keys-column { width: auto; height: auto; margin-right: 3; }
    KeysScreen .keys-column.-last { margin-right: 0; }
    KeysScreen .group { width: auto; height: auto; margin-bottom: 1; }
    KeysScreen .group.-last { margin-bottom: 0; }
    KeysScreen #keys-hint { color: $text-muted; width: auto; }
    """
    BINDINGS = [Binding("escape,question_mark,q", "close", "Close", show=False)]

    def compose(self) -> ComposeResult:
        columns = pack_groups(self.app.size.width - 6)  # the border and the padding
        self._columns = len(columns)
        with VerticalScroll(id="keys-panel"):
            with Horizontal():
                for i, column in enumerate(columns):
                    with Vertical(classes="keys-column" + (" -last" if i == len(columns) - 1 else "")):
                        for j, group in enumerate(column):
                            yield Static(group_text(group), classes="group" + (" -last" if j == len(column) - 1 else ""))
            yield Static("Escape closes · ctrl+p finds any of these by name", id="keys-hint")

    def on_resize(self) -> None:
        if len(pack_groups(self.app.size.width - 6)) != self._columns:
            self.call_after_refresh(self.recompose)

    def action_close(self) -> None:
        self.dismiss()


KEY_ACTIONS = {k.action.split("(")[0] for k in KEYS if k.action}


class KeysPanel:
    """Mixed into the App: `?` opens the panel, the palette's "Keys" too, and the app's own keys do
    nothing while it is up (it closes on Escape, `?` or `q`)."""

    def action_show_keys(self) -> None:
        if not isinstance(self.screen, KeysScreen):
            self.push_screen(KeysScreen())

    def check_action(self, action: str, parameters: tuple) -> bool | None:
        if action in KEY_ACTIONS and isinstance(self.screen, KeysScreen):
            return False
        return super().check_action(action, parameters)

    def get_system_commands(self, screen):
        """Textual's own commands, with "Keys" opening our panel (Textual's own does not close on
        Escape and labels keys by their bindings' descriptions)."""
        for command in super().get_system_commands(screen):
            if command.title == "Keys":
                command = SystemCommand("Keys", "Every key, grouped (?)", self.action_show_keys)
            yield command
