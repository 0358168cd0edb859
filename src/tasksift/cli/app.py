"""The ``tasksift`` command line (typer), assembled from one module per command group.

Bad input ends with exit code 2 and one line on stderr that names the file (and line) and the fix; nothing
is left in the output directory.
"""

from __future__ import annotations

import os
import sys
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

try:  # typer >= 0.20 carries its own copy of click
    from typer._click import exceptions as click_errors
except ImportError:  # pragma: no cover - older typer on the real click
    from click import exceptions as click_errors

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


class _OneLineErrors(TyperGroup):
    """The command line's usage errors (a bad option value, a missing option) as one line on stderr, exit 2,
    like every other error of the command line."""

    def main(self, args: Any = None, prog_name: str | None = None, complete_var: str | None = None,
             standalone_mode: bool = True, **extra: Any) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click_errors.NoArgsIsHelpError as err:
            typer.echo(err.ctx.get_help())
            sys.exit(0)
        except click_errors.ClickException as err:
            where = f" (see `{err.ctx.command_path} --help`)" if getattr(err, "ctx", None) is not None else ""
            message = " ".join(err.format_message().split())
            sys.stderr.write(f"tasksift: error: {message}{where}\n")
            sys.exit(err.exit_code)
        except click_errors.Abort:
            sys.stderr.write("tasksift: aborted\n")
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)


app = typer.Typer(cls=_OneLineErrors, add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
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
