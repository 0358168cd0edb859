"""``--pool`` / ``--target`` beyond one file: hub-layout folders with --split, globs of compressed jsonl, several
files, hf:// offline, and chat records read without a template."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard
from typer.testing import CliRunner

from tasksift.cli.app import app

runner = CliRunner()
TOPICS = ["my cat likes fish", "the stock market fell", "bake bread with flour", "a goal in the football match"]
ROWS = [{"id": f"p{i}", "text": f"{TOPICS[i % 4]} ({i})"} for i in range(16)]


def run(*args: object):
    return runner.invoke(app, [str(a) for a in args])


def jsonl(rows: list[dict]) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


def selected(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "selected.jsonl").read_text().splitlines()]


def test_hub_folder_pool_train_target_test(tmp_path: Path) -> None:
    data = tmp_path / "ds" / "data"
    data.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(ROWS[:8]), data / "train-00000-of-00002.parquet")
    pq.write_table(pa.Table.from_pylist(ROWS[8:]), data / "train-00001-of-00002.parquet")
    pq.write_table(pa.Table.from_pylist([{"id": "t0", "text": "a cat eating fish"}]),
                   data / "test-00000-of-00001.parquet")
    out = tmp_path / "run"
    result = run("select", "--pool", tmp_path / "ds", "--target", tmp_path / "ds", "--target-split", "test",
                 "--id-field", "id", "--method", "knn", "--budget", "4", "--out", out)
    assert result.exit_code == 0, result.output
    chosen = pq.read_table(out / "selected.parquet").to_pylist()
    assert [r["id"] for r in chosen] and all(int(r["id"][1:]) % 4 == 0 for r in chosen)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counts"]["pool"] == 16 and manifest["counts"]["target"] == 1
    assert manifest["call"]["target_split"] == "test" and "split" not in manifest["call"]
    bad = run("select", "--pool", tmp_path / "ds", "--target", tmp_path / "ds", "--split", "dev", "--method", "knn",
              "--out", tmp_path / "bad")
    assert bad.exit_code == 2 and "no split 'dev' (splits found: test, train)" in bad.output


def test_glob_and_repeated_pool_of_compressed_jsonl(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "a.jsonl.gz").write_bytes(gzip.compress(jsonl(ROWS[:8])))
    (tmp_path / "data" / "b.jsonl.zst").write_bytes(zstandard.ZstdCompressor().compress(jsonl(ROWS[8:])))
    (tmp_path / "target.jsonl").write_bytes(jsonl([{"text": "bread and flour"}]))
    data = tmp_path / "data"
    for n, pool in enumerate([["--pool", data / "*.jsonl.*"],
                              ["--pool", data / "a.jsonl.gz", "--pool", data / "b.jsonl.zst"]]):
        out = tmp_path / f"run{n}"
        result = run("select", *pool, "--target", tmp_path / "target.jsonl", "--method", "knn", "--budget", "4",
                     "--out", out)
        assert result.exit_code == 0, result.output
        chosen = selected(out)
        assert {r["id"] for r in chosen} == {"p2", "p6", "p10", "p14"}


def test_bad_line_in_a_compressed_shard_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "a.jsonl.gz").write_bytes(gzip.compress(jsonl(ROWS[:3]) + b"{oops\n"))
    result = run("select", "--pool", tmp_path / "*.jsonl.gz", "--target", tmp_path / "a.jsonl.gz",
                 "--method", "knn", "--out", tmp_path / "run")
    assert result.exit_code == 2
    assert f"error: {tmp_path / 'a.jsonl.gz'}:4: the line is not valid JSON" in result.output


def test_hub_id_offline_fails_in_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets

    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "cache")
    result = run("select", "--pool", "hf://no-such-org/no-such-dataset", "--target", "hf://no-such-org/x",
                 "--method", "knn", "--out", tmp_path / "run")
    assert result.exit_code == 2
    assert "hf://no-such-org/no-such-dataset: not in the local Hugging Face cache and there is no network" in \
        result.output


@pytest.mark.parametrize("layout", ["messages", "sharegpt"])
def test_chat_pool_with_knn_without_a_template(tmp_path: Path, layout: str) -> None:
    def chat(question: str, answer: str) -> dict:
        if layout == "messages":
            return {"messages": [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]}
        return {"conversations": [{"from": "human", "value": question}, {"from": "gpt", "value": answer}]}

    (tmp_path / "pool.jsonl").write_bytes(jsonl([chat(f"{TOPICS[i % 4]}? ({i})", "sure") for i in range(12)]))
    (tmp_path / "target.jsonl").write_bytes(jsonl([chat("who scored the goal in the match?", "nobody")]))
    out = tmp_path / "run"
    result = run("select", "--pool", tmp_path / "pool.jsonl", "--target", tmp_path / "target.jsonl",
                 "--method", "knn", "--budget", "3", "--text-view", "chat", "--out", out)
    assert result.exit_code == 0, result.output
    assert all(row["_rank"] >= 1 for row in selected(out))
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["call"]["text_view"] == "chat"
    assert manifest["inputs"]["pool"]["text_rule"].startswith("chat:")
    rows = [r["_id"] for r in selected(out)]
    pool_rows = [json.loads(line) for line in (tmp_path / "pool.jsonl").read_text().splitlines()]
    picked = [pool_rows.index({k: v for k, v in r.items() if not k.startswith("_")}) for r in selected(out)]
    assert len(rows) == 3 and all(i % 4 == 3 for i in picked)
