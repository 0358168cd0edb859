"""The report reads a run defensively: inputs that changed since the run are left out (and said so), a damaged
run or a page path that is a directory is one InputError."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import tasksift
from tasksift.report import write_report
from tasksift.util.errors import InputError
from tests.conftest import write_jsonl

ROWS = [{"text": f"t{i}", "source": "a" if i < 20 else "b"} for i in range(60)]


@pytest.fixture()
def run_dir(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    np.save(tmp_path / "x.npy", rng.normal(size=(60, 6)).astype(np.float32))
    np.save(tmp_path / "q.npy", rng.normal(size=(3, 6)).astype(np.float32))
    pool = write_jsonl(tmp_path / "pool.jsonl", ROWS)
    target = write_jsonl(tmp_path / "target.jsonl", [{"text": f"q{i}"} for i in range(3)])
    out = tmp_path / "run"
    tasksift.select(pool, target, pool_vectors=tmp_path / "x.npy", target_vectors=tmp_path / "q.npy",
                    method="knn", budget=9, metric="l2", out=out)
    return out


def images(page: str) -> list[str]:
    return re.findall(r'<img alt="(\w+)"', page)


def test_changed_inputs_are_left_out_and_named(run_dir: Path) -> None:
    write_jsonl(run_dir.parent / "pool.jsonl", ROWS[:10])  # fewer records than the selection points at
    page = write_report(run_dir).read_text(encoding="utf-8")
    assert images(page) == ["scores", "weights"]
    assert "inputs changed since it was made" in page and "pool.jsonl (pool records)" in page
    # the texts of the chosen examples come from the run's own selected.jsonl
    first = pq.read_table(run_dir / "selection.parquet").column("row")[0].as_py()
    assert f'<div class="text">t{first}</div>' in page


def test_unchanged_inputs_give_every_figure(run_dir: Path) -> None:
    assert images(write_report(run_dir).read_text(encoding="utf-8")) == ["scores", "weights", "composition"]


def test_a_page_path_that_is_a_directory_is_refused_before_any_work(run_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "pages").mkdir()
    with pytest.raises(InputError, match="directory"):
        write_report(run_dir, tmp_path / "pages")
    assert write_report(run_dir, tmp_path / "new" / "folder" / "r.html").is_file()  # missing folders are made


@pytest.mark.parametrize("damage", ["garbage", "negative row", "NaN weight"])
def test_a_damaged_selection_is_one_input_error(run_dir: Path, damage: str) -> None:
    path = run_dir / "selection.parquet"
    if damage == "garbage":
        path.write_bytes(b"\0" * 64)
    else:
        table = pq.read_table(path).to_pandas()
        if damage == "negative row":
            table.loc[0, "row"] = -1
        else:
            table.loc[0, "weight"] = np.nan
        pq.write_table(pa.Table.from_pandas(table, preserve_index=False), path)
    with pytest.raises(InputError, match="selection.parquet"):
        write_report(run_dir)
    assert not (run_dir / "report.html").exists()


def test_a_training_summary_that_is_not_json_is_one_input_error(tmp_path: Path) -> None:
    (tmp_path / "summary.json").write_text("{nope")
    with pytest.raises(InputError, match="summary.json"):
        write_report(tmp_path)
