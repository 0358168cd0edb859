"""What a new user may type, as a table: every row asserts the exit code, ONE line on stderr (``tasksift:
error: ...`` naming what is wrong), no traceback, and the state of ``--out`` and of the feature cache after.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

import tasksift
from tasksift.cli.app import app
from tasksift.util.errors import InputError
from tests.conftest import write_jsonl

runner = CliRunner()
POOL = [{"text": f"pool example number {i} about {'cats' if i % 3 else 'stocks'}", "n": i, "source": f"s{i % 2}"}
        for i in range(30)]


@dataclass
class Case:
    """One row: ``args`` with ``{name}`` placeholders for the files of :func:`base`; ``out``: ``absent`` (a
    failed run leaves no --out), ``previous`` (--out holds an earlier run, left byte for byte) or ``any``."""

    id: str
    args: list[str]
    needles: tuple[str, ...] = ()
    code: int = 2
    out: str = "absent"
    setup: Callable[[dict[str, Path]], None] | None = None
    env: dict[str, str] = field(default_factory=dict)


#: files that are wrong as they are: name -> (file name, bytes)
BROKEN_FILES = {
    "notnpy": ("notnpy.npy", b"not numpy"), "afile": ("afile.txt", b"a file, not a folder"),
    "empty": ("empty.jsonl", b""), "blank": ("blank.jsonl", b"\n\n"),
    "malformed": ("malformed.jsonl", b'{"text": "fine"}\n{"text": "broken"\n'),
    "latin": ("latin.jsonl", b'{"text": "fine"}\n{"text": "caf\xe9"}\n'),
    "jsonobj": ("obj.json", b'{"text": "one object, not a list"}'), "jsonnum": ("nums.json", b"[1, 2, 3]"),
    "csvbad": ("bad.csv", b'text,n\n"unclosed,1\nx,2,3,4\n'), "parquetbad": ("bad.parquet", b"PAR1 but not really"),
    "txt": ("pool.txt", b"plain text"),
}


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Inputs every row may read (never written by a row) and a previous complete run."""
    d = tmp_path_factory.mktemp("inputs")
    rng = np.random.default_rng(0)
    f = {"dir": d, "pool": write_jsonl(d / "pool.jsonl", POOL),
         "target": write_jsonl(d / "target.jsonl", [{"text": "a cat"}, {"text": "the market"}])}
    for name, shape in (("x", (30, 8)), ("q", (2, 8)), ("x29", (29, 8)), ("q5", (2, 5))):
        f[name] = d / f"{name}.npy"
        np.save(f[name], rng.normal(size=shape).astype(np.float32))
    bad = {"nan": np.nan, "inf": np.inf, "huge": 3e38}
    for name, value in bad.items():
        x = np.load(f["x"])
        x[4, :] = value
        f[name] = d / f"{name}.npy"
        np.save(f[name], x)
    f["vec1d"] = d / "vec1d.npy"
    np.save(f["vec1d"], np.zeros(30, dtype=np.float32))
    f["vecstr"] = d / "vecstr.npy"
    np.save(f["vecstr"], np.array([["a"] * 8] * 30))
    f["npz"] = d / "x.npz"
    np.savez(f["npz"], x=np.load(f["x"]))
    for name, (file_name, data) in BROKEN_FILES.items():
        f[name] = d / file_name
        f[name].write_bytes(data)
    f["nofield"] = write_jsonl(d / "nofield.jsonl", [{"text": "ok"}, {"body": "no text"}])
    f["dupids"] = write_jsonl(d / "dupids.jsonl", [{"id": "a", "text": "x"}, {"id": "a", "text": "y"}])
    f["plaindir"] = d / "plaindir"
    f["plaindir"].mkdir()
    f["otherfiles"] = d / "otherfiles"
    f["otherfiles"].mkdir()
    (f["otherfiles"] / "notes.txt").write_text("mine")
    f["prev"] = d / "prev"
    tasksift.select(f["pool"], f["target"], pool_vectors=f["x"], target_vectors=f["q"], method="knn", budget=5,
                    metric="l2", out=f["prev"])
    return f


# -- the rows ----------------------------------------------------------------------------------------------------

VEC = ["select", "--pool", "{pool}", "--target", "{target}", "--pool-vectors", "{x}", "--target-vectors", "{q}",
       "--out", "{out}"]
KNN = [*VEC, "--method", "knn"]
TSDS = [*VEC, "--method", "tsds", "--budget", "5"]
TEXT = ["select", "--pool", "{pool}", "--target", "{target}", "--out", "{out}"]


