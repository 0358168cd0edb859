"""`tasksift compare` on a hand-written classification task: rows, resume, table."""

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tasksift.cli.app import app
from tasksift.eval.compare import _run_of, compare, markdown_table
from tasksift.util.errors import InputError
from tests.train.helpers import classification_task as _classification_task
from tests.train.helpers import write_jsonl


def classification_task(root: Path) -> Path:
    task = _classification_task(root)
    write_jsonl(task / "target.jsonl", [{"text": "a wonderful, lovely film", "label": "pos"}])
    return task


def test_compare_writes_rows_for_methods_none_and_full_and_resumes(tmp_path: Path, monkeypatch) -> None:
    task = classification_task(tmp_path)
    out = tmp_path / "cmp"
    result = compare(task, ["random", "knn"], "50%", seeds=2, out=out, max_steps=2, progress=False)
    rows = result["rows"]
    assert set(rows) == {"none", "random", "knn", "full"}
    assert rows["random"]["seeds"] == [0, 1] and rows["full"]["seeds"] == [0]
    assert all(0.0 <= r["summary"]["accuracy"]["mean"] <= 1.0 for r in rows.values())
    for method in ("random", "knn"):
        for seed in (0, 1):
            assert (out / method / f"seed-{seed}" / "eval.json").is_file()
    saved = json.loads((out / "comparison.json").read_text())
    assert saved["rows"].keys() == rows.keys()
    table = (out / "comparison.md").read_text()
    assert markdown_table(result).splitlines()[2].startswith("| none |") and "| full |" in table

    # A second run finds every selection and evaluation done: nothing is selected or trained again.
    import tasksift.eval.compare

    def no_select(*args, **kwargs):
        raise AssertionError("selection was recomputed")

    monkeypatch.setattr(tasksift.eval.compare, "select", no_select)
    again = compare(task, ["random", "knn"], "50%", seeds=2, out=out, max_steps=2, progress=False)
    assert again["rows"]["knn"]["summary"] == rows["knn"]["summary"]
    assert markdown_table(again) == markdown_table(result)


def test_compare_adds_methods_to_an_earlier_comparison_with_the_same_settings(tmp_path: Path) -> None:
    task = classification_task(tmp_path)
    out = tmp_path / "cmp"
    first = compare(task, ["random"], "50%", seeds=1, out=out, max_steps=2, include_full=False, progress=False)
    later = compare(task, ["knn"], "50%", seeds=1, out=out, max_steps=2, include_full=False, progress=False)
    assert later["methods"] == ["random", "knn"]
    assert set(later["rows"]) == {"none", "random", "knn"}
    assert later["rows"]["random"] == first["rows"]["random"]
    saved = json.loads((out / "comparison.json").read_text())
    assert saved["methods"] == ["random", "knn"] and set(saved["rows"]) == {"none", "random", "knn"}
    assert "| random |" in (out / "comparison.md").read_text()

    # other training settings: the earlier rows are not comparable, so they are dropped
    other = compare(task, ["knn"], "50%", seeds=1, out=out, max_steps=3, include_full=False, progress=False)
    assert other["methods"] == ["knn"] and set(other["rows"]) == {"none", "knn"}


def test_row_seconds_are_the_training_cost_not_the_call_time() -> None:
    # A kept training loaded from the store takes a second to load; its row shows what training it cost.
    loaded = {"selection": {"training_examples": 10},
              "runs": {"0": {"metrics": {"accuracy": 0.5}, "train_seconds": 0.9, "eval_seconds": 230.0,
                             "seconds": 230.9, "train": {"steps": 4, "seconds": 19000.5}}}}
    assert _run_of(loaded, 0)["seconds"] == pytest.approx(19230.5)
    # No finetuning: the call's own seconds (the scoring).
    base = {"selection": {}, "runs": {"0": {"metrics": {"accuracy": 0.5}, "train": None, "eval_seconds": 12.0,
                                            "seconds": 12.5}}}
    assert _run_of(base, 0)["seconds"] == 12.5


def test_compare_rejects_unknown_method_and_stray_params(tmp_path: Path) -> None:
    task = classification_task(tmp_path)
    with pytest.raises(InputError, match="unknown method"):
        compare(task, ["nope"], "10%", progress=False)
    with pytest.raises(InputError, match="not among the compared methods"):
        compare(task, ["random"], "10%", params={"knn": {"metric": "l2"}}, progress=False)


def test_compare_cli_param_needs_method_prefix(tmp_path: Path) -> None:
    task = classification_task(tmp_path)
    result = CliRunner().invoke(app, ["compare", "--task", str(task), "--methods", "random", "--param", "alpha=1"])
    assert result.exit_code == 2
    assert "method.key=value" in result.stderr


