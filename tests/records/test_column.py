"""Streamed records: a TextColumn and compact ids give exactly what the plain lists give, in every format that
streams, and the same errors."""

from __future__ import annotations

import gzip
import json
import random
from pathlib import Path

import numpy as np
import pytest

from tasksift.records import ids as ids_module
from tasksift.records import load_records
from tasksift.records.column import STREAM_ENV, TextColumn
from tasksift.records.ids import ContentIds, FieldIds
from tasksift.util import spill
from tasksift.util.errors import InputError
from tests.records.test_records import RECORDS, make_hf, make_jsonl, make_parquet, write_jsonl

CHATS = [{"messages": [{"role": "user", "content": f"question {i}"},
                       {"role": "assistant", "content": f"answer {i}" + " é" * (i % 3)}]} for i in range(7)]
ROWS = [{"id": f"r{i}", "text": f"text {i % 7} ü", "n": i % 4, "dom": "ab"[i % 2]} for i in range(23)]


def make_gz(tmp: Path, rows: list[dict]) -> Path:
    path = tmp / "pool.jsonl.gz"
    with gzip.open(path, "wt", encoding="utf-8") as f:
        f.write("\n".join(json.dumps(r, ensure_ascii=False) for r in rows))
    return path


def make_blank_lines(tmp: Path, rows: list[dict]) -> Path:
    """A byte order mark, blank lines between records and after the last one, no final newline."""
    path = tmp / "blank.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + b"\n  \n".join(json.dumps(r).encode() for r in rows) + b"\n\n ")
    return path


def make_glob(tmp: Path, rows: list[dict]) -> str:
    write_jsonl(tmp / "part-0.jsonl", rows[:9])
    write_jsonl(tmp / "part-1.jsonl", [])
    write_jsonl(tmp / "part-2.jsonl", rows[9:])
    return str(tmp / "part-*.jsonl")


MAKERS = {"jsonl": make_jsonl, "gz": make_gz, "blank": make_blank_lines, "parquet": make_parquet, "hf": make_hf,
          "glob": make_glob}
VIEWS = [{}, {"id_field": "id", "domain_field": "dom"}, {"template": "{id}: {text} ({n})"}, {"text_field": "n"}]


def both(source: object, **view: object) -> tuple:
    plain, streamed = load_records(source, **view), load_records(source, stream=True, **view)
    assert not plain.streamed and streamed.streamed and isinstance(streamed.texts, TextColumn)
    return plain, streamed


@pytest.mark.parametrize("fmt", list(MAKERS))
@pytest.mark.parametrize("view", range(len(VIEWS)))
def test_streamed_records_equal_the_plain_lists(tmp_path: Path, fmt: str, view: int) -> None:
    plain, streamed = both(MAKERS[fmt](tmp_path, ROWS), **VIEWS[view])
    n = len(ROWS)
    assert len(streamed) == len(streamed.texts) == len(streamed.ids) == n
    assert list(streamed.texts) == plain.texts and list(streamed.ids) == plain.ids
    assert streamed.domains == plain.domains
    assert (streamed.id_rule, streamed.text_rule, streamed.file_sha256) == \
        (plain.id_rule, plain.text_rule, plain.file_sha256)
    for piece in (slice(0, n), slice(3, 17), slice(8, 10), slice(-5, None), slice(2, 20, 3), slice(7, 7)):
        assert streamed.texts[piece] == plain.texts[piece], piece
        assert streamed.ids[piece] == plain.ids[piece], piece
    for i in (0, 1, 8, 9, n - 1, -1, -n, np.int64(5)):
        assert streamed.texts[i] == plain.texts[i] and streamed.ids[i] == plain.ids[i]
    for bad in (n, -n - 1):
        with pytest.raises(IndexError):
            streamed.texts[bad]
        with pytest.raises(IndexError):
            streamed.ids[bad]
    assert streamed.take([22, 0, 9, 9]) == plain.take([22, 0, 9, 9])
    assert [t for chunk in streamed.texts.chunks(5) for t in chunk] == plain.texts


