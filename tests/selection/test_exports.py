"""Exports for trainers: every format written by ``tasksift.select`` (and the CLI) and loaded back the way its
trainer loads it; ``--repeat-weights``; the record shapes the chat formats read; the errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

import tasksift
from tasksift.cli.app import app
from tasksift.records import load_records
from tasksift.selection import Selection
from tasksift.selection.exports import to_messages, to_pairs, write_exports
from tasksift.util.errors import InputError
from tests.conftest import write_jsonl

FRUITS = {"apple": "red", "banana": "yellow", "lime": "green", "plum": "blue", "kiwi": "green", "cherry": "red"}


def pool_records() -> list[dict[str, Any]]:
    """Alpaca records (two with a system prompt and a history), one chat in messages form, one in ShareGPT form;
    every record has a ``text`` for the selectors to read."""
    rows: list[dict[str, Any]] = [{"text": f"{f} {c}", "instruction": "What colour is the fruit?", "input": f,
                                   "output": c, "n": i} for i, (f, c) in enumerate(FRUITS.items())]
    rows[1] |= {"system": "Answer in one word.", "history": [["Hello", "Hi there"]]}
    rows[2] |= {"system": "Answer in one word.", "history": [["Is a lime sour?", "yes"], ["Round?", "yes"]]}
    rows.append({"text": "greeting", "messages": [{"role": "system", "content": "be brief"},
                                                  {"role": "user", "content": "hi"},
                                                  {"role": "assistant", "content": "hello"}]})
    rows.append({"text": "sky", "conversations": [{"from": "human", "value": "Sky colour?"},
                                                  {"from": "gpt", "value": "blue"}]})
    return rows


def load_json(path: Path, cache: Path) -> Any:
    from datasets import load_dataset

    return load_dataset("json", data_files=str(path), split="train", cache_dir=str(cache))


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Every format of one selection of the whole pool (random order)."""
    root = tmp_path_factory.mktemp("exports")
    records = pool_records()
    pool = write_jsonl(root / "pool.jsonl", records)
    target = write_jsonl(root / "target.jsonl", records[:2])
    sel = tasksift.select(pool, target, method="random", budget=len(records), seed=3, text_field="text",
                          out=root / "run", export=["jsonl", "parquet", "hf", "messages", "alpaca", "sharegpt"])
    return {"sel": sel, "records": records, "out": root / "run", "cache": root / "hf-cache"}


def chosen(run: dict[str, Any]) -> list[dict[str, Any]]:
    return [run["records"][i] for i in run["sel"].indices]


def test_manifest_lists_the_exports(run: dict[str, Any]) -> None:
    manifest = json.loads((run["out"] / "manifest.json").read_text())
    files = manifest["exports"]["files"]
    assert files == {"jsonl": ["export/records.jsonl"], "parquet": ["export/records.parquet"], "hf": ["export/hf"],
                     "messages": ["export/messages.jsonl"],
                     "alpaca": ["export/alpaca.jsonl", "export/dataset_info.json"],
                     "sharegpt": ["export/sharegpt.jsonl", "export/dataset_info.json"]}
    assert all((run["out"] / f).exists() for paths in files.values() for f in paths)
    assert manifest["exports"]["rows"] == len(run["records"]) and manifest["exports"]["repeat_weights"] is False
    assert manifest["call"]["export"] == list(files)
    assert not [p.name for p in run["out"].parent.iterdir() if p.name.startswith(".run")]  # swapped in whole


def test_jsonl_parquet_and_hf_hold_the_chosen_records(run: dict[str, Any]) -> None:
    from datasets import load_from_disk

    sel, out = run["sel"], run["out"] / "export"
    extras = {"_id": sel.ids, "_rank": sel.ranks.tolist(), "_weight": sel.weights.tolist()}
    rows = load_json(out / "records.jsonl", run["cache"]).to_list()
    assert [r["n"] for r in rows] == [r.get("n") for r in chosen(run)]
    assert [r["messages"] for r in rows] == [r.get("messages") for r in chosen(run)]
    for name, values in extras.items():
        assert [r[name] for r in rows] == values
    table = pq.read_table(out / "records.parquet")
    assert table.column_names[-3:] == ["_id", "_rank", "_weight"]
    assert table.select(["_id", "_rank", "_weight"]).to_pydict() == extras
    saved = load_from_disk(str(out / "hf"))
    assert saved.to_list() == sel.to_hf().to_list() == table.to_pylist()
    assert saved.to_dict()["history"] == [r.get("history") for r in chosen(run)]


