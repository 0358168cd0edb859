"""Progress bars: one way to build them, and no meaningless rate on a finished bar."""

from __future__ import annotations

import io

from rich.console import Console

from tasksift.util.progress import ProgressTask, RateColumn, make_progress, progress_bar


def quiet_console() -> Console:
    return Console(file=io.StringIO(), width=120, force_terminal=False)


def test_rate_is_shown_only_when_known_and_positive() -> None:
    progress = make_progress(quiet_console(), unit="steps")
    progress.add_task("x", total=8, note="")
    (task,) = progress.tasks
    column = RateColumn("steps")
    assert column.render(task).plain == "steps"  # nothing measured yet
    task.finished_speed = 0.0
    assert column.render(task).plain == "steps"  # not "0.0 steps/s"
    task.finished_speed = 1234.5
    assert column.render(task).plain == "1,234.5 steps/s"


def test_a_finished_bar_prints_no_zero_rate() -> None:
    console = quiet_console()
    progress = make_progress(console)
    with progress:
        task = progress.add_task("rows", total=8, note="")
        progress.advance(task, 8)
        progress.advance(task, 0)
    out = console.file.getvalue()
    assert "8/8" in out and "0.0 rows/s" not in out


def test_task_counts_steps_on_a_lent_display_and_names_cached_rows() -> None:
    progress = make_progress(quiet_console())
    with ProgressTask(progress, "embed", 10, cached=5) as bar:
        bar.advance(3)
        bar.finish_step(4)  # the step had 4 rows; 3 were reported
        bar.finish_step(6)
    (task,) = progress.tasks
    assert task.completed == 10 and task.description == "embed (5 rows cached)"


def test_disabled_or_empty_bars_show_nothing() -> None:
    with progress_bar(False, "x", 5) as advance:
        advance(2, note="ignored")
    with ProgressTask(True, "x", 0) as bar:
        bar.advance(1)
        bar.finish_step(1)
    progress = make_progress(quiet_console())
    with ProgressTask(progress, "x", 0):
        pass
    assert progress.tasks == []


def test_without_a_terminal_a_task_writes_plain_lines_with_its_rate_and_eta(monkeypatch) -> None:
    import tasksift.util.progress as progress_module

    clock = iter(range(0, 10_000, 30))  # every call to the clock is 30 s later
    monkeypatch.setattr(progress_module.time, "monotonic", lambda: float(next(clock)))
    console = quiet_console()
    progress = make_progress(console, unit="rows")
    with ProgressTask(progress, "pool gradients", 1000) as bar:
        for _ in range(4):
            bar.advance(100)
    lines = [line for line in console.file.getvalue().splitlines() if line.startswith("pool gradients:")]
    assert len(lines) == 2  # a line at most every LOG_EVERY (60 s): at 60 s and at 120 s of the fake clock
    assert lines[0].startswith("pool gradients: 200/1,000 rows")
    from types import SimpleNamespace

    known = SimpleNamespace(description="pool gradients", completed=400, total=1000, speed=2.5, time_remaining=3725.4)
    assert progress_module.plain_line(known, "rows") == "pool gradients: 400/1,000 rows, 2.5 rows/s, eta 1:02:05"
    slow = SimpleNamespace(description="warm-up", completed=2, total=8, speed=0.02, time_remaining=300.0)
    assert progress_module.plain_line(slow, "steps") == "warm-up: 2/8 steps, 1.2 steps/min, eta 0:05:00"
    unknown = SimpleNamespace(description="x", completed=0, total=7, speed=None, time_remaining=None)
    assert progress_module.plain_line(unknown, "steps") == "x: 0/7 steps"


def test_a_terminal_gets_the_bar_and_no_plain_lines(monkeypatch) -> None:
    import tasksift.util.progress as progress_module

    clock = iter(range(0, 10_000, 120))
    monkeypatch.setattr(progress_module.time, "monotonic", lambda: float(next(clock)))
    console = Console(file=io.StringIO(), width=120, force_terminal=True)
    progress = make_progress(console)
    with ProgressTask(progress, "embed", 10) as bar:
        bar.advance(5)
    assert "embed: 5/10" not in console.file.getvalue()


def test_the_rate_of_bursty_work_is_its_average_over_several_bursts() -> None:
    """Twelve steps at once every 50 s (SPICE's windows): the rate is about 12 / 50 steps a second, not one
    burst's, and it is known between two bursts."""
    progress = make_progress(quiet_console(), unit="steps")
    now = [0.0]
    progress.get_time = lambda: now[0]
    task_id = progress.add_task("spice greedy", total=1497, note="")
    progress.start_task(task_id)
    for burst in range(10):
        now[0] = 50.0 * burst
        for _ in range(12):
            now[0] += 0.05
            progress.update(task_id, advance=1)
    now[0] += 30.0  # half way to the next burst
    (task,) = progress.tasks
    assert task.speed is not None and abs(task.speed - 12 / 50) < 0.05
    assert task.time_remaining is not None and abs(task.time_remaining - (1497 - 120) / (12 / 50)) < 1200