def knn(budget: str = "3", *extra: str) -> list[str]:
    return [*KNN, "--budget", budget, *extra]


def with_vectors(pool_vectors: str, target_vectors: str = "{q}") -> list[str]:
    args = knn()
    args[args.index("{x}")] = pool_vectors
    args[args.index("{q}")] = target_vectors
    return args


def with_pool(pool: str, method: str = "random") -> list[str]:
    return ["select", "--pool", pool, "--target", "{target}", "--method", method, "--budget", "1", "--out", "{out}"]


BUDGETS = [("nan", "budget"), ("inf", "budget"), ("-inf", "budget"), ("1e400", "budget"), ("1e400%", "budget"),
           ("nan%", "budget"), ("2.5", "whole number"), ("0", "budget"), ("-3", "budget"),
           ("31", "larger than the pool"), ("abc", "neither a count"), ("", "budget"), ("1%%", "budget")]
#: the share checks of api.parse_budget raise inside its ``try``, whose ``except ValueError`` replaces them
SHARES = [("0%", "between 0% and 100%"), ("150%", "between 0% and 100%"), ("0.001%", "less than one example")]

CASES: list[Case] = [
    *[Case(f"budget {b!r}", knn(b), (n,)) for b, n in BUDGETS],
    *[Case(f"budget {b!r}", knn(b), (n,)) for b, n in SHARES],
    # parameters
    Case("--param seed and --seed disagree", knn("3", "--seed", "6", "--param", "seed=5"), ("disagree",)),
    Case("--param seed=abc", knn("3", "--param", "seed=abc"), ("seed",)),
    Case("random --seed -1", [*VEC, "--method", "random", "--budget", "3", "--seed", "-1"], ("seed=-1",)),
    Case("--param seed=1e400", knn("3", "--param", "seed=1e400"), ("seed",)),
    Case("--param seed=<400 digits>", knn("3", "--param", "seed=" + "1" * 400), ("seed",)),
    Case("--param without =", knn("3", "--param", "alpha"), ("key=value",)),
    Case("--param =5", knn("3", "--param", "=5"), ("key=value",)),
    Case("--param given twice", [*TSDS, "--param", "alpha=0.1", "--param", "alpha=0.2"], ("twice",)),
    Case("unknown parameter", knn("3", "--param", "alpah=1"), ("alpah",)),
    Case("knn metric=bogus", knn("3", "--param", "metric=bogus"), ("metric",)),
    Case("tsds --index ivf nlist=abc", [*TSDS, "--index", "ivf", "--param", "nlist=abc"], ("nlist",)),
    Case("tsds nlist=0", [*TSDS, "--index", "ivf", "--param", "nlist=0"], ("nlist",)),
    Case("tsds alpha=1.5", [*TSDS, "--param", "alpha=1.5"], ("alpha",)),
    Case("tsds alpha=nan", [*TSDS, "--param", "alpha=nan"], ("alpha",)),
    Case("tsds C=-1", [*TSDS, "--param", "C=-1"], ("C=",)),
    Case("tsds sigma=inf", [*TSDS, "--param", "sigma=inf"], ("sigma",)),
    Case("tsds max_k=1e400", [*TSDS, "--param", "max_k=1e400"], ("max_k",)),
    Case("--index bogus", knn("3", "--index", "bogus"), ("index",)),
    Case("unknown method", knn("3", "--method", "nope"), ("nope",)),
    Case("training-time method", knn("3", "--method", "opera-dp"), ("prunes while training",)),
    Case("--feature for an embedding method", [*TEXT, "--method", "knn", "--budget", "3", "--feature", "x=1"],
         ("feature settings",)),
    *[Case(f"dsir {p}", ["select", "--pool", "{pool}", "--target", "{target}", "--method", "dsir", "--budget", "3",
                         "--param", p, "--out", "{out}"], (p.split("=")[0],))
      for p in ("num_buckets=0", "num_buckets=-5", "num_buckets=abc", "ngrams=0", "sampling=best")],
    # records
    Case("missing pool file", with_pool("{dir}/nope.jsonl"), ("nope.jsonl", "not found")),
    Case("a directory that is no dataset", with_pool("{plaindir}"), ("plaindir",)),
    Case("unknown extension", with_pool("{txt}"), ("pool.txt", "format")),
    Case("empty pool", with_pool("{empty}", "knn"), ("empty.jsonl",)),
    Case("blank lines only", with_pool("{blank}"), ("blank.jsonl",)),
    Case("malformed jsonl line", with_pool("{malformed}"), ("malformed.jsonl:2",)),
    Case("record without the text field", with_pool("{nofield}"), ("nofield.jsonl:2", "text")),
    Case("text not UTF-8", with_pool("{latin}"), ("latin.jsonl:2", "UTF-8")),
    Case(".json holding an object", with_pool("{jsonobj}"), ("obj.json", "list")),
    Case(".json holding numbers", with_pool("{jsonnum}"), ("nums.json", "record 0")),
    Case("broken csv", with_pool("{csvbad}"), ("bad.csv",)),
    Case("parquet that is not parquet", with_pool("{parquetbad}"), ("bad.parquet",)),
    Case("duplicate ids", [*with_pool("{dupids}"), "--id-field", "id"], ("dupids.jsonl:2", "repeats id")),
    Case("--text-field and --template", [*with_pool("{pool}"), "--text-field", "text", "--template", "{text}"],
         ("either",)),
    Case("template with an open brace", [*with_pool("{pool}"), "--template", "{text"], ("template",)),
    Case("template without fields", [*with_pool("{pool}"), "--template", "plain"], ("no record field",)),
    Case("template field missing", [*with_pool("{pool}"), "--template", "{nothere}"], ("nothere",)),
    Case("line over the size limit", with_pool("{pool}"), ("pool.jsonl:1", "longer than"),
         env={"TASKSIFT_MAX_LINE_BYTES": "40"}),
    Case("bad line size limit", with_pool("{pool}"), ("TASKSIFT_MAX_LINE_BYTES",),
         env={"TASKSIFT_MAX_LINE_BYTES": "lots"}),
    Case("no pool at all", ["select", "--method", "knn", "--budget", "3", "--out", "{out}"], ("pool",)),
    # vectors
    Case("pool vectors without target vectors", [a for a in knn() if a not in ("--target-vectors", "{q}")],
         ("--target-vectors",)),
    Case("vectors with a row too few", with_vectors("{x29}"), ("x29.npy", "29")),
    Case("target vectors of another width", with_vectors("{x}", "{q5}"), ("q5.npy", "5")),
    Case("NaN in the vectors", with_vectors("{nan}"), ("nan.npy", "row 4")),
    Case("inf in the vectors", with_vectors("{inf}"), ("inf.npy", "row 4")),
    Case("vectors whose norm overflows float32", with_vectors("{huge}"), ("huge.npy", "row 4", "norm")),
    Case("an .npz archive", with_vectors("{npz}"), ("x.npz", "npz")),
    Case("a file that is not .npy", with_vectors("{notnpy}"), ("notnpy.npy",)),
    Case("1-D vectors", with_vectors("{vec1d}"), ("vec1d.npy", "2-D")),
    Case("vectors of strings", with_vectors("{vecstr}"), ("vecstr.npy", "numbers")),
    Case("missing vectors file", with_vectors("{dir}/none.npy"), ("none.npy",)),
    # --out
    Case("--out is a file", [*knn()[:-4], "--out", "{afile}", "--method", "knn", "--budget", "3"], ("afile.txt",),
         out="any"),
    Case("--out under a file", [*knn()[:-4], "--out", "{afile}/run", "--method", "knn", "--budget", "3"],
         ("afile.txt",), out="any"),
    Case("--out in /proc", [*knn()[:-4], "--out", "/proc/tasksift-run", "--method", "knn", "--budget", "3"],
         ("/proc",), out="any"),
    Case("--out holding other files", [*knn()[:-4], "--out", "{otherfiles}", "--method", "knn", "--budget", "3"],
         ("not a tasksift run", "--overwrite"), out="any"),
    Case("bad input keeps the previous run", knn("1e400"), ("budget",), out="previous"),
    Case("bad vectors keep the previous run", with_vectors("{nan}"), ("row 4",), out="previous"),
]


