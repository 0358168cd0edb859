"""``tasksift report``: a self-contained HTML page about a selection run."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tasksift.cli.common import CacheOpt, console, user_errors
from tasksift.report import write_report


def report_command(
    run_dir: Annotated[Path, typer.Argument(help="A directory written by `tasksift select --out`.")],
    out: Annotated[Path | None, typer.Option("--out", help="HTML file (default RUN_DIR/report.html).")] = None,
    by: Annotated[str | None, typer.Option("--by", help="Pool field for the composition chart (default: the one "
                                                        "of label, domain, source, task that best explains the "
                                                        "pool).")] = None,
    cache_dir: CacheOpt = None,
    eval_dir: Annotated[Path | None, typer.Option("--eval", help="Folder holding the eval.json to show (default: "
                                                                 "the run's own).")] = None,
    compare_dir: Annotated[Path | None, typer.Option("--compare", help="Folder written by `tasksift compare`: its "
                                                                       "table and chart against random and full.")
                           ] = None,
) -> None:
    """Write a self-contained HTML report: the selected examples with their nearest target example and reason,
    a search box, the map (text on hover), score and weight histograms, composition, evaluation."""
    with user_errors():
        path = write_report(run_dir, out, by=by, cache_dir=cache_dir, eval_dir=eval_dir, compare_dir=compare_dir)
    console.print(f"report: {path}", soft_wrap=True)
