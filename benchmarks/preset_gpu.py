"""What the GPU presets (``opera_gpu.py``, ``harp_gpu.py``) share: the device check that refuses without a GPU,
and the time budget that stops a run between two units of work rather than past its limit.

A preset runs on one GPU (``--device cuda`` or ``cuda:N``) at the sizes it was planned for, or on the CPU at a
cut-down size with ``--cpu-smoke`` (how it is tested on a machine without a GPU). Anything else ends the command
with exit code 2 and one line on stderr, before anything is written: the same rule as ``benchmarks/gpu.py``.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any

#: exit codes: everything done; stopped at the time budget (the same command resumes); refused
DONE, PARTIAL, REFUSED = 0, 1, 2


def device_or_refuse(prog: str, device: str, cpu_smoke: bool) -> Any:
    """The ``torch.device`` to run on, or ``None`` after printing the one-line refusal (exit code 2).

    ``--cpu-smoke`` always runs on the CPU; otherwise the device must be a GPU torch sees.
    """
    from tasksift.util.device import resolve_device
    from tasksift.util.errors import InputError

    try:
        where = resolve_device("cpu" if cpu_smoke else device)
        if where.type != "cuda" and not cpu_smoke:
            raise InputError(f"--device {device} is not a GPU")
    except InputError as err:
        print(f"{prog}: error: {err.what} (run it where torch sees a GPU, or pass --cpu-smoke for the cut-down "
              "CPU run)", file=sys.stderr)
        return None
    return where


class OutOfTime(Exception):
    """Raised between two units of work when the next one would not end inside the budget."""


class Budget:
    """Seconds for a whole run. :meth:`check` before a unit of work of some ``kind`` raises :class:`OutOfTime`
    when the longest unit of that kind seen so far would end past the budget; the first unit of a kind always
    runs (nothing is known of its length yet). :meth:`done` records how long the unit took."""

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.seconds = float(seconds)
        self.clock = clock
        self.start = clock()
        self.longest: dict[str, float] = {}
        self._began: dict[str, float] = {}

    def elapsed(self) -> float:
        return self.clock() - self.start

    def check(self, kind: str) -> None:
        expected = self.longest.get(kind)
        if expected is not None and self.elapsed() + expected > self.seconds:
            raise OutOfTime(f"the next {kind} (about {expected:.0f} s) would end past the {self.seconds:.0f} s "
                            f"budget ({self.elapsed():.0f} s spent)")
        self._began[kind] = self.clock()

    def done(self, kind: str) -> None:
        took = self.clock() - self._began.pop(kind, self.clock())
        self.longest[kind] = max(self.longest.get(kind, 0.0), took)
