"""Inputs beyond one file: compressed jsonl, globs and lists of files, hub-layout folders, DatasetDicts, hf://."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard

from tasksift.records import load_records, source_sha256
from tasksift.util.errors import InputError

ROWS = [{"id": f"r{i}", "text": f"example number {i}", "n": i} for i in range(12)]


def jsonl_bytes(rows: list[dict]) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


def write_gz(path: Path, rows: list[dict]) -> Path:
    path.write_bytes(gzip.compress(jsonl_bytes(rows)))
    return path


def write_zst(path: Path, rows: list[dict]) -> Path:
    path.write_bytes(zstandard.ZstdCompressor().compress(jsonl_bytes(rows)))
    return path


@pytest.mark.parametrize("writer, suffix", [(write_gz, ".jsonl.gz"), (write_zst, ".jsonl.zst")])
def test_compressed_jsonl_reads_and_takes_like_plain(tmp_path: Path, writer, suffix: str) -> None:
    plain = tmp_path / "plain.jsonl"
    plain.write_bytes(jsonl_bytes(ROWS))
    packed = writer(tmp_path / f"pool{suffix}", ROWS)
    a, b = load_records(plain), load_records(packed)
    assert b.format == "jsonl" and b.ids == a.ids and b.texts == a.texts
    assert b.take([11, 0, 5, 5]) == [ROWS[11], ROWS[0], ROWS[5], ROWS[5]]
    assert b.file_sha256 != a.file_sha256  # the compressed bytes are hashed


def test_compressed_jsonl_errors_name_the_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl.gz"
    path.write_bytes(gzip.compress(b'{"text": "a"}\n{"text": \n'))
    with pytest.raises(InputError, match=r"bad\.jsonl\.gz:2: the line is not valid JSON"):
        load_records(path)
    broken = tmp_path / "cut.jsonl.zst"
    broken.write_bytes(zstandard.ZstdCompressor().compress(jsonl_bytes(ROWS))[:-9] + b"garbage!!")
    with pytest.raises(InputError, match=r"cut\.jsonl\.zst: cannot read the file after line"):
        load_records(broken)


def test_compressed_json_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "list.json.gz"
    path.write_bytes(gzip.compress(b"[]"))
    with pytest.raises(InputError, match=r"unknown records format '\.json\.gz'"):
        load_records(path)


def test_glob_and_list_number_rows_across_files(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    write_gz(tmp_path / "data" / "a.jsonl.gz", ROWS[:5])
    write_zst(tmp_path / "data" / "b.jsonl.zst", ROWS[5:9])
    (tmp_path / "data" / "c.jsonl").write_bytes(jsonl_bytes(ROWS[9:]))
    rs = load_records(str(tmp_path / "data" / "*.jsonl*"), id_field="id")
    assert rs.ids == [r["id"] for r in ROWS] and rs.format == "jsonl"
    assert rs.take([10, 2, 6]) == [ROWS[10], ROWS[2], ROWS[6]]
    listed = load_records([tmp_path / "data" / "c.jsonl", tmp_path / "data" / "a.jsonl.gz"], id_field="id")
    assert listed.ids == [r["id"] for r in ROWS[9:] + ROWS[:5]] and listed.path is None
    assert listed.with_view(text_field="id").texts == listed.ids
    assert source_sha256(str(tmp_path / "data" / "*.jsonl*")) == rs.file_sha256
    assert source_sha256([tmp_path / "data" / "c.jsonl", tmp_path / "data" / "a.jsonl.gz"]) == listed.file_sha256
    assert source_sha256(tmp_path / "data" / "c.jsonl") == load_records(tmp_path / "data" / "c.jsonl").file_sha256


def test_multi_file_errors_name_the_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "a.jsonl").write_bytes(jsonl_bytes(ROWS[:3]))
    (tmp_path / "b.jsonl").write_bytes(jsonl_bytes(ROWS[3:5]) + b'{"id": "x"}\n')
    with pytest.raises(InputError, match=r"b\.jsonl:3: the record has no text field"):
        load_records(str(tmp_path / "*.jsonl"))
    (tmp_path / "b.jsonl").write_bytes(jsonl_bytes(ROWS[:1]))
    with pytest.raises(InputError, match=r"b\.jsonl:1: the record repeats id 'r0' .*first at .*a\.jsonl line 1"):
        load_records(str(tmp_path / "*.jsonl"), id_field="id")
    with pytest.raises(InputError, match="no file matches the pattern"):
        load_records(str(tmp_path / "*.parquet"))
    pq.write_table(pa.Table.from_pylist(ROWS), tmp_path / "c.parquet")
    with pytest.raises(InputError, match=r"c\.parquet: this parquet file is read with .*a\.jsonl"):
        load_records([tmp_path / "a.jsonl", tmp_path / "c.parquet"])


def hub_folder(root: Path) -> Path:
    """data/train-0000{0,1}-of-00002.parquet and data/test-00000-of-00001.parquet, as the hub writes them."""
    (root / "data").mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(ROWS[:4]), root / "data" / "train-00000-of-00002.parquet")
    pq.write_table(pa.Table.from_pylist(ROWS[4:8]), root / "data" / "train-00001-of-00002.parquet")
    pq.write_table(pa.Table.from_pylist(ROWS[8:]), root / "data" / "test-00000-of-00001.parquet")
    (root / "README.md").write_text("---\nlicense: mit\n---\n")
    return root


def test_hub_layout_folder_reads_one_split(tmp_path: Path) -> None:
    folder = hub_folder(tmp_path / "ds")
    train = load_records(folder, id_field="id")
    assert train.ids == [f"r{i}" for i in range(8)] and train.format == "parquet" and train.path == folder
    assert train.take_table([5, 1]).column("id").to_pylist() == ["r5", "r1"]
    test = load_records(folder, id_field="id", split="test")
    assert test.ids == [f"r{i}" for i in range(8, 12)] and test.path == folder / "data" / "test-00000-of-00001.parquet"
    assert source_sha256(folder) == train.file_sha256 and source_sha256(folder, "test") == test.file_sha256
    with pytest.raises(InputError, match=r"no split 'dev' \(splits found: test, train\)"):
        load_records(folder, split="dev")


def test_hub_layout_subsets_and_split_folders(tmp_path: Path) -> None:
    for subset, rows in (("en", ROWS[:6]), ("fr", ROWS[6:])):
        (tmp_path / "ds" / subset / "validation").mkdir(parents=True)
        (tmp_path / "ds" / subset / "validation" / "0000.jsonl").write_bytes(jsonl_bytes(rows))
    assert load_records(tmp_path / "ds", subset="fr", id_field="id").ids == [f"r{i}" for i in range(6, 12)]
    with pytest.raises(InputError, match=r"no subset 'de' \(folders found: en, fr\)"):
        load_records(tmp_path / "ds", subset="de")


def test_dataset_dict_directory_with_a_split(tmp_path: Path) -> None:
    path = tmp_path / "dd"
    datasets.DatasetDict({"train": datasets.Dataset.from_list(ROWS[:3]),
                          "test": datasets.Dataset.from_list(ROWS[3:])}).save_to_disk(str(path))
    assert load_records(path, split="test", id_field="id").ids == [f"r{i}" for i in range(3, 12)]
    with pytest.raises(InputError, match="pass --split"):
        load_records(path)


def test_hub_id_offline_and_not_cached_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "cache")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(InputError) as err:
        load_records("hf://no-such-org/no-such-dataset", split="train")
    message = str(err.value)
    assert message.startswith("hf://no-such-org/no-such-dataset: not in the local Hugging Face cache and there is "
                              "no network") and "\n" not in message
