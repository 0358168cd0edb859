"""Rich progress bars on stderr for the loops that count items (rows, training steps, greedy picks).

One way to build a bar: :func:`make_progress` gives the display (description, bar, done / total, rate, elapsed
time, ETA, a note), :class:`ProgressTask` puts one counted task on it (on a display of its own or on one the
caller lends), and :func:`progress_bar` wraps that for a simple loop. Light to import (no torch).

Where stderr is no terminal (a job in the background, its output sent to a file), a bar cannot redraw: each
task then writes a plain line with its count, rate and ETA at most every :data:`LOG_EVERY` seconds.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

#: seconds between two plain progress lines where stderr is no terminal
LOG_EVERY = 60.0
#: seconds of progress the rate and ETA are estimated over (rich's default is 30): work that comes in bursts, such
#: as SPICE's windows (a pause while the proxy computes a window's gradients, then a dozen picks at once), needs
#: several bursts in the estimate, or the rate is that of one burst, or unknown between two
SPEED_ESTIMATE_SECONDS = 300.0


def plain_line(task: Task, unit: str) -> str:
    """``desc: done/total unit, rate unit/s, eta h:mm:ss`` (the rate and ETA once they are known)."""
    line = f"{task.description}: {int(task.completed):,}/{int(task.total or 0):,} {unit}"
    speed = task.speed
    if speed:
        line += f", {speed:,.1f} {unit}/s" if speed >= 1 else f", {60 * speed:,.1f} {unit}/min"
    remaining = task.time_remaining
    if remaining is not None:
        whole = int(remaining)
        line += f", eta {whole // 3600}:{whole % 3600 // 60:02d}:{whole % 60:02d}"
    return line


class RateColumn(ProgressColumn):
    """Items per second while the rate is known and positive; otherwise only the unit (``8/8 rows``)."""

    def __init__(self, unit: str = "rows") -> None:
        super().__init__()
        self.unit = unit

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        if speed is None or speed <= 0:
            return Text(self.unit, style="progress.data.speed")
        return Text(f"{speed:,.1f} {self.unit}/s", style="progress.data.speed")


def make_progress(console: Console | None = None, unit: str = "rows") -> Progress:
    """A progress display: description, bar, done / total, rate, elapsed, ETA and the task's ``note`` field.

    Tasks added to it by hand need a ``note`` field (``add_task(..., note="")``).
    """
    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        RateColumn(unit),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        TextColumn("{task.fields[note]}"),
        console=console or Console(stderr=True),
        speed_estimate_period=SPEED_ESTIMATE_SECONDS,
    )


class ProgressTask:
    """One counted task on a rich progress display: a display of its own, or ``progress`` when the caller lends
    one (to show several bars together). Nothing is shown when ``progress`` is false or ``total`` is 0.

    ``cached`` items already done elsewhere are named in the description, not counted. Work may advance the
    bar within a step (:meth:`advance`); :meth:`finish_step` then moves it to the step's end.
    """

    def __init__(self, progress: bool | Progress, desc: str, total: int | None, cached: int = 0, *,
                 unit: str = "rows") -> None:
        self._own: Progress | None = None
        self._progress: Progress | None = None
        self._task: TaskID | None = None
        self._step_done = 0
        self._unit = unit
        self._logged = time.monotonic()
        if total == 0 or progress is False:
            return
        if isinstance(progress, Progress):
            self._progress = progress
        else:
            self._own = self._progress = make_progress(unit=unit)
        label = desc if cached == 0 else f"{desc} ({cached:,} {unit} cached)"
        self._task = self._progress.add_task(label, total=total, note="")

    def __enter__(self) -> ProgressTask:
        if self._own is not None:
            self._own.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._own is not None:
            self._own.stop()
        elif self._progress is not None and self._task is not None:
            self._progress.stop_task(self._task)

    def advance(self, n: int = 1, note: str = "") -> None:
        """``n`` more items done (within the current step); ``note`` replaces the text after the bar."""
        self._step_done += n
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, advance=n, note=note)
            self._log()

    def _log(self) -> None:
        """A plain line where the display cannot redraw (see the module docstring)."""
        assert self._progress is not None and self._task is not None
        console = self._progress.console
        now = time.monotonic()
        if console.is_terminal or now - self._logged < LOG_EVERY:
            return
        self._logged = now
        task = next(t for t in self._progress.tasks if t.id == self._task)
        console.print(plain_line(task, self._unit), soft_wrap=True, highlight=False)

    def finish_step(self, n: int) -> None:
        """A step of ``n`` items is done: move the bar to its end whatever :meth:`advance` reported."""
        if self._progress is not None and self._task is not None:
            self._progress.advance(self._task, max(0, n - self._step_done))
        self._step_done = 0


@contextmanager
def progress_bar(enabled: bool, desc: str, total: int | None, unit: str = "rows"
                 ) -> Iterator[Callable[..., None]]:
    """A progress bar (on stderr) yielding ``advance(n=1, note="")``; shows nothing when ``enabled`` is false."""
    with ProgressTask(enabled, desc, total, unit=unit) as task:
        yield task.advance
