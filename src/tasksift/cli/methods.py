"""``tasksift methods``: every selector with what it reads and its parameters, then the training-time samplers."""

from __future__ import annotations

import inspect
from typing import Any

from rich.table import Table

from tasksift.cli.common import console
from tasksift.selectors import available
from tasksift.train.samplers import TRAINING_TIME, InfoBatchSampler, OperaDynamicSampler
from tasksift.util.params import describe

#: the samplers' classes by the name ``compare --methods`` takes
_SAMPLERS: dict[str, Any] = {"opera-dp": OperaDynamicSampler, "infobatch": InfoBatchSampler}


def _show(table: Table, rows: list[list[str]]) -> None:
    """On a terminal, the table; elsewhere (a pipe, a file) a Markdown table, whole and unpadded."""
    if console.is_terminal:
        for row in rows:
            table.add_row(*row)
        console.print(table)
        return
    heads = [str(c.header) for c in table.columns]
    lines = [f"### {table.title}", "", "| " + " | ".join(heads) + " |", "|" + "---|" * len(heads)]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    console.file.write("\n".join(lines) + "\n\n")


def methods_command() -> None:
    """List the selectors with their parameters and defaults, and the samplers that prune while training."""
    table = Table(title="selectors (tasksift select --method NAME)")
    for col in ("method", "reads", "what it does", "parameters (default: allowed)"):
        table.add_column(col, overflow="fold")
    rows: list[list[str]] = []
    for name, cls in available().items():
        allowed = cls.declarations()
        params = "; ".join(f"{k}={v!r}: {describe(allowed[k])}" for k, v in cls.param_defaults().items())
        reads = f"{cls.needs} ({cls.features})" if cls.needs == "vectors" else cls.needs
        rows.append([name, reads, cls.summary, params])
    _show(table, rows)
    samplers = Table(title="training-time samplers (tasksift retriever train --pruning NAME)")
    for col in ("method", "--pruning", "what it does", "parameters (default)"):
        samplers.add_column(col, overflow="fold")
    sampler_rows: list[list[str]] = []
    for name, pruning in TRAINING_TIME.items():
        cls = _SAMPLERS[name]
        params = ", ".join(f"{p.name}={p.default!r}" for p in inspect.signature(cls.__init__).parameters.values()
                           if p.kind is p.KEYWORD_ONLY)
        sampler_rows.append([name, pruning, cls.summary, params])
    _show(samplers, sampler_rows)