def test_messages_are_what_trl_sft_reads(run: dict[str, Any]) -> None:
    """TRL's SFT trainer reads a ``messages`` column of ``{role, content}`` lists (its conversational format);
    ``tests/examples`` trains on it."""
    rows = load_json(run["out"] / "export" / "messages.jsonl", run["cache"]).to_list()
    assert len(rows) == len(run["records"])
    for row, record in zip(rows, chosen(run), strict=True):
        assert row["messages"] == to_messages(record)
        assert all(set(m) == {"role", "content"} and isinstance(m["content"], str) for m in row["messages"])
        assert row["messages"][-1]["role"] == "assistant"
    by_n = {rec["n"]: r["messages"] for r, rec in zip(rows, chosen(run), strict=True) if "n" in rec}
    assert by_n[1] == [{"role": "system", "content": "Answer in one word."}, {"role": "user", "content": "Hello"},
                       {"role": "assistant", "content": "Hi there"},
                       {"role": "user", "content": "What colour is the fruit?\nbanana"},
                       {"role": "assistant", "content": "yellow"}]
    data_utils = pytest.importorskip("trl.data_utils")
    assert all(data_utils.is_conversational({"messages": r["messages"]}) for r in rows)


def llamafactory_read(export_dir: Path, name: str, cache: Path) -> list[tuple[str, list[tuple[str, str]]]]:
    """A dataset as LLaMA-Factory reads it: its ``dataset_info.json`` entry (file name, formatting, columns and
    sharegpt tags, with LLaMA-Factory's defaults), the file through ``load_dataset("json")``, each row turned into
    ``(system, [(role, content), ...])`` by its alpaca or sharegpt rules (history pairs first, prompt and query
    joined by a newline; sharegpt turns alternating user and assistant tags, an even count)."""
    entry = json.loads((export_dir / "dataset_info.json").read_text())[name]
    assert set(entry) <= {"file_name", "formatting", "columns", "tags"}
    columns = entry.get("columns", {})
    tags = {"role_tag": "from", "content_tag": "value", "user_tag": "human", "assistant_tag": "gpt",
            **entry.get("tags", {})}
    out = []
    for row in load_json(export_dir / entry["file_name"], cache):
        system = row[columns["system"]] if "system" in columns else ""
        if entry.get("formatting", "alpaca") == "alpaca":
            turns = [t for old in (row[columns["history"]] or []) for t in (("user", old[0]), ("assistant", old[1]))]
            query = [row[columns.get(k, d)] for k, d in (("prompt", "instruction"), ("query", "input"))]
            turns += [("user", "\n".join(q for q in query if q)), ("assistant", row[columns.get("response", "output")])]
        else:
            messages = row[columns.get("messages", "conversations")]
            assert len(messages) % 2 == 0
            expected = [tags["user_tag"], tags["assistant_tag"]] * (len(messages) // 2)
            assert [m[tags["role_tag"]] for m in messages] == expected
            turns = [("user" if i % 2 == 0 else "assistant", m[tags["content_tag"]]) for i, m in enumerate(messages)]
        out.append((system, turns))
    return out


@pytest.mark.parametrize("name", ["alpaca", "sharegpt"])
def test_llamafactory_entries_parse_to_the_conversations(run: dict[str, Any], name: str) -> None:
    read = llamafactory_read(run["out"] / "export", f"tasksift_{name}", run["cache"])
    expected = []
    for record in chosen(run):
        system, pairs = to_pairs(to_messages(record))
        expected.append((system, [t for p, r in pairs for t in (("user", p), ("assistant", r))]))
    assert read == expected
    if name == "alpaca":  # an Alpaca record keeps its instruction and input apart
        rows = [json.loads(line) for line in (run["out"] / "export" / "alpaca.jsonl").read_text().splitlines()]
        assert [(r["instruction"], r["input"]) for r in rows if r["input"]] == [
            ("What colour is the fruit?", rec["input"]) for rec in chosen(run) if "input" in rec]


def test_repeat_weights_writes_each_example_weight_times(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 8)).astype(np.float32)
    pool = write_jsonl(tmp_path / "pool.jsonl", [{"question": f"q{i}", "answer": f"a{i}"} for i in range(40)])
    target = write_jsonl(tmp_path / "target.jsonl", [{"question": "t", "answer": "u"}] * 3)
    sel = tasksift.select(pool, target, pool_vectors=x, target_vectors=x[:3] + 0.01, method="tsds", budget=20,
                          text_field="question", out=tmp_path / "run", export=["jsonl", "hf", "messages", "sharegpt"],
                          repeat_weights=True)
    assert sel.weights.max() > 1
    total = int(sel.weights.sum())
    expected_ids = [i for i, w in zip(sel.ids, sel.weights, strict=True) for _ in range(int(w))]
    out = tmp_path / "run" / "export"
    for file in ("records.jsonl", "messages.jsonl", "sharegpt.jsonl"):
        rows = load_json(out / file, tmp_path / "cache").to_list()
        assert len(rows) == total == 20
        assert [r["_id"] for r in rows] == expected_ids and {r["_weight"] for r in rows} == {1.0}
    from datasets import load_from_disk

    assert load_from_disk(str(out / "hf")).num_rows == total == len(sel.to_hf(repeat_weights=True))
    assert json.loads((tmp_path / "run" / "manifest.json").read_text())["exports"]["rows"] == total