def _cache_is_file(f: dict[str, Path]) -> None:
    f["cache"].parent.mkdir(parents=True, exist_ok=True)
    f["cache"].write_text("a file where the cache should be")


def _cache_under_file(f: dict[str, Path]) -> None:
    _cache_is_file(f)
    f["cache"] = f["cache"] / "sub"


EMBED = ["embed", "--in", "{pool}", "--cache-dir", "{cache}"]
CASES += [
    Case("select --cache-dir naming a file", [*TEXT, "--method", "knn", "--budget", "3", "--cache-dir", "{cache}"],
         ("cache",), setup=_cache_is_file),
    Case("select --cache-dir under a file", [*TEXT, "--method", "knn", "--budget", "3", "--cache-dir", "{cache}"],
         ("cache",), setup=_cache_under_file),
    Case("embed --cache-dir naming a file", EMBED, ("cache",), setup=_cache_is_file),
    Case("embed --shard-size 0", [*EMBED, "--shard-size", "0"], ("--shard-size",)),
    Case("embed --shard-size -3", [*EMBED, "--shard-size", "-3"], ("--shard-size",)),
    Case("embed --batch-size -1", [*EMBED, "--batch-size", "-1"], ("--batch-size",)),
    Case("embed --batch-size 0", [*EMBED, "--batch-size", "0"], ("--batch-size",)),
    Case("embed --out naming a directory", [*EMBED, "--out", "{dir}"], ("--out", "directory")),
    Case("embed --out under a file", [*EMBED, "--out", "{afile}/v.npy"], ("afile.txt",)),
    Case("embed --in missing", ["embed", "--in", "{dir}/nope.jsonl", "--cache-dir", "{cache}"], ("nope.jsonl",)),
    Case("embed --in empty", ["embed", "--in", "{empty}", "--cache-dir", "{cache}"], ("empty.jsonl",)),
    Case("embed --engine bogus", [*EMBED, "--engine", "bogus"], ("engine",)),
    Case("data build --track bogus", ["data", "build", "--out", "{out}", "--track", "bogus"], ("track",)),
    Case("data build --seed -1", ["data", "build", "--out", "{out}", "--seed", "-1"], ("seed",)),
    Case("gradients --out naming a directory", ["gradients", "--in", "{pool}", "--cache-dir", "{cache}", "--out",
                                                "{dir}"], ("--out", "directory")),
]