def test_compressed_ranges_read_backwards_and_in_any_order(tmp_path: Path) -> None:
    plain, streamed = both(make_gz(tmp_path, ROWS))
    order = list(range(0, len(ROWS), 4))
    random.Random(0).shuffle(order)
    for start in [*reversed(range(0, len(ROWS), 4)), *order]:
        assert streamed.texts[start:start + 4] == plain.texts[start:start + 4]


def test_repeated_content_gets_the_same_suffixes_across_files(tmp_path: Path) -> None:
    rows = [{"text": "same"}, {"text": "other"}, {"text": "same"}, {"text": "x"}, {"text": "same"}]
    write_jsonl(tmp_path / "a.jsonl", rows)
    write_jsonl(tmp_path / "b.jsonl", rows[::-1])
    plain, streamed = both(str(tmp_path / "*.jsonl"))
    assert list(streamed.ids) == plain.ids
    assert len(set(plain.ids)) == 10 and sum(i.endswith("-5") for i in plain.ids) == 1


def test_chat_view_streams(tmp_path: Path) -> None:
    plain, streamed = both(make_jsonl(tmp_path, CHATS))
    assert streamed.text_rule == plain.text_rule and streamed.text_rule.startswith("chat")
    assert list(streamed.texts) == plain.texts and "answer 2 é é" in plain.texts[2]


def test_another_view_of_a_streamed_input_streams_too(tmp_path: Path) -> None:
    plain, streamed = both(make_jsonl(tmp_path, ROWS), id_field="id")
    other = streamed.with_text(template="{text}|{dom}")
    assert other.streamed and list(other.texts) == plain.with_text(template="{text}|{dom}").texts
    assert list(other.ids) == plain.ids


def error(source: object, **kwargs: object) -> str:
    with pytest.raises(InputError) as info:
        load_records(source, **kwargs)
    return str(info.value)


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("buffer", [1 << 16, 2])
def test_a_repeated_id_gives_the_same_message(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stream: bool,
                                              buffer: int) -> None:
    monkeypatch.setattr(spill, "BUFFER_VALUES", buffer)  # 2: positions, ends and offsets in temporary files
    monkeypatch.setattr(spill, "BUFFER_BYTES", buffer)
    rows = [{"id": 1, "text": "a"}, {"id": 2, "text": "b"}, {"id": 3, "text": "c"}, {"id": 2, "text": "d"},
            {"id": 1, "text": "e"}]
    path = tmp_path / "dup.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows[:2]) + "\n\n" +
                    "\n".join(json.dumps(r) for r in rows[2:]) + "\n")
    assert error(path, id_field="id", stream=stream) == error(path, id_field="id", stream=not stream)
    assert "dup.jsonl:5" in error(path, id_field="id", stream=stream)
    assert "repeats id '2'" in error(path, id_field="id", stream=stream)
    assert "(first at line 2)" in error(path, id_field="id", stream=stream)
    write_jsonl(tmp_path / "p-0.jsonl", rows[:2])
    write_jsonl(tmp_path / "p-1.jsonl", [{"id": 9, "text": "z"}, rows[1]])
    message = error(str(tmp_path / "p-*.jsonl"), id_field="id", stream=stream)
    assert message == error(str(tmp_path / "p-*.jsonl"), id_field="id", stream=not stream)
    assert "p-1.jsonl:2" in message and f"first at {tmp_path / 'p-0.jsonl'} line 2" in message
    parquet = make_parquet(tmp_path, [{"id": "x", "text": "a"}, {"id": "y", "text": "b"}, {"id": "x", "text": "c"}])
    message = error(parquet, id_field="id", stream=stream)
    assert message == error(parquet, id_field="id", stream=not stream)
    assert "record 2 repeats id 'x'" in message and "(first at record 0)" in message


