"""``tasksift methods``: every selector and both training-time samplers, whole, in a pipe."""

from __future__ import annotations

from typer.testing import CliRunner

from tasksift.cli.app import app
from tasksift.selectors import available


def test_every_method_and_sampler_is_listed_whole() -> None:
    result = CliRunner().invoke(app, ["methods"])
    assert result.exit_code == 0, result.output
    rows = {line.split(" | ")[0].lstrip("| "): line for line in result.output.splitlines() if line.startswith("| ")}
    assert set(available()) | {"opera-dp", "infobatch"} <= set(rows)
    # nothing is cut: the last parameter of the longest row is there with what it accepts
    assert rows["harp-exhaustive"].endswith("max_leaf_size=None: a whole number >= 1, or none |")
    assert "| opera-dp | dynamic |" in result.output and "| infobatch | infobatch |" in result.output
    assert "alpha=0.5: a number in [0, 1]" in rows["tsds"]
