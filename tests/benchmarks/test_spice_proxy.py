"""benchmarks/spice_proxy.py end to end on tiny pools: the rows each way computes, counted."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from tasksift.selectors.spice.greedy import window_quotas
from tests.benchmarks.conftest import BENCH


def _tiny_tasks(root: Path, n: int) -> Path:
    general = root / "instruction" / "general"
    general.mkdir(parents=True)
    (general / "task.json").write_text(json.dumps({"text_template": "{instruction}\n{input}\n{output}"}))
    pairs = [{"instruction": "Name the animal.", "input": f"It says {w} {i}.", "output": w}
             for i, w in enumerate(["moo", "woof", "meow", "baa"] * (n // 4))]
    (root / "instruction" / "pool.jsonl").write_text("".join(json.dumps(r) + "\n" for r in pairs))
    bbc = root / "classification" / "bbc"
    bbc.mkdir(parents=True)
    news = [{"text": f"Report {i}: shares of firm {i % 7} rose as the market {'fell' if i % 2 else 'rallied'}."}
            for i in range(n)]
    (bbc / "pool.jsonl").write_text("".join(json.dumps(r) + "\n" for r in news))
    return root


@pytest.mark.usefixtures("one_thread")
def test_windows_only_computes_each_row_once_and_picks_the_same(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("spice_proxy", BENCH / "spice_proxy.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    tasks = _tiny_tasks(tmp_path / "tasks", 40)
    out = tmp_path / "r.json"
    results = bench.main(["--tasks", str(tasks), "--n", "40", "--window", "8", "--budget", "12", "--rounds", "1",
                          "--out", str(out)])
    # quotas 3, 3, 2, 2, 2: the proxy steps at the 10th pick, in window 3, so only window 4 is re-read
    assert window_quotas([8] * 5, 12) == [3, 3, 2, 2, 2]
    for name in ("instruction pairs", "bbc news"):
        res = results["inputs"][name]
        assert res["windows only"]["rows"] == 40 and res["first pass + windows"]["rows"] == 48
        assert res["same_picks"] is True and res["records"] == 40
    assert json.loads(out.read_text())["inputs"].keys() == results["inputs"].keys()
    with pytest.raises(SystemExit, match="no tasks in"):
        bench.main(["--tasks", str(tmp_path / "none")])