def test_size_threshold_and_switch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = make_jsonl(tmp_path, RECORDS)
    size = path.stat().st_size
    monkeypatch.setenv(STREAM_ENV, str(size))
    assert not load_records(path).streamed
    monkeypatch.setenv(STREAM_ENV, str(size - 1))
    assert load_records(path).streamed
    assert not load_records(path, stream=False).streamed
    monkeypatch.delenv(STREAM_ENV)
    assert not load_records(path).streamed and load_records(path, stream=True).streamed
    csv = tmp_path / "pool.csv"
    csv.write_text("text\na\nb\n")
    assert not load_records(csv, stream=True).streamed  # csv has no row fetcher: a list whatever is asked
    monkeypatch.setenv(STREAM_ENV, "lots")
    assert STREAM_ENV in error(path)


def test_a_file_changed_after_loading_is_an_input_error(tmp_path: Path) -> None:
    path = make_jsonl(tmp_path, RECORDS)
    streamed = load_records(path, stream=True)
    path.write_text("not json\n" * 40)
    with pytest.raises(InputError, match="changed after it was loaded"):
        streamed.texts[1]
    path.write_text("")
    with pytest.raises(InputError, match="changed after it was loaded"):
        streamed.texts[1:3]


@pytest.mark.parametrize(("buffer", "chunk"), [(1 << 16, 1 << 20), (64, 7), (1, 1)])
def test_content_ids_number_repeats_as_brute_force_does(monkeypatch: pytest.MonkeyPatch, buffer: int,
                                                        chunk: int) -> None:
    # in memory; in a file past 64 hashes, numbered 7 at a time (pairs across chunks); one at a time
    monkeypatch.setattr(spill, "BUFFER_VALUES", buffer)
    monkeypatch.setattr(spill, "BUFFER_BYTES", 8 * buffer)
    monkeypatch.setattr(ids_module, "FINISH_CHUNK", chunk)
    rng = np.random.default_rng(0)
    digests = [f"{int(d):016x}" for d in rng.integers(0, 40, 500)] + ["ffffffffffffffff", "0000000000000000"]
    ids, seen, expected = ContentIds(), {}, []
    for d in digests:
        ids.append(d)
        k = seen.get(d, 0)
        seen[d] = k + 1
        expected.append(d if k == 0 else f"{d}-{k}")
    ids.finish()
    assert list(ids) == expected and ids[100:120] == expected[100:120]
    del ids[300:]
    ids.finish()
    assert list(ids) == expected[:300]


@pytest.mark.parametrize(("buffer", "chunk"), [(1 << 16, 1 << 20), (5, 7), (1, 1)])
def test_field_ids_find_the_first_repeat_as_brute_force_does(monkeypatch: pytest.MonkeyPatch, buffer: int,
                                                             chunk: int) -> None:
    # in memory; ends in a file past 5 ids and bytes past 5 bytes, hashes 7 at a time; one at a time
    monkeypatch.setattr(spill, "BUFFER_VALUES", buffer)
    monkeypatch.setattr(spill, "BUFFER_BYTES", buffer)
    monkeypatch.setattr(ids_module, "FINISH_CHUNK", chunk)
    rng = np.random.default_rng(1)
    for trial in range(20):
        values = [f"id-{int(v)}-\u00e9" for v in rng.integers(0, 400, 60)]
        ids = FieldIds()
        for v in values:
            ids.append(v)
        assert list(ids) == values
        first_seen: dict[str, int] = {}
        expected = None
        for row, v in enumerate(values):
            first = first_seen.setdefault(v, row)
            if first != row:
                expected = (row, first)
                break
        assert ids.first_repeat() == expected, trial
    del ids[10:]
    assert list(ids) == values[:10]
    ids.append("\ud800 lone")
    assert ids[-1] == "\ud800 lone"