# -- --from-manifest -------------------------------------------------------------------------------------------

def _manifest(f: dict[str, Path], edit: Callable[[dict[str, Any]], Any]) -> None:
    manifest = json.loads((f["prev"] / "manifest.json").read_text())
    edit(manifest)
    f["manifest"].write_text(json.dumps(manifest))


def _edit(edit: Callable[[dict[str, Any]], Any]) -> Callable[[dict[str, Path]], None]:
    return lambda f: _manifest(f, edit)


def _changed_pool(f: dict[str, Path]) -> None:
    """A run of its own whose pool file then changes."""
    pool = write_jsonl(f["case"] / "pool.jsonl", POOL)
    run_dir = f["case"] / "own"
    tasksift.select(pool, f["target"], pool_vectors=f["x"], target_vectors=f["q"], method="knn", budget=4,
                    metric="l2", out=run_dir)
    write_jsonl(pool, [*POOL[:-1], {"text": "edited", "n": 99, "source": "s0"}])
    f["manifest"] = run_dir / "manifest.json"


FROM = ["select", "--from-manifest", "{manifest}", "--out", "{out}"]
CASES += [
    Case("manifest missing", FROM, ("manifest.json",)),
    Case("manifest not JSON", FROM, ("manifest.json", "JSON"), setup=lambda f: f["manifest"].write_text("{oops")),
    Case("manifest a JSON list", FROM, ("call",), setup=lambda f: f["manifest"].write_text("[1, 2]")),
    Case("manifest without call", FROM, ("call",), setup=_edit(lambda m: m.pop("call"))),
    Case("manifest without params", FROM, ("params",), setup=_edit(lambda m: m["call"].pop("params"))),
    Case("manifest params not an object", FROM, ("params",),
         setup=_edit(lambda m: m["call"].__setitem__("params", [1]))),
    Case("manifest seed a text", FROM, ("seed",), setup=_edit(lambda m: m["call"].__setitem__("seed", "0"))),
    Case("manifest unknown method", FROM, ("nope",), setup=_edit(lambda m: m["call"].__setitem__("method", "nope"))),
    Case("manifest parameter not allowed", FROM, ("metric",),
         setup=_edit(lambda m: m["call"]["params"].__setitem__("metric", "bogus"))),
    Case("manifest of an in-memory run", FROM, ("in memory",),
         setup=_edit(lambda m: m["call"].__setitem__("pool", "<in memory>"))),
    Case("manifest input changed", FROM, ("input changed", "--allow-changed-inputs"), setup=_changed_pool),
    Case("manifest input gone", FROM, ("input changed",),
         setup=_edit(lambda m: m["call"].__setitem__("pool", "/nonexistent/pool.jsonl"))),
    Case("manifest inputs not an object", FROM, ("inputs",), setup=_edit(lambda m: m.__setitem__("inputs", "x"))),
    Case("manifest pool path a number", FROM, ("pool",), setup=_edit(lambda m: m["call"].__setitem__("pool", 5))),
]


