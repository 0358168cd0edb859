"""`tasksift select` killed with SIGKILL while it writes its run (and after): ``--out`` is always absent, the
previous complete run or the new complete run, never a mix or a half-written file.

The child is `python -m tasksift select` in a process that announces the write stage on stdout and slows every
``os.replace`` (each file of the run is written under a temporary name and renamed; the run folder is swapped in
by renames), so kills at evenly spread delays land before, between and after each file and each swap.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from tasksift.cli.app import app
from tests.conftest import write_jsonl
from tests.kill import OFFLINE

#: seconds each os.replace of the child sleeps before and after renaming
SLOW = 0.03
#: delays after the child announces the write stage at which it is killed (the stage lasts about 0.4 s)
DELAYS = [round(0.02 * i, 3) for i in range(24)] + [0.6, 0.9]

CHILD = f"""
import os, sys, time
from contextlib import contextmanager

_replace = os.replace


def slow_replace(src, dst, *args, **kwargs):
    time.sleep({SLOW})
    _replace(src, dst, *args, **kwargs)
    time.sleep({SLOW})


os.replace = slow_replace
import tasksift.api as api

_replaced_dir = api.replaced_dir


@contextmanager
def announced(*args, **kwargs):
    print("WRITE-STAGE", flush=True)
    with _replaced_dir(*args, **kwargs) as folder:
        yield folder


api.replaced_dir = announced
from tasksift.cli.app import main

sys.argv = ["tasksift", *sys.argv[1:]]
main()
"""


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("kill-write")
    rng = np.random.default_rng(0)
    f = {"pool": write_jsonl(d / "pool.jsonl", [{"text": f"record {i}", "n": i} for i in range(300)]),
         "target": write_jsonl(d / "target.jsonl", [{"text": f"query {i}"} for i in range(5)]),
         "x": d / "x.npy", "q": d / "q.npy", "dir": d}
    np.save(f["x"], rng.normal(size=(300, 16)).astype(np.float32))
    np.save(f["q"], rng.normal(size=(5, 16)).astype(np.float32))
    return f


def select_args(f: dict[str, Path], out: Path, seed: int) -> list[str]:
    return ["select", "--pool", str(f["pool"]), "--target", str(f["target"]), "--pool-vectors", str(f["x"]),
            "--target-vectors", str(f["q"]), "--method", "tsds", "--budget", "40", "--seed", str(seed),
            "--out", str(out)]


def complete(run: Path) -> dict[str, object] | None:
    """The content of a complete run (manifest present, every file it implies present and parsing), else None."""
    try:
        manifest = json.loads((run / "manifest.json").read_text(encoding="utf-8"))
        selection = pq.read_table(run / "selection.parquet")
        probability = pq.read_table(run / "probability.parquet")
        selected = [json.loads(line) for line in (run / "selected.jsonl").read_text(encoding="utf-8").splitlines()]
    except (OSError, ValueError):
        return None
    if manifest["counts"]["selected"] != selection.num_rows or len(selected) != selection.num_rows:
        return None
    names = sorted(p.name for p in run.iterdir())
    if names != ["manifest.json", "probability.parquet", "selected.jsonl", "selection.parquet"]:
        return None
    return {"selection": selection.to_pydict(), "probability": probability.to_pydict(), "selected": selected,
            "seed": manifest["seed"]}


@pytest.fixture(scope="module")
def runs(inputs: dict[str, Path]) -> dict[str, dict[str, object]]:
    """The previous run (seed 0) and the new run (seed 1), each made without interruption."""
    out = {}
    for name, seed in (("previous", 0), ("new", 1)):
        folder = inputs["dir"] / f"ref-{name}"
        result = CliRunner().invoke(app, select_args(inputs, folder, seed))
        assert result.exit_code == 0, result.output
        out[name] = complete(folder)
        assert out[name] is not None
    assert out["previous"] != out["new"]
    return out


def kill_during_write(args: list[str], delay: float) -> int | None:
    """Run the slowed child, SIGKILL it ``delay`` seconds after it announces the write stage; its exit code
    (``None`` when killed)."""
    child = subprocess.Popen([sys.executable, "-c", CHILD, *args], env={**os.environ, **OFFLINE},
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for line in child.stdout:
            if line.strip() == "WRITE-STAGE":
                break
        else:
            child.wait(timeout=60)
            pytest.fail(f"the child never reached the write stage ({child.returncode}): {child.stderr.read()!r}")
        time.sleep(delay)
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        child.stdout.close()
        child.stderr.close()
    return None if child.returncode == -signal.SIGKILL else child.returncode


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_sigkill_during_and_after_the_write_stage(inputs: dict[str, Path], runs: dict[str, dict[str, object]],
                                                  tmp_path: Path) -> None:
    out = tmp_path / "run"
    seen: dict[str, list[float]] = {"absent": [], "previous": [], "new": []}
    for i, delay in enumerate(DELAYS):
        shutil.rmtree(out, ignore_errors=True)
        if i % 4 != 3:  # mostly over an earlier run; every fourth time into an empty place
            shutil.copytree(inputs["dir"] / "ref-previous", out)
        code = kill_during_write(select_args(inputs, out, seed=1), delay)
        assert code in (None, 0), f"the child failed at delay {delay}"
        if not out.exists():
            state = "absent"
        else:
            content = complete(out)
            state = next((name for name, ref in runs.items() if content == ref), None)
            assert state is not None, f"--out is neither run after a kill at {delay} s: {sorted(os.listdir(out))}"
        seen[state].append(delay)
    assert seen["new"], seen  # the kills reached past the swap...
    assert seen["previous"], seen  # ... and came before it

    # the next run sweeps what the killed ones left beside --out
    result = CliRunner().invoke(app, select_args(inputs, out, seed=1))
    assert result.exit_code == 0, result.output
    assert complete(out) == runs["new"]
    assert [p.name for p in tmp_path.iterdir()] == ["run"]