def test_parquet_pool_keeps_its_types_in_hf_and_jsonl(tmp_path: Path) -> None:
    table = pa.table({"prompt": [f"p{i}" for i in range(6)], "completion": [f"c{i}" for i in range(6)],
                      "score": pa.array(np.arange(6) / 2, type=pa.float32())})
    pq.write_table(table, tmp_path / "pool.parquet")
    sel = tasksift.select(tmp_path / "pool.parquet", tmp_path / "pool.parquet", method="random", budget=3,
                          text_field="prompt", out=tmp_path / "run", export="hf,jsonl,messages")
    hf = sel.to_hf()
    assert hf.features["score"].dtype == "float32" and hf["prompt"] == [f"p{i}" for i in sel.indices]
    line = json.loads((tmp_path / "run" / "export" / "messages.jsonl").read_text().splitlines()[0])
    i = sel.indices[0]
    assert line["messages"] == [{"role": "user", "content": f"p{i}"}, {"role": "assistant", "content": f"c{i}"}]


@pytest.mark.parametrize(("record", "expected"), [
    ({"prompt": "p", "completion": "c"}, [("user", "p"), ("assistant", "c")]),
    ({"question": "q", "answer": 42}, [("user", "q"), ("assistant", "42")]),
    ({"query": "q", "response": "r", "system": "s"}, [("system", "s"), ("user", "q"), ("assistant", "r")]),
    ({"instruction": "i", "input": "", "output": "o"}, [("user", "i"), ("assistant", "o")]),
    ({"conversations": [{"from": "system", "value": "s"}, {"from": "human", "value": "h"},
                        {"from": "gpt", "value": "g"}]}, [("system", "s"), ("user", "h"), ("assistant", "g")]),
])
def test_record_shapes_read_as_chats(record: dict[str, Any], expected: list[tuple[str, str]]) -> None:
    assert [(m["role"], m["content"]) for m in to_messages(record)] == expected


