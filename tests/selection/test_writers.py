"""The selection's output files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from tasksift.records import load_records
from tasksift.selection import Selection, write_parquet_atomic
from tasksift.selection import writers as writers_module
from tasksift.util.io import TMP_SUFFIX

POOL = [
    {"text": "zero", "n": 0, "tags": ["a"]},
    {"text": "one", "n": 1, "tags": []},
    {"text": "двa", "n": 2, "tags": ["b", "c"]},
]


def selection() -> Selection:
    return Selection(indices=np.array([2, 0]), weights=np.array([1.0, 2.0]), scores=np.array([0.5, 0.1]),
                     reasons=[{"a": 1}, {"a": 2}], ids=["x", "y"],
                     manifest={"method": "test", "budget": np.int64(2), "mass": np.array([0.5, 0.5]),
                               "score": np.float32(0.25)})


def leftovers(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if p.name.endswith(TMP_SUFFIX)]


def test_parquet_atomic_write(tmp_path: Path) -> None:
    write_parquet_atomic(tmp_path / "t.parquet", pa.table({"a": [1, 2]}))
    assert pq.read_table(tmp_path / "t.parquet").column("a").to_pylist() == [1, 2]
    assert leftovers(tmp_path) == []


def check_common_outputs(out: Path, written: dict[str, Path]) -> None:
    table = pq.read_table(out / "selection.parquet")
    assert table.column("id").to_pylist() == ["x", "y"]
    assert table.column("row").to_pylist() == [2, 0]
    assert table.column("rank").to_pylist() == [1, 2]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest == {"method": "test", "budget": 2, "mass": [0.5, 0.5], "score": 0.25}
    assert written["manifest"] == out / "manifest.json"
    assert leftovers(out) == []


def test_outputs_for_a_jsonl_pool(tmp_path: Path) -> None:
    pool = tmp_path / "pool.jsonl"
    pool.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in POOL), encoding="utf-8")
    out = tmp_path / "run" / "nested"
    sel = selection()
    sel.tables["probabilities"] = pa.table({"row": [0, 1, 2], "p": [0.2, 0.3, 0.5]})
    written = sel.save(out, records=load_records(pool))
    assert sorted(written) == ["manifest", "probabilities", "selected", "selection"]
    check_common_outputs(out, written)
    lines = (out / "selected.jsonl").read_text(encoding="utf-8").splitlines()
    assert [json.loads(line) for line in lines] == [
        {**POOL[2], "_id": "x", "_rank": 1, "_weight": 1.0},
        {**POOL[0], "_id": "y", "_rank": 2, "_weight": 2.0},
    ]
    assert "двa" in lines[0]  # ensure_ascii=False
    assert pq.read_table(out / "probabilities.parquet").num_rows == 3
    assert not (out / "selected.parquet").exists()


def test_outputs_for_a_parquet_pool(tmp_path: Path) -> None:
    pool = tmp_path / "pool.parquet"
    pq.write_table(pa.Table.from_pylist(POOL), pool)
    written = selection().save(tmp_path / "run", records=load_records(pool))
    check_common_outputs(tmp_path / "run", written)
    assert written["selected"] == tmp_path / "run" / "selected.parquet"
    rows = pq.read_table(written["selected"]).to_pylist()
    assert rows == [{**POOL[2], "_id": "x", "_rank": 1, "_weight": 1.0},
                    {**POOL[0], "_id": "y", "_rank": 2, "_weight": 2.0}]
    assert not (tmp_path / "run" / "selected.jsonl").exists()


def test_outputs_for_a_csv_pool_are_jsonl_and_chunked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(writers_module, "WRITE_CHUNK", 1)
    pool = tmp_path / "pool.csv"
    pacsv.write_csv(pa.table({"text": ["a", "b", "c"], "n": [0, 1, 2]}), pool)
    written = selection().save(tmp_path / "run", records=load_records(pool))
    got = [json.loads(line) for line in written["selected"].read_text().splitlines()]
    assert got == [{"text": "c", "n": 2, "_id": "x", "_rank": 1, "_weight": 1.0},
                   {"text": "a", "n": 0, "_id": "y", "_rank": 2, "_weight": 2.0}]


def test_outputs_without_records_and_bad_table_names(tmp_path: Path) -> None:
    written = selection().save(tmp_path / "run")
    assert sorted(written) == ["manifest", "selection"]
    sel = selection()
    sel.tables["manifest"] = pa.table({"a": [1]})
    with pytest.raises(ValueError, match="side table name"):
        sel.save(tmp_path / "other")
    assert not (tmp_path / "other").exists()