# -- report ------------------------------------------------------------------------------------------------------

def _run_copy(damage: Callable[[Path], None]) -> Callable[[dict[str, Path]], None]:
    def setup(f: dict[str, Path]) -> None:
        f["run"] = f["case"] / "run"
        shutil.copytree(f["prev"], f["run"])
        damage(f["run"])
    return setup


def _drop_column(run: Path) -> None:
    table = pq.read_table(run / "selection.parquet")
    pq.write_table(table.drop_columns(["row"]), run / "selection.parquet")


def _as_is(run: Path) -> None:
    return None


def _truncate_selection(run: Path) -> None:
    path = run / "selection.parquet"
    path.write_bytes(path.read_bytes()[:-40])


def _row_as_text(run: Path) -> None:
    table = pq.read_table(run / "selection.parquet")
    i = table.schema.get_field_index("row")
    pq.write_table(table.set_column(i, "row", pa.array([str(v) for v in table.column("row").to_pylist()])),
                   run / "selection.parquet")


REPORT = ["report", "{run}"]
CASES += [
    Case("report on a damaged selection.parquet", REPORT, ("selection.parquet", "parquet"),
         setup=_run_copy(lambda r: (r / "selection.parquet").write_bytes(b"garbage" * 20))),
    Case("report on a truncated selection.parquet", REPORT, ("selection.parquet",),
         setup=_run_copy(_truncate_selection)),
    Case("report without selection.parquet", REPORT, ("selection.parquet", "not found"),
         setup=_run_copy(lambda r: (r / "selection.parquet").unlink())),
    Case("report on a selection without 'row'", REPORT, ("row",), setup=_run_copy(_drop_column)),
    Case("report on rows stored as text", REPORT, ("row",), setup=_run_copy(_row_as_text)),
    Case("report on a manifest that is a list", REPORT, ("manifest.json",),
         setup=_run_copy(lambda r: (r / "manifest.json").write_text("[]"))),
    Case("report on a manifest with counts as text", REPORT, ("counts",),
         setup=_run_copy(lambda r: (r / "manifest.json").write_text(json.dumps(
             {**json.loads((r / "manifest.json").read_text()), "counts": "many"})))),
    Case("report on a damaged eval.json", REPORT, ("eval.json",),
         setup=_run_copy(lambda r: (r / "eval.json").write_text("{nope"))),
    Case("report --out naming a directory", [*REPORT, "--out", "{dir}"], ("directory",), setup=_run_copy(_as_is)),
    Case("report --by a missing field", [*REPORT, "--by", "genre"], ("genre",), setup=_run_copy(_as_is)),
    Case("report on a missing run", ["report", "{dir}/nowhere"], ("manifest.json",)),
    # typer's own parsing of option types prints a usage box of several lines
    Case("--seed abc", knn("3", "--seed", "abc"), ("seed",)),
    Case("embed --shard-size abc", [*EMBED, "--shard-size", "abc"], ("--shard-size",)),
]


def _expand(args: list[str], f: dict[str, Path]) -> list[str]:
    """Each ``{name}`` of a file of ``f`` replaced by its path (other braces, as in templates, left alone)."""
    return [re.sub(r"\{(\w+)\}", lambda m: str(f[m.group(1)]) if m.group(1) in f else m.group(0), a) for a in args]