def test_compare_cli_train_settings_reach_every_row(tmp_path: Path) -> None:
    task = classification_task(tmp_path)
    out = tmp_path / "cmp"
    result = CliRunner().invoke(app, ["compare", "--task", str(task), "--methods", "random", "--budget", "50%",
                                      "--seeds", "1", "--no-full", "--max-steps", "1", "--out", str(out),
                                      "--train", "max_length=24", "--train", "batch_size=2"])
    assert result.exit_code == 0, result.output
    saved = json.loads((out / "comparison.json").read_text())
    assert saved["training"]["settings"] == {"max_length": "24", "batch_size": "2"}
    run = json.loads((out / "random" / "seed-0" / "eval.json").read_text())
    assert run["settings"]["max_length"] == 24 and run["settings"]["batch_size"] == 2
    bad = CliRunner().invoke(app, ["compare", "--task", str(task), "--methods", "random", "--train", "depth=3"])
    assert bad.exit_code == 2 and "classification training has no parameter 'depth'" in bad.stderr


def test_compare_refuses_training_time_pruning_on_a_task_that_is_not_retrieval(tmp_path: Path) -> None:
    task = classification_task(tmp_path)
    with pytest.raises(InputError, match="prunes a retriever's training"):
        compare(task, ["opera-dp"], "10%", progress=False)


@pytest.mark.slow
def test_compare_retrieval_rows_for_opera_and_infobatch(tmp_path: Path) -> None:
    from tests.train.helpers import retrieval_task

    task = retrieval_task(tmp_path)
    write_jsonl(task / "target.jsonl", [{"query_id": "q0", "query": "what is a cpu", "doc_id": "d0",
                                         "document": "the processor"}])
    out = tmp_path / "cmp"
    result = compare(task, ["opera-sp", "opera-dp", "infobatch"], "50%", seeds=1, out=out, max_steps=2,
                     settings={"batch_size": 4}, include_full=False, progress=False)
    assert set(result["rows"]) == {"none", "opera-sp", "opera-dp", "infobatch"}
    assert all("ndcg@10" in r["summary"] for r in result["rows"].values())
    dp = json.loads((out / "opera-dp" / "seed-0" / "eval.json").read_text())
    assert dp["settings"]["pruning"] == "dynamic" and dp["selection"]["kind"] == "full"
    sp = json.loads((out / "opera-sp" / "seed-0" / "manifest.json").read_text())
    assert sp["opera"]["kept_pairs"] == 5


def test_reads_seed_is_false_only_for_the_deterministic_greedy() -> None:
    from tasksift.eval.compare import _reads_seed

    assert _reads_seed("random", {}) is True
    assert _reads_seed("tsds", {}) is True
    assert _reads_seed("fishersft", {}) is False
    assert _reads_seed("less", {"domains": ["a"]}) is False
    assert _reads_seed("spice", {}) is False
    assert _reads_seed("spice", {"window": 128, "model": "minilm"}) is True


def test_compare_trains_a_seed_free_selection_at_every_seed_without_selecting_again(tmp_path: Path,
                                                                                    monkeypatch) -> None:
    import tasksift.eval.compare as compare_module

    task = classification_task(tmp_path / "task")
    out = tmp_path / "cmp"
    calls: list[int] = []
    real_select = compare_module.select

    def counting_select(*args, **kwargs):
        calls.append(kwargs["seed"])
        return real_select(*args, **kwargs)

    monkeypatch.setattr(compare_module, "select", counting_select)
    params = {"fishersft": {"model": "minilm"}}
    result = compare(task, ["fishersft"], "50%", seeds=3, out=out, max_steps=2, include_full=False,
                     include_none=False, params=params, progress=False)
    assert calls == [0]
    first = (out / "fishersft" / "seed-0" / "selection.parquet").read_bytes()
    for seed in (1, 2):
        run = out / "fishersft" / f"seed-{seed}"
        assert (run / "selection.parquet").read_bytes() == first
        manifest = json.loads((run / "manifest.json").read_text(encoding="utf-8"))
        assert manifest["call"]["seed"] == seed and manifest["params"]["seed"] == seed
        assert manifest["reused_from"]["seed"] == 0
        assert (run / "eval.json").is_file()
    assert result["rows"]["fishersft"]["seeds"] == [0, 1, 2]
    # a seeded selector selects at every seed
    calls.clear()
    compare(task, ["random"], "50%", seeds=2, out=out, max_steps=2, include_full=False, include_none=False,
            progress=False)
    assert calls == [0, 1]
