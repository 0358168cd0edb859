"""``tasksift data``: build the benchmark tasks from packaged real text (see docs/task-format.md).

Mounted into the main command line as ``app.add_typer(data_app, name="data")``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from tasksift.cli.common import user_errors
from tasksift.eval.taskgen.builder import TRACKS, build_tasks
from tasksift.util.errors import InputError

data_app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                       help="Build benchmark tasks (pool, target, test) from packaged real text.")

TRACK_CHOICES = ("instruction", "retrieval", "all")


def _fmt(n: Any) -> str:
    return f"{n:,}" if isinstance(n, int) else str(n)


def summary_table(summary: dict[str, Any]) -> Table:
    """One row per task: its pool, target and test sizes and what its options or corpus hold."""
    table = Table(title=f"tasks built (seed {summary['seed']})")
    for name, justify in (("track", "left"), ("task", "left"), ("source", "left"), ("pool", "right"),
                          ("target", "right"), ("test", "right"), ("notes", "left")):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    inst = summary.get("instruction")
    if inst:
        for name, c in inst["tasks"].items():
            table.add_row("instruction", name, c["source"], f"{_fmt(c['pool_from_source'])} of {_fmt(c['pool'])}",
                          _fmt(c["target"]), _fmt(c["test"]), f"{c['options_per_test']} options a test item")
    for name, c in (summary.get("classification") or {}).get("tasks", {}).items():
        table.add_row("classification", name, c["source"], _fmt(c["pool"]), _fmt(c["target"]), _fmt(c["test"]),
                      f"same target / test as {c['same_split_as']}")
    for name, c in (summary.get("retrieval") or {}).get("tasks", {}).items():
        pos = c["positives_per_test_query"]
        table.add_row("retrieval", name, c["source"],
                      f"{_fmt(c['pool_pairs'])} pairs / {_fmt(c['pool_queries'])} q",
                      f"{_fmt(c['target_queries'])} q", f"{_fmt(c['test_queries'])} q",
                      f"corpus {_fmt(c['corpus'])}; positives {pos['min']}-{pos['max']} (mean {pos['mean']})")
    return table


@data_app.command()
def build(
    out: Annotated[Path, typer.Option("--out", help="Folder for the tasks (created if missing).")],
    seed: Annotated[int, typer.Option("--seed", help="Seed of every split and draw.")] = 0,
    track: Annotated[str, typer.Option("--track", help="instruction | retrieval | all")] = "all",
    cache_dir: Annotated[Path | None, typer.Option("--cache-dir", help="Download cache (default: "
                                                                       "$TASKSIFT_DATA_CACHE or "
                                                                       "~/.cache/tasksift/downloads).")] = None,
) -> None:
    """Download the data packages (once) and write the benchmark tasks to --out; print their sizes."""
    with user_errors(out):
        if track not in TRACK_CHOICES:
            raise InputError(f"unknown track {track!r}", fix=f"use --track {' | '.join(TRACK_CHOICES)}")
        tracks = TRACKS if track == "all" else (track,)
        summary = build_tasks(out, seed=seed, tracks=tracks, cache=cache_dir,
                              log=lambda message: typer.echo(message, err=True))
    console = Console()
    console.print(summary_table(summary))
    inst = summary.get("instruction")
    if inst:
        console.print(f"instruction pool: {_fmt(inst['pool'])} records from {len(inst['sources'])} sources "
                      f"({', '.join(f'{k} {_fmt(v)}' for k, v in inst['sources'].items())}); "
                      f"pool-dups.jsonl: {_fmt(inst['pool_dups'])} records ({_fmt(inst['injected'])} near-copies)")
        general = inst.get("general")
        if general:
            console.print(f"general task ({general['path']}): {_fmt(general['target'])} target examples and "
                          f"{_fmt(general['test'])} test items from {len(general['tasks'])} tasks, scored per task "
                          f"and by their macro average; duplicates track: instruction-dups/<task> (each task on "
                          f"pool-dups.jsonl)")
    console.print(f"written to {out} (counts in build.json)")
