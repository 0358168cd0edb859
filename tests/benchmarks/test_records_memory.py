"""``benchmarks/records_memory.py`` at a tiny size: both runs finish, plan the same shards and read the same ids,
and the table has one row per size and mode."""

from __future__ import annotations

import importlib.util
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "records_memory.py"
_spec = importlib.util.spec_from_file_location("records_memory", SCRIPT)
assert _spec is not None and _spec.loader is not None
records_memory = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(records_memory)


def test_a_tiny_run_plans_the_same_shards_from_the_list_and_the_column(tmp_path: Path, capsys) -> None:
    assert records_memory.main(["--sizes", "3000", "9000", "--dir", str(tmp_path)]) == 0
    table = capsys.readouterr().out
    rows = [line for line in table.splitlines() if line.startswith("| 3,000") or line.startswith("| 9,000")]
    assert len(rows) == 4 and sum("column" in r for r in rows) == 2
    smaller = (tmp_path / "pool-3000.jsonl").read_text().splitlines()
    assert (tmp_path / "pool-9000.jsonl").read_text().splitlines()[:3000] == smaller  # a prefix, same seed
