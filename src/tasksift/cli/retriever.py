"""``tasksift retriever``: finetune the MiniLM bi-encoder with or without pruning (registered in cli.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tasksift.cli.common import DeviceOpt, console, user_errors
from tasksift.eval.pruning import markdown_summary, train_with_pruning
from tasksift.util.params import parse_assignments

retriever_app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                            help="Finetune a dense retriever (bi-encoder) on a retrieval task.")


@retriever_app.command("train")
def train_command(
    task: Annotated[Path, typer.Option("--task", help="A retrieval task directory (tasksift data build).")],
    pruning: Annotated[str, typer.Option("--pruning", help="none | static | dynamic | infobatch, or several "
                                                           "comma-separated.")] = "none",
    steps: Annotated[int, typer.Option("--steps", help="Optimizer steps of every run.")] = 200,
    seeds: Annotated[int, typer.Option("--seeds", help="Seeds 0..N-1 per pruning.")] = 3,
    out: Annotated[Path | None, typer.Option("--out", help="Output directory (default TASK/pruning).")] = None,
    eval_every: Annotated[int, typer.Option("--eval-every", help="Score the test queries every N steps "
                                                                 "(0: only at the end).")] = 0,
    model: Annotated[str | None, typer.Option("--model", help="Encoder directory (default: all-MiniLM-L6-v2).")]
    = None,
    param: Annotated[list[str] | None, typer.Option("--train", "--param", help="Training setting key=value, e.g. "
                                                                    "batch_size=16 or kept_pct=0.25.")] = None,
    train_queries: Annotated[int | None, typer.Option("--train-queries", help="Keep this many training queries "
                                                                              "(seeded).")] = None,
    test_queries: Annotated[int | None, typer.Option("--test-queries", help="Score this many test queries.")]
    = None,
    corpus: Annotated[int | None, typer.Option("--corpus", help="Search this many corpus documents (all relevant "
                                                                "ones kept).")] = None,
    device: DeviceOpt = "cpu",
) -> None:
    """Finetune with each pruning and seed, scoring NDCG@10 and Recall@10/20/100 along the way (resumable)."""
    with user_errors():
        summary = train_with_pruning(task, pruning, steps=steps, seeds=seeds,
                                     out=out if out is not None else task / "pruning", eval_every=eval_every,
                                     model=model, settings=parse_assignments(param, "--train"),
                                     train_queries=train_queries,
                                     test_queries=test_queries, corpus=corpus, progress=True, device=device,
                                     log=lambda message: console.print(message, soft_wrap=True))
    console.print(markdown_summary(summary), soft_wrap=True)
