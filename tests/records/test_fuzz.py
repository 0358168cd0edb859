"""Fuzzing the readers: random bytes and random JSON into every format, random templates and field names, random
``.npy`` bytes and matrices. Whatever comes in, the readers either return records (which can be fetched back) or
raise InputError: nothing else ever escapes."""

from __future__ import annotations

import io
import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from tasksift.records import check_vectors, load_records, load_vectors, records_from_dicts
from tasksift.records.view import compile_template
from tasksift.util.errors import InputError

FUZZ = settings(max_examples=50, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
FORMATS = ("jsonl", "json", "csv", "parquet")

json_scalars = st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False) | st.text(
    max_size=20)
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)
field_names = st.sampled_from(["text", "id", "body", "x", ""]) | st.text(max_size=6)
view_options = st.fixed_dictionaries({}, optional={"text_field": field_names, "id_field": field_names,
                                                   "domain_field": field_names,
                                                   "template": st.text(max_size=20) | st.just("{text}")})


def load_then_take(path: Path, options: dict[str, Any]) -> None:
    """Load, and when that works, fetch every record back: each may raise InputError, nothing else."""
    try:
        records = load_records(path, **options)
    except InputError:
        return
    assert len(records.ids) == len(records.texts) == len(records) > 0
    assert all(isinstance(t, str) for t in records.texts)
    records.take(np.arange(len(records)))
    records.take_table(np.arange(min(len(records), 3)))


def in_tmp(name: str, data: bytes, options: dict[str, Any]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        path.write_bytes(data)
        load_then_take(path, options)


@FUZZ
@given(fmt=st.sampled_from(FORMATS), data=st.binary(max_size=400), options=view_options)
def test_random_bytes_into_every_format(fmt: str, data: bytes, options: dict[str, Any]) -> None:
    in_tmp(f"records.{fmt}", data, options)


@FUZZ
@given(fmt=st.sampled_from(FORMATS), data=st.binary(max_size=200), options=view_options)
def test_random_bytes_after_a_valid_start(fmt: str, data: bytes, options: dict[str, Any]) -> None:
    """A valid first record, then garbage (errors found past the first block or line)."""
    start = {"jsonl": b'{"text": "fine", "id": "a"}\n', "json": b'[{"text": "fine", "id": "a"}, ',
             "csv": b"text,id\nfine,a\n", "parquet": _parquet([{"text": "fine", "id": "a"}])}[fmt]
    in_tmp(f"records.{fmt}", start + data, options)


@FUZZ
@given(values=st.lists(json_values, min_size=1, max_size=6), options=view_options)
def test_random_json_into_jsonl_and_json(values: list[Any], options: dict[str, Any]) -> None:
    in_tmp("records.jsonl", "\n".join(json.dumps(v) for v in values).encode(), options)
    in_tmp("records.json", json.dumps(values).encode(), options)
    in_tmp("records.json", json.dumps(values[0]).encode(), options)


@FUZZ
@given(value=json_values, options=view_options)
def test_random_json_text_into_csv(value: Any, options: dict[str, Any]) -> None:
    in_tmp("records.csv", json.dumps(value).encode(), options)


@FUZZ
@given(rows=st.lists(st.dictionaries(field_names, json_scalars, max_size=4), min_size=1, max_size=6),
       options=view_options)
def test_random_records_as_parquet_and_csv(rows: list[dict[str, Any]], options: dict[str, Any]) -> None:
    try:
        table = pa.Table.from_pylist(rows)
    except (pa.ArrowException, OverflowError, ValueError, TypeError):
        return  # pyarrow itself cannot build this table: nothing to write
    in_tmp("records.parquet", _parquet_table(table), options)
    sink = io.BytesIO()
    try:
        import pyarrow.csv as pacsv

        pacsv.write_csv(table, sink)
    except (pa.ArrowException, ValueError):
        return
    in_tmp("records.csv", sink.getvalue(), options)


@FUZZ
@given(rows=st.lists(st.dictionaries(field_names, json_values, max_size=4), min_size=1, max_size=5),
       options=view_options)
def test_random_records_in_memory(rows: list[dict[str, Any]], options: dict[str, Any]) -> None:
    try:
        records = records_from_dicts(rows, **options)
    except InputError:
        return
    records.take(np.arange(len(records)))


@FUZZ
@given(template=st.text(max_size=30))
def test_random_templates(template: str) -> None:
    try:
        text, names = compile_template(template)
    except InputError:
        return
    try:
        records_from_dicts([{name: "v" for name in names}], template=template)
    except InputError:
        pass


@FUZZ
@given(data=st.binary(max_size=300))
def test_random_bytes_as_npy(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "x.npy"
        path.write_bytes(b"\x93NUMPY" + data)
        try:
            load_vectors(path)
        except InputError:
            pass
        path.write_bytes(data)
        try:
            load_vectors(path)
        except InputError:
            pass


@FUZZ
@given(array=hnp.arrays(st.sampled_from([np.float32, np.float64, np.int64, np.float16, np.bool_]),
                        hnp.array_shapes(min_dims=1, max_dims=3, min_side=0, max_side=5)))
def test_random_matrices_are_checked_or_refused(array: np.ndarray) -> None:
    try:
        out = check_vectors(array)
    except InputError:
        return
    assert out.dtype == np.float32 and out.ndim == 2 and np.isfinite(out).all()
    assert np.isfinite(np.einsum("ij,ij->i", out, out)).all()


def _parquet(rows: list[dict[str, Any]]) -> bytes:
    return _parquet_table(pa.Table.from_pylist(rows))


def _parquet_table(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()