def _tree(path: Path) -> dict[str, bytes]:
    if not path.exists():
        return {}
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in CASES])
def test_bad_input(case: Case, base: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    f = {**base, "case": tmp_path, "out": tmp_path / "out", "cache": tmp_path / "cache",
         "manifest": tmp_path / "manifest.json"}
    monkeypatch.setenv("TASKSIFT_CACHE", str(tmp_path / "env-cache"))
    for name, value in case.env.items():
        monkeypatch.setenv(name, value)
    if case.setup is not None:
        case.setup(f)
    if case.out == "previous":
        shutil.copytree(base["prev"], f["out"])
    out_before = _tree(f["out"])
    caches_before = _tree(f["cache"]) if f["cache"].is_dir() else None, _tree(tmp_path / "env-cache")

    result = runner.invoke(app, _expand(case.args, f))

    lines = result.stderr.strip().splitlines()
    assert result.exit_code == case.code, (result.exit_code, result.stderr, result.exception)
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("tasksift: error: "), lines[0]
    assert "Traceback" not in result.output + result.stderr
    for needle in case.needles:
        assert needle in lines[0], (needle, lines[0])
    if case.out == "absent":
        assert not f["out"].exists()
    elif case.out == "previous":
        assert _tree(f["out"]) == out_before
    leftovers = [p.name for p in f["out"].parent.iterdir() if p.name.startswith(f".{f['out'].name}.")]
    assert leftovers == []
    cache_after = _tree(f["cache"]) if f["cache"].is_dir() else None, _tree(tmp_path / "env-cache")
    assert not any(name.endswith((".npy", ".done")) for tree in cache_after if tree for name in tree)
    assert cache_after[0] == caches_before[0] or caches_before[0] is None


def test_the_table_is_large_enough() -> None:
    assert len(CASES) >= 60


# -- the Python API ----------------------------------------------------------------------------------------------

API_CASES = [
    ("budget nan", {"budget": float("nan")}, "budget"),
    ("budget inf", {"budget": float("inf")}, "budget"),
    ("budget a list", {"budget": [3]}, "budget"),
    ("alpha a list", {"method": "tsds", "alpha": [0.5]}, "alpha"),
    ("seed a text", {"seed": "x"}, "seed"),
    ("seed beyond float range", {"seed": 10**400}, "seed"),
    ("index unknown", {"index": "bogus"}, "index"),
    ("engine unknown", {"engine": "bogus"}, "engine"),
    ("a record holding bytes", {"pool": [{"text": f"t{i}", "blob": b"\0"} for i in range(30)]}, "blob"),
    ("a record that is text", {"pool": ["t"] * 30}, "record 0"),
    ("pool not records", {"pool": 5}, "pool"),
    ("vectors 3-D", {"pool_vectors": np.zeros((30, 2, 2))}, "2-D"),
    ("vectors that overflow", {"pool_vectors": np.full((30, 8), 3e38, dtype=np.float32)}, "norm"),
]


@pytest.mark.parametrize("given, needle", [pytest.param(g, n, id=i) for i, g, n in API_CASES])
def test_python_api_raises_input_error(base: dict[str, Path], tmp_path: Path, given: dict[str, Any],
                                       needle: str) -> None:
    kwargs = {"pool": base["pool"], "target": base["target"], "pool_vectors": np.load(base["x"]),
              "target_vectors": np.load(base["q"]), "method": "knn", "budget": 3, "out": tmp_path / "out", **given}
    with pytest.raises(InputError, match=re.escape(needle)):
        tasksift.select(**kwargs)
    assert not (tmp_path / "out").exists()


def test_allow_changed_inputs_runs_and_records_the_new_hash(base: dict[str, Path], tmp_path: Path) -> None:
    f = {**base, "case": tmp_path}
    _changed_pool(f)
    result = runner.invoke(app, ["select", "--from-manifest", str(f["manifest"]), "--allow-changed-inputs",
                                 "--out", str(tmp_path / "again")])
    assert result.exit_code == 0, result.output
    again = json.loads((tmp_path / "again" / "manifest.json").read_text())
    old = json.loads(f["manifest"].read_text())
    assert again["inputs"]["pool"]["sha256"] != old["inputs"]["pool"]["sha256"]


def test_zero_rows_are_allowed_and_norms_up_to_the_limit_pass(base: dict[str, Path]) -> None:
    """Zero rows are kept (cosine: similarity 0 to everything); a norm of 1e18 is fine, 1e19 overflows."""
    x = np.load(base["x"])
    x[:3] = 0.0
    selection = tasksift.select(pool_vectors=x, target_vectors=np.load(base["q"]), method="knn", budget=30)
    scores = dict(zip(selection.indices.tolist(), selection.scores.tolist(), strict=True))
    assert np.isfinite(selection.scores).all() and [scores[i] for i in range(3)] == [0.0, 0.0, 0.0]
    x[5] = 1e18 / np.sqrt(x.shape[1])
    tasksift.select(pool_vectors=x, target_vectors=np.load(base["q"]), method="knn", budget=3, metric="l2")
    x[5] = 1e19
    with pytest.raises(InputError, match="row 5"):
        tasksift.select(pool_vectors=x, target_vectors=np.load(base["q"]), method="knn", budget=3)
