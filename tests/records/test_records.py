"""Reading records: formats agree, ids are stable, text views, take, and every input error."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import datasets
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from tasksift.records import files as records_files
from tasksift.records import load_records, records_from_dicts
from tasksift.util.errors import InputError

RECORDS = [
    {"id": "a1", "text": "héllo wörld, \"quoted\"", "label": 3, "score": 0.5},
    {"id": "b2", "text": "second example", "label": 1, "score": 1.25},
    {"id": "c3", "text": "  ", "label": 0, "score": -2.0},
    {"id": "d4", "text": "日本語のテキスト", "label": 7, "score": 3.5},
    {"id": "e5", "text": "second example", "label": 1, "score": 1.25},
]


def expected_hash(rec: dict) -> str:
    canonical = json.dumps(rec, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha1(canonical.encode("utf-8")).hexdigest()[:16]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def make_jsonl(tmp: Path, rows: list[dict]) -> Path:
    return write_jsonl(tmp / "pool.jsonl", rows)


def make_json(tmp: Path, rows: list[dict]) -> Path:
    path = tmp / "pool.json"
    path.write_text(json.dumps(rows, ensure_ascii=False, indent=1), encoding="utf-8")
    return path


def make_parquet(tmp: Path, rows: list[dict]) -> Path:
    path = tmp / "pool.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path, row_group_size=2)
    return path


def make_csv(tmp: Path, rows: list[dict]) -> Path:
    path = tmp / "pool.csv"
    pacsv.write_csv(pa.Table.from_pylist(rows), path)
    return path


def make_hf(tmp: Path, rows: list[dict]) -> Path:
    path = tmp / "pool_hf"
    datasets.Dataset.from_list(rows).save_to_disk(str(path))
    return path


MAKERS: dict[str, Callable[[Path, list[dict]], Path]] = {
    "jsonl": make_jsonl, "json": make_json, "parquet": make_parquet, "csv": make_csv, "hf": make_hf,
}


def error_of(path: Path, **kwargs) -> str:
    with pytest.raises(InputError) as info:
        load_records(path, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    return message


# -- formats, ids, text views --------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", list(MAKERS))
def test_every_format_gives_the_same_ids_and_texts(tmp_path: Path, fmt: str) -> None:
    rs = load_records(MAKERS[fmt](tmp_path, RECORDS))
    assert rs.format == fmt
    assert len(rs) == rs.n == len(RECORDS)
    assert rs.texts == [r["text"] for r in RECORDS]
    assert rs.ids[:4] == [expected_hash(r) for r in RECORDS[:4]]
    assert rs.id_rule == "content-sha1"
    assert rs.text_rule == "field:text"
    assert rs.take([3, 0]) == [RECORDS[3], RECORDS[0]]


@pytest.mark.parametrize("fmt", list(MAKERS))
def test_id_field_text_field_and_domains_in_every_format(tmp_path: Path, fmt: str) -> None:
    rs = load_records(MAKERS[fmt](tmp_path, RECORDS), id_field="id", text_field="label", domain_field="label")
    assert rs.ids == ["a1", "b2", "c3", "d4", "e5"]
    assert rs.texts == ["3", "1", "0", "7", "1"]
    assert rs.domains == ["3", "1", "0", "7", "1"]
    assert rs.id_rule == "field:id"
    assert rs.take([4, 1]) == [RECORDS[4], RECORDS[1]]


def test_file_hash_is_of_the_bytes_and_hf_hash_is_stable(tmp_path: Path) -> None:
    path = make_jsonl(tmp_path, RECORDS)
    assert load_records(path).file_sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    hf = make_hf(tmp_path, RECORDS)
    assert load_records(hf).file_sha256 == load_records(hf).file_sha256
    assert len(load_records(hf).file_sha256) == 64


def test_content_ids_are_stable_and_repeats_get_suffixes(tmp_path: Path) -> None:
    rows = [{"text": "same"}, {"text": "other"}, {"text": "same"}, {"text": "same"}]
    path = write_jsonl(tmp_path / "dup.jsonl", rows)
    first, second = load_records(path), load_records(path)
    h = expected_hash({"text": "same"})
    assert first.ids == second.ids == [h, expected_hash({"text": "other"}), f"{h}-1", f"{h}-2"]
    assert len(set(first.ids)) == 4


def test_content_ids_ignore_key_order(tmp_path: Path) -> None:
    a = write_jsonl(tmp_path / "a.jsonl", [{"text": "x", "n": 1}])
    b = write_jsonl(tmp_path / "b.jsonl", [{"n": 1, "text": "x"}])
    assert load_records(a).ids == load_records(b).ids


def test_template_turns_two_character_backslash_n_into_newline(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "t.jsonl", [{"instruction": "Add", "input": "1 2", "output": 3}])
    rs = load_records(path, template="{instruction}\\n{input}\\t{output}")
    assert rs.texts == ["Add\n1 2\t3"]
    assert rs.text_rule == "template:{instruction}\\n{input}\\t{output}"


def test_null_values_render_empty_and_empty_text_is_allowed(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "n.jsonl", [{"a": "x", "b": None}, {"a": "   ", "b": "y"}])
    assert load_records(path, template="{a}|{b}").texts == ["x|", "   |y"]
    assert load_records(path, text_field="a").texts == ["x", "   "]


def test_blank_lines_and_bom_are_skipped(tmp_path: Path) -> None:
    path = tmp_path / "blank.jsonl"
    path.write_bytes(b'\xef\xbb\xbf{"text": "a"}\n\n  \n{"text": "b"}\r\n')
    rs = load_records(path)
    assert rs.texts == ["a", "b"]
    assert rs.take([1, 0]) == [{"text": "b"}, {"text": "a"}]


def test_take_returns_records_exactly_as_written_in_requested_order(tmp_path: Path) -> None:
    path = tmp_path / "exact.jsonl"
    lines = ['{"z": 1.0, "text": "first", "a": [1, {"b": null}]}', "",
             '{"text": "second", "big": 12345678901234567890}', '{"text": "third", "é": "ü"}']
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    rs = load_records(path)
    got = rs.take([2, 0, 2, 1])
    assert got == [json.loads(lines[3]), json.loads(lines[0]), json.loads(lines[3]), json.loads(lines[2])]
    assert list(got[1]) == ["z", "text", "a"] and isinstance(got[1]["z"], float)
    assert got[0] is not got[2]
    assert rs.take([]) == []
    with pytest.raises(IndexError):
        rs.take([3])


@pytest.mark.parametrize("fmt", ["parquet", "csv", "hf", "json"])
def test_take_table_keeps_requested_order(tmp_path: Path, fmt: str) -> None:
    rs = load_records(MAKERS[fmt](tmp_path, RECORDS))
    table = rs.take_table([4, 0, 3, 0])
    assert table.column("id").to_pylist() == ["e5", "a1", "d4", "a1"]
    assert table.num_rows == 4


def test_csv_column_that_changes_type_in_a_later_block_is_read_as_string(tmp_path: Path) -> None:
    path = tmp_path / "wide.csv"
    rows = b"".join(b"%d,row %d\n" % (i, i) for i in range(120_000))
    path.write_bytes(b"code,text\n" + rows + b"x9,last\n")
    rs = load_records(path)
    assert rs.n == 120_001
    assert rs.take([0, 120_000]) == [{"code": "0", "text": "row 0"}, {"code": "x9", "text": "last"}]


def test_records_from_dicts_match_files(tmp_path: Path) -> None:
    rs = records_from_dicts(RECORDS, id_field="id")
    assert rs.ids == load_records(make_jsonl(tmp_path, RECORDS), id_field="id").ids
    assert rs.format == "memory" and rs.path is None
    got = rs.take([1])
    got[0]["text"] = "changed"
    assert RECORDS[1]["text"] == "second example"


def test_parquet_with_id_field_reads_only_needed_columns(tmp_path: Path) -> None:
    rs = load_records(make_parquet(tmp_path, RECORDS), id_field="id")
    assert rs.ids == ["a1", "b2", "c3", "d4", "e5"]
    assert rs.take([0]) == [RECORDS[0]]  # take still returns whole records


# -- errors --------------------------------------------------------------------------------------------------
def test_missing_file(tmp_path: Path) -> None:
    message = error_of(tmp_path / "nope.jsonl")
    assert "nope.jsonl" in message and "not found" in message


def test_unreadable_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = make_jsonl(tmp_path, RECORDS)

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(records_files, "open", denied, raising=False)
    message = error_of(path)
    assert "pool.jsonl" in message and "Permission denied" in message


def test_unknown_format(tmp_path: Path) -> None:
    path = tmp_path / "pool.txt"
    path.write_text("hello\n")
    message = error_of(path)
    assert "pool.txt" in message and "unknown records format '.txt'" in message and ".jsonl" in message


def test_directory_that_is_not_a_dataset(tmp_path: Path) -> None:
    folder = tmp_path / "folder"
    folder.mkdir()
    assert "save_to_disk" in error_of(folder)


def test_dataset_dict_directory_asks_for_a_split(tmp_path: Path) -> None:
    path = tmp_path / "dd"
    datasets.DatasetDict({"train": datasets.Dataset.from_list(RECORDS)}).save_to_disk(str(path))
    message = error_of(path)
    assert "DatasetDict" in message and "train" in message


@pytest.mark.parametrize(("name", "content"), [
    ("empty.jsonl", b""), ("blank.jsonl", b"\n  \n\n"), ("empty.json", b"[]"), ("ws.json", b" \n"),
    ("empty.csv", b""), ("header.csv", b"text,label\n"),
])
def test_empty_files(tmp_path: Path, name: str, content: bytes) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    assert f"no records in {path}" in error_of(path)


def test_empty_parquet(tmp_path: Path) -> None:
    path = tmp_path / "empty.parquet"
    pq.write_table(pa.table({"text": pa.array([], type=pa.string())}), path)
    assert "no records in" in error_of(path)


def test_malformed_jsonl_line_reports_real_line_number(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"text": "a"}\n\n{"text": "b"}\n{"text": oops}\n')
    message = error_of(path)
    assert "bad.jsonl:4" in message and "not valid JSON" in message


def test_jsonl_line_that_is_not_an_object(tmp_path: Path) -> None:
    path = tmp_path / "list.jsonl"
    path.write_text('{"text": "a"}\n[1, 2]\n')
    message = error_of(path)
    assert "list.jsonl:2" in message and "JSON list, not an object" in message


def test_missing_text_field_jsonl_line(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    path.write_text('{"text": "a"}\n\n{"body": "b"}\n')
    message = error_of(path)
    assert "m.jsonl:3" in message and "no text field 'text'" in message


def test_missing_template_field_csv_line(tmp_path: Path) -> None:
    path = make_csv(tmp_path, RECORDS)
    message = error_of(path, template="{text} {answer}")
    assert "pool.csv:2" in message and "'answer'" in message


def test_missing_text_field_json_record(tmp_path: Path) -> None:
    rows = [{"body": "a"}, {"body": "b"}, {"other": "c"}]
    message = error_of(make_json(tmp_path, rows), text_field="body")
    assert "pool.json" in message and "record 2 has no text field 'body'" in message


def test_missing_text_field_parquet_record(tmp_path: Path) -> None:
    message = error_of(make_parquet(tmp_path, RECORDS), text_field="body")
    assert "pool.parquet" in message and "record 0 has no text field 'body'" in message


def test_no_text_field_lists_the_fields(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "f.jsonl", [{"question": "q", "answer": "a"}])
    message = error_of(path)
    assert "f.jsonl" in message and "question, answer" in message and "--text-field" in message
    assert "--template" in message


def test_missing_and_duplicate_id_field(tmp_path: Path) -> None:
    dup = write_jsonl(tmp_path / "dup.jsonl", [{"id": 1, "text": "a"}, {"id": 2, "text": "b"},
                                               {"id": 1, "text": "c"}])
    message = error_of(dup, id_field="id")
    assert "dup.jsonl:3" in message and "'1'" in message and "line 1" in message
    missing = write_jsonl(tmp_path / "missing.jsonl", [{"id": 1, "text": "a"}, {"text": "b"}])
    message = error_of(missing, id_field="id")
    assert "missing.jsonl:2" in message and "no id field 'id'" in message


def test_missing_domain_field(tmp_path: Path) -> None:
    message = error_of(make_parquet(tmp_path, RECORDS), domain_field="topic")
    assert "pool.parquet" in message and "record 0 has no domain field 'topic'" in message


def test_invalid_utf8_jsonl(tmp_path: Path) -> None:
    path = tmp_path / "u.jsonl"
    path.write_bytes(b'{"text": "ok"}\n{"text": "bad \xff"}\n')
    message = error_of(path)
    assert "u.jsonl:2" in message and "UTF-8" in message


def test_lone_surrogate_escape_in_jsonl_text(tmp_path: Path) -> None:
    path = tmp_path / "s.jsonl"
    path.write_bytes(b'{"text": "ok"}\n{"text": "bad \\ud800"}\n')
    message = error_of(path)
    assert "s.jsonl:2" in message and "UTF-8" in message


def test_invalid_utf8_csv_first_block(tmp_path: Path) -> None:
    path = tmp_path / "u.csv"
    path.write_bytes(b"text,label\nfine,1\nalso fine,2\nbad \xfe\xff,3\n")
    message = error_of(path)
    assert "u.csv:4" in message and "UTF-8" in message


def test_invalid_utf8_csv_later_block(tmp_path: Path) -> None:
    path = tmp_path / "late.csv"
    rows = b"".join(b"row %d,%d\n" % (i, i) for i in range(120_000))
    path.write_bytes(b"text,label\n" + rows + b"bad \xff,1\n")
    message = error_of(path)
    assert "late.csv:120002" in message and "UTF-8" in message


def test_invalid_utf8_and_malformed_json_list(tmp_path: Path) -> None:
    path = tmp_path / "u.json"
    path.write_bytes(b'[\n{"text": "a"},\n{"text": "\xff"}\n]')
    assert "u.json:3" in error_of(path)
    path.write_bytes(b'[\n{"text": "a"},\n{"text": }\n]')
    message = error_of(path)
    assert "u.json:3" in message and "not valid JSON" in message
    path.write_bytes(b'{"text": "a"}')
    assert "not a list of records" in error_of(path)
    path.write_bytes(b'[{"text": "a"}, "b"]')
    assert "record 1 is a JSON string" in error_of(path)


def test_csv_parse_error_is_an_input_error(tmp_path: Path) -> None:
    path = tmp_path / "ragged.csv"
    path.write_bytes(b"text,label\na,1\nb,2,3\n")
    message = error_of(path)
    assert "ragged.csv" in message and "cannot parse the csv" in message


def test_not_a_parquet_file(tmp_path: Path) -> None:
    path = tmp_path / "fake.parquet"
    path.write_text("not parquet")
    assert "fake.parquet" in error_of(path) and "parquet" in error_of(path)


def test_bad_template_and_both_text_options(tmp_path: Path) -> None:
    path = make_jsonl(tmp_path, RECORDS)
    assert "positional field" in error_of(path, template="{} and {0}")
    assert "not a valid format string" in error_of(path, template="{text")
    assert "not both" in error_of(path, text_field="text", template="{text}")
