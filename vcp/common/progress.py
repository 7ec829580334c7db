"""Rich progress bars, tables and consoles shared by every command.

Names shown to people are data (``Putting [something] on a surface`` is a class name):
nothing vcp shows is ever read as Rich markup. vcp's consoles have markup off
(:func:`console`), and its tables and progress lines wrap every string in a plain
:class:`~rich.text.Text`, so a console handed in by an API caller cannot read them as
markup either.
"""

from __future__ import annotations

import datetime
import os
import sys
import time

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

from vcp.common import collector
from vcp.common.report import one_line

LOG_WIDTH = 160  # columns of a table written to a file or pipe (no terminal to fit)


def console(*, stderr: bool = False, width: int | None = None, quiet: bool = False) -> Console:
    """A console that never reads markup in what it prints: as wide as the terminal, or
    :data:`LOG_WIDTH` columns where the output is not a terminal."""
    stream = sys.stderr if stderr else sys.stdout
    if width is None and not (hasattr(stream, "isatty") and stream.isatty()) and "COLUMNS" not in os.environ:
        width = LOG_WIDTH
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
        if not self.columns:  # the first column names things (a group, a split, a file): kept whole
            kwargs.setdefault("no_wrap", True)
        kwargs.setdefault("overflow", "fold")  # a word too long for its column is folded, never cut short
        return super().add_column(plain(header), *args, **kwargs)

    def add_row(self, *cells, **kwargs):
        return super().add_row(*(None if c is None else plain(c) for c in cells), **kwargs)


LONG_TABLE = 500  # rows past which a table is written as plain aligned text (Rich takes ~1 s per 1,000 rows)


def print_table(out: Console, table: Table) -> None:
    """``out.print(table)``; a table of more than :data:`LONG_TABLE` rows (a dry run over
    12,000 classes) as plain aligned columns, the same cells, in a fraction of the time."""
    if table.row_count <= LONG_TABLE:
        out.print(table)
        return
    columns = [[str(c) for c in column._cells] for column in table.columns]
    headers = [str(column.header) for column in table.columns]
    widths = [max(len(h), *(len(c) for c in cells)) for h, cells in zip(headers, columns, strict=True)]
    right = [column.justify == "right" for column in table.columns]

    def line(cells) -> str:
        return "  ".join(c.rjust(w) if r else c.ljust(w) for c, w, r in zip(cells, widths, right, strict=True)).rstrip()

    text = [str(table.title or ""), line(headers), line(["-" * w for w in widths])]
    text += [line(row) for row in zip(*columns, strict=True)]
    text.append(str(table.caption or ""))
    out.file.write("\n".join(t for t in text if t) + "\n")
    out.file.flush()


class RateColumn(ProgressColumn):
    """``12.3 videos/s`` (or any unit) from the task's measured speed."""

    def __init__(self, unit: str):
        super().__init__()
        self.unit = unit

    def render(self, task) -> Text:
        speed = task.fields.get("rate") or task.speed
        return Text(f"{speed:.1f} {self.unit}/s" if speed else f"- {self.unit}/s", style="cyan")


class LogProgress:
    """Progress where no one watches a bar (stderr is a file: Slurm, nohup, CI): one plain
    line per task at least every ``VCP_PROGRESS_SECONDS`` (30 s) and when it ends, e.g.
    ``extract train: 8123/60000 videos, 41.2 videos/s, ETA 0:20:57``. The rate counts
    what this run did (a resumed run's earlier videos are not in it)."""

    def __init__(self, console: Console, interval: float):
        self.console, self.interval = console, interval
        self.tasks: list[dict] = []

    def __enter__(self) -> LogProgress:
        return self

    def __exit__(self, *exc) -> None:
        for task in self.tasks:
            if task.get("shown") != (task["completed"], task["total"]):
                self._line(task)

    def add_task(self, description: str, total: int | None = None, **fields) -> int:
        now = time.monotonic()
        self.tasks.append({"description": description, "total": total, "completed": 0, "base": 0,
                           "started": now, "printed": now})
        return len(self.tasks) - 1

    def advance(self, task_id: int, advance: float = 1) -> None:
        self.update(task_id, advance=advance)

    def update(self, task_id: int, *, total=None, completed=None, advance=None, **fields) -> None:
        task = self.tasks[task_id]
        if total is not None:
            task["total"] = total
        if completed is not None:
            if task["completed"] == 0:  # set before any work: done by an earlier run
                task["base"] = completed
            task["completed"] = completed
        if advance:
            task["completed"] += advance
        if time.monotonic() - task["printed"] >= self.interval and task.get("shown") != (task["completed"], task["total"]):
            self._line(task)

    def _line(self, task: dict) -> None:
        task["printed"] = now = time.monotonic()
        task["shown"] = (task["completed"], task["total"])
        if self.console.quiet:
            return
        done, total = task["completed"], task["total"]
        rate = (done - task["base"]) / (now - task["started"]) if now > task["started"] else 0.0
        eta = f", ETA {datetime.timedelta(seconds=round((total - done) / rate))}" if rate > 0 and total and total > done else ""
        line = f"{task['description']}: {done:g}/{total if total is not None else '?'} videos, {rate:.1f} videos/s{eta}"
        self.console.file.write(one_line(line) + "\n")
        self.console.file.flush()


def progress_seconds() -> float:
    try:
        return max(0.0, float(os.environ.get("VCP_PROGRESS_SECONDS", "30")))
    except ValueError:
        return 30.0


def make_progress(console: Console, unit: str) -> Progress | LogProgress:
    """A live bar on a terminal; plain progress lines anywhere else (see :class:`LogProgress`).
    The work begins: the ``vcp`` command's garbage collector runs again (:mod:`vcp.common.collector`)."""
    collector.resume()
    if not console.is_terminal:
        return LogProgress(console, progress_seconds())
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