def test_records_that_are_not_chats_are_refused_before_selecting(tmp_path: Path) -> None:
    pool = write_jsonl(tmp_path / "pool.jsonl", [{"text": f"t{i}"} for i in range(5)])
    with pytest.raises(InputError, match=r"export messages: the pool's first record .*\(its fields: text\)"):
        tasksift.select(pool, pool, method="random", budget=2, out=tmp_path / "run", export="messages")
    assert not (tmp_path / "run").exists()
    with pytest.raises(ValueError, match="user and assistant in turn"):
        to_pairs([{"role": "user", "content": "a"}, {"role": "user", "content": "b"}])


def test_a_later_record_that_is_no_chat_fails_the_run_whole(tmp_path: Path) -> None:
    rows = [{"text": f"t{i}", "prompt": f"p{i}", "completion": f"c{i}"} for i in range(4)] + [{"text": "bare"}]
    pool = write_jsonl(tmp_path / "pool.jsonl", rows)
    with pytest.raises(InputError, match=r"export sharegpt: record \w+ \(rank \d\) cannot be a conversation"):
        tasksift.select(pool, pool, method="random", budget=5, out=tmp_path / "run", export=["jsonl", "sharegpt"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pool.jsonl"]


def test_write_exports_from_python_and_fractional_weights(tmp_path: Path) -> None:
    records = load_records(write_jsonl(tmp_path / "pool.jsonl", pool_records()))
    sel = Selection(indices=[4, 0, 2], weights=[3, 1, 2], scores=[0.0] * 3, reasons=[{}] * 3)
    info = write_exports(sel, tmp_path / "run", records, ["jsonl"], repeat_weights=True)
    lines = [json.loads(x) for x in (tmp_path / "run" / "export" / "records.jsonl").read_text().splitlines()]
    assert [r["n"] for r in lines] == [4, 4, 4, 0, 2, 2] and info["rows"] == 6
    sel.weights = np.array([1.5, 1.0, 1.0])
    with pytest.raises(InputError, match="whole-number weights"):
        write_exports(sel, tmp_path / "run2", records, ["jsonl"], repeat_weights=True)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"export": "csv", "out": "run"}, "unknown export format 'csv'"),
    ({"export": "jsonl"}, "exports are written into the run folder"),
    ({"repeat_weights": True, "out": "run"}, "--repeat-weights applies to the --export files"),
])
def test_bad_export_requests(tmp_path: Path, kwargs: dict[str, Any], message: str) -> None:
    pool = write_jsonl(tmp_path / "pool.jsonl", [{"text": f"t{i}"} for i in range(5)])
    if "out" in kwargs:
        kwargs["out"] = tmp_path / kwargs["out"]
    with pytest.raises(InputError, match=message):
        tasksift.select(pool, pool, method="random", budget=2, **kwargs)


def test_vectors_only_pool_has_nothing_to_export(tmp_path: Path) -> None:
    x = np.eye(4, dtype=np.float32)
    with pytest.raises(InputError, match="pool came as vectors only"):
        tasksift.select(pool_vectors=x, target_vectors=x[:1], method="knn", budget=2, out=tmp_path / "run",
                        export="jsonl")


def test_cli_export_flags_and_replay_from_the_manifest(tmp_path: Path) -> None:
    pool = write_jsonl(tmp_path / "pool.jsonl", pool_records())
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["select", "--pool", str(pool), "--target", str(pool), "--method", "random",
                                      "--budget", "4", "--text-field", "text", "--out", str(out), "--export", "hf",
                                      "--export", "alpaca", "--repeat-weights"])
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["exports"]["formats"] == ["hf", "alpaca"] and manifest["exports"]["repeat_weights"] is True
    again = tmp_path / "again"
    result = CliRunner().invoke(app, ["select", "--from-manifest", str(out / "manifest.json"), "--out", str(again)])
    assert result.exit_code == 0, result.output
    assert (again / "export" / "alpaca.jsonl").read_bytes() == (out / "export" / "alpaca.jsonl").read_bytes()
    assert json.loads((again / "export" / "dataset_info.json").read_text()) == {
        "tasksift_alpaca": json.loads((out / "export" / "dataset_info.json").read_text())["tasksift_alpaca"]}
