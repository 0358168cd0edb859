"""One rich progress bar for the loops that count items (training steps, greedy picks, rows).

Light to import (no torch), so selectors and trainers share it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


@contextmanager
def progress_bar(enabled: bool, desc: str, total: int | None, unit: str = "rows"
                 ) -> Iterator[Callable[..., None]]:
    """A rich progress bar (on stderr) yielding ``advance(n=1, note="")``; a no-op when ``enabled`` is false."""
    if not enabled:
        yield lambda n=1, note="": None
        return
    bar = Progress(TextColumn("[progress.description]{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TextColumn(unit), TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
                   TextColumn("{task.fields[note]}"), console=Console(stderr=True))
    with bar:
        task = bar.add_task(desc, total=total, note="")

        def advance(n: int = 1, note: str = "") -> None:
            bar.update(task, advance=n, note=note)

        yield advance
