"""The ``tasksift`` command line (typer), assembled from one module per command group.

Bad input ends with exit code 2 and one line on stderr that names the file (and line) and the fix; nothing
is left in the output directory.
"""

from __future__ import annotations

import os
from typing import Annotated

import typer

from tasksift.cli.common import DEBUG
from tasksift.cli.data import data_app
from tasksift.cli.demo import demo_command
from tasksift.cli.embed import embed_command
from tasksift.cli.eval import compare_command, eval_command
from tasksift.cli.gradients import gradients_command
from tasksift.cli.methods import methods_command
from tasksift.cli.report import report_command
from tasksift.cli.retriever import retriever_app
from tasksift.cli.select import select_command

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Select the training examples that serve your target task.")


@app.callback()
def _options(debug: Annotated[bool, typer.Option("--debug", help="On an internal error, print the traceback "
                                                                "(it is always written to a log file).")]
             = False) -> None:
    DEBUG["on"] = debug


app.command("select")(select_command)
app.command("embed")(embed_command)
app.command("methods")(methods_command)
app.command("demo")(demo_command)
app.command("eval")(eval_command)
app.command("compare")(compare_command)
app.command("gradients")(gradients_command)
app.command("report")(report_command)
app.add_typer(data_app, name="data")
app.add_typer(retriever_app, name="retriever")


def main() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    app()


if __name__ == "__main__":
    main()
