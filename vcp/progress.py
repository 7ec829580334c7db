"""Rich progress bars, tables and consoles shared by every command.

Names shown to people are data (``Putting [something] on a surface`` is a class name):
nothing vcp shows is ever read as Rich markup. vcp's consoles have markup off
(:func:`console`), and its tables and progress lines wrap every string in a plain
:class:`~rich.text.Text`, so a console handed in by an API caller cannot read them as
markup either.
"""

from __future__ import annotations

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text


def console(*, stderr: bool = False, width: int | None = None, quiet: bool = False) -> Console:
    """A console that never reads markup in what it prints."""
    return Console(stderr=stderr, width=width, quiet=quiet, markup=False)


def plain(value) -> Text:
    """``value`` as text that no console reads as markup."""
    return value if isinstance(value, Text) else Text(str(value))


class PlainTable(Table):
    """A Rich table whose title, headers and cells are plain text, never markup."""

    def __init__(self, *headers, title=None, caption=None, **kwargs):
        super().__init__(*headers, title=None if title is None else plain(title),
                         caption=None if caption is None else plain(caption), **kwargs)

    def add_column(self, header="", *args, **kwargs):
        return super().add_column(plain(header), *args, **kwargs)

    def add_row(self, *cells, **kwargs):
        return super().add_row(*(None if c is None else plain(c) for c in cells), **kwargs)


class RateColumn(ProgressColumn):
    """``12.3 videos/s`` (or any unit) from the task's measured speed."""

    def __init__(self, unit: str):
        super().__init__()
        self.unit = unit

    def render(self, task) -> Text:
        speed = task.fields.get("rate") or task.speed
        return Text(f"{speed:.1f} {self.unit}/s" if speed else f"- {self.unit}/s", style="cyan")


def make_progress(console: Console, unit: str) -> Progress:
    return Progress(
        TextColumn("{task.description}", style="bold", markup=False),
        BarColumn(),
        MofNCompleteColumn(),
        RateColumn(unit),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )


def human_bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"
