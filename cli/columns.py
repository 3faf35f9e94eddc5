"""Tables laid out for the terminal's width. A command names its columns in the order it shows
them, each with a priority: the most needed columns that fit are shown, a column may give up width
down to a floor (with `…`, or by its own rule), and a column without a floor (an id a command takes,
a cost) is never cut. rich alone would squeeze every column to fit, ids and costs included."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from rich import box
from rich.cells import cell_len
from rich.table import Table
from rich.text import Text

Cell = str | Text
GAP = 1  # columns between two columns


def ellipsis(text: Text, width: int) -> Text:
    """The start of the text, `…` at the end when it had to be cut."""
    if text.cell_len <= width:
        return text
    cut = text.copy()
    cut.truncate(width, overflow="ellipsis")
    return cut


def keep_end(text: Text, width: int) -> Text:
    """The end of the text (`2025-06-01 10:00:00` → `06-01 10:00:00`)."""
    return text if text.cell_len <= width else text[len(text) - width:]


@dataclass(frozen=True)
class Column:
    header: str
    cell: Callable[[dict[str, Any]], Cell]
    priority: int  # 0 is shown first; higher numbers are left out first when the terminal is narrow
    floor: int | None = None  # the narrowest it may be cut to; None: never cut
    cut: Callable[[Text, int], Text] = ellipsis  # how a cell is cut to a width; `None` floor: never called
    justify: str = "left"
    style: str | None = None
    footer: Cell | None = None
    optional: bool = False  # left out when no row has anything in it
    fold: bool = False  # long cells wrap onto more lines instead of being cut (floor is the narrowest)
    yields: bool = False  # cut before the others (a long free text such as an error)


def width_of(cell: Text) -> int:
    return max((cell_len(line) for line in cell.plain.split("\n")), default=0)


def as_text(cell: Cell, style: str | None = None) -> Text:
    return cell if isinstance(cell, Text) else Text(cell, style=style or "")


def layout(columns: Iterable[Column], rows: list[dict[str, Any]], width: int) -> list[tuple[Column, int, list[Text]]]:
    """The columns to show in their order, each with its width and its cells cut to that width."""
    cells = {c.header: [as_text(c.cell(r)) for r in rows] for c in columns}
    shown = [c for c in columns if not (c.optional and not any(t.plain for t in cells[c.header]))]
    natural = {c.header: max([cell_len(c.header), *map(width_of, cells[c.header]),
                              width_of(as_text(c.footer)) if c.footer is not None else 0]) for c in shown}
    least = {h: natural[h] for h in natural}
    for c in shown:
        if c.floor is not None:
            least[c.header] = min(natural[c.header], c.floor)
    chosen: list[Column] = []
    used = 0
    for c in sorted(shown, key=lambda c: c.priority):  # the most needed first, each if its floor fits
        need = least[c.header] + (GAP if chosen else 0)
        if used + need <= width or not chosen:
            chosen.append(c)
            used += need
    chosen = [c for c in shown if c in chosen]  # back in display order
    widths = {c.header: natural[c.header] for c in chosen}
    over = sum(widths.values()) + GAP * (len(chosen) - 1) - width
    # Cut a column by one, and again, until the table fits (or all are at their floor): a yielding
    # column first, the first-priority column (the id) last, else the one with the most to spare.
    while over > 0:
        cuttable = [c for c in chosen if widths[c.header] > least[c.header]]
        if not cuttable:
            break
        widest = max(cuttable, key=lambda c: (c.yields, c.priority > 0, widths[c.header] - least[c.header],
                                              -c.priority))
        widths[widest.header] -= 1
        over -= 1
    out = []
    for c in chosen:
        w = widths[c.header]
        out.append((c, w, [t if c.fold or width_of(t) <= w else c.cut(t, w) for t in cells[c.header]]))
    return out


def table(columns: list[Column], rows: list[dict[str, Any]], width: int, title: str | None = None) -> Table:
    """The rows as a rich Table at most `width` wide, laid out by `layout`."""
    laid = layout(columns, rows, width)
    footers = any(c.footer is not None for c, _, _ in laid)
    t = Table(box=box.SIMPLE if footers else box.SIMPLE_HEAD, title=title, title_justify="left", title_style="bold",
              show_footer=footers,
              pad_edge=False, show_edge=False, padding=0)  # the box puts GAP between columns
    for c, w, _ in laid:
        t.add_column(c.header, footer=c.footer if c.footer is not None else "", justify=c.justify, style=c.style,
                     width=w, no_wrap=not c.fold, overflow="fold" if c.fold else "ellipsis")
    for n in range(len(rows)):
        t.add_row(*(cells[n] for _, _, cells in laid))
    return t
