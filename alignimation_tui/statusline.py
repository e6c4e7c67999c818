"""The app's status bar as one line: which parts to show, and how to fit them into a width.

Pure functions, no Textual: the app hands over what it knows, ``fit_status`` decides what fits.
Every part has a rank (0: never dropped, higher: less useful); when the line is too long the
least useful parts take their short form first, then go, so a narrow terminal loses the device
name before it loses the counts or the nudge step.
"""
from __future__ import annotations

from dataclasses import dataclass

SEP = " │ "
ELLIPSIS = "…"


@dataclass(frozen=True)
class Part:
    text: str
    rank: int  # 0: always shown; the higher, the sooner it is shortened or dropped
    short: str | None = None  # what it says when room is short (None: it has no shorter form)
    short_rank: int | None = None  # when the short form is taken (default: ``rank``)


def fit_status(parts: list[Part], width: int) -> str:
    """``parts`` joined on one line of at most ``width`` characters, in their order: the least
    useful are shortened, then dropped; rank-0 parts are never dropped (if they alone are too
    long, the line is cut with an ellipsis)."""
    texts = [p.text for p in parts]
    shown = [bool(p.text) for p in parts]

    def line() -> str:
        return SEP.join(t for t, s in zip(texts, shown) if s)

    if width <= 0:
        return ""
    steps = [(p.rank, 1, i) for i, p in enumerate(parts) if p.rank > 0]  # 1: drop it
    steps += [(p.rank if p.short_rank is None else p.short_rank, 0, i)  # 0: take its short form
              for i, p in enumerate(parts) if p.short is not None]
    for _, drop, i in sorted(steps, key=lambda s: (-s[0], s[1])):  # the least useful first
        if len(line()) <= width:
            return line()
        if drop:
            shown[i] = False
        elif shown[i]:
            texts[i] = parts[i].short
            shown[i] = bool(texts[i])
    over = len(line()) - width
    if over > 0:  # the kept parts alone are too long: cut the longest of them, not the line's end
        i = max((i for i in range(len(parts)) if shown[i]), key=lambda i: len(texts[i]))
        texts[i] = texts[i][:max(0, len(texts[i]) - over - 1)] + ELLIPSIS
    text = line()
    return text if len(text) <= width else text[:max(0, width - 1)] + ELLIPSIS


def count_text(counts: dict[str, int]) -> str:
    return " · ".join(f"{n} {status}" for status, n in counts.items()) or "no photos yet"


def model_parts(models: str) -> list[Part]:
    """The mode's words on its device and models (``"cpu · MTCNN + identity"``), one part per
    `` · `` piece. A piece that carries a hint in brackets is a standing condition (``"identity
    matching off (`alignimation-tui models --download`)"``): it stays long after the device has
    gone, then loses its hint, then goes."""
    parts = []
    for piece in filter(None, (p.strip() for p in models.split(" · "))):
        if piece.endswith(")") and " (" in piece:
            parts.append(Part(piece, 3, piece[:piece.index(" (")], short_rank=8))
        else:
            parts.append(Part(piece, 9))
    return parts


def status_parts(counts: dict[str, int], *, nudge_step: str, filter_name: str, sort_column: str,
                 render_note: str = "", busy: str = "", queue: int | None = None, models: str = "",
                 reference: str | None = None) -> list[Part]:
    """What the status bar can say, in display order. ``queue`` is None before the worker has
    said anything (and then neither ``models`` nor ``reference`` is shown)."""
    parts = [Part(count_text(counts), 0)]
    if busy:
        parts.append(Part(busy, 1))
    if queue:
        parts.append(Part(f"queue {queue}", 2))
    if render_note:
        short = render_note
        for verb in ("wrote ", "up to date: "):  # the path's last part is enough when room is short
            if render_note.startswith(verb):
                path = render_note[len(verb):].split(" (")[0]
                short = verb + path.rstrip("/").rsplit("/", 1)[-1]
        parts.append(Part(render_note, 2, short if short != render_note else None, short_rank=8))
    if queue is not None:
        parts += model_parts(models)
        parts.append(Part(f"ref {reference or '—'}", 5))
    parts.append(Part(f"filter {filter_name}", 2 if filter_name != "all" else 6))
    parts.append(Part(f"sort {sort_column}", 7))
    parts.append(Part(f"nudge {nudge_step}", 0))
    return parts
