"""``tasksift methods``: every selector with what it reads and its parameters, then the training-time samplers."""

from __future__ import annotations

import inspect
from typing import Any

from rich.console import Console
from rich.table import Table

from tasksift.cli.common import console
from tasksift.selectors import available
from tasksift.train.samplers import TRAINING_TIME, InfoBatchSampler, OperaDynamicSampler
from tasksift.util.params import describe

#: the samplers' classes by the name ``compare --methods`` takes
_SAMPLERS: dict[str, Any] = {"opera-dp": OperaDynamicSampler, "infobatch": InfoBatchSampler}


def _wide(base: Console) -> Console:
    """``base`` on a terminal; elsewhere (a pipe, a file) a console wide enough that no table is cut."""
    return base if base.is_terminal else Console(width=10_000, file=base.file)


def methods_command() -> None:
    """List the selectors with their parameters and defaults, and the samplers that prune while training."""
    out = _wide(console)
    table = Table(title="selectors (tasksift select --method NAME)")
    for col in ("method", "reads", "what it does", "parameters (default: allowed)"):
        table.add_column(col, overflow="fold")
    for name, cls in available().items():
        allowed = cls.declarations()
        params = "; ".join(f"{k}={v!r}: {describe(allowed[k])}" for k, v in cls.param_defaults().items())
        reads = f"{cls.needs} ({cls.features})" if cls.needs == "vectors" else cls.needs
        table.add_row(name, reads, cls.summary, params)
    out.print(table)
    samplers = Table(title="training-time samplers (tasksift retriever train --pruning NAME)")
    for col in ("method", "--pruning", "what it does", "parameters (default)"):
        samplers.add_column(col, overflow="fold")
    for name, pruning in TRAINING_TIME.items():
        cls = _SAMPLERS[name]
        params = ", ".join(f"{p.name}={p.default!r}" for p in inspect.signature(cls.__init__).parameters.values()
                           if p.kind is p.KEYWORD_ONLY)
        summary = (inspect.getdoc(cls) or "").split("\n")[0]
        samplers.add_row(name, pruning, summary, params)
    out.print(samplers)
