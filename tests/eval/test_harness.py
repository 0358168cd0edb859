"""``evaluate`` and ``tasksift eval`` on task directories written by hand (not built ones)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from tasksift.cli.app import app as main_app
from tasksift.cli.eval import eval_command
from tasksift.eval import harness
from tasksift.eval.harness import evaluate
from tests.train.helpers import classification_task, instruction_task, retrieval_task

runner = CliRunner()
app = typer.Typer()
app.command("eval")(eval_command)


@app.command("version")
def _version() -> None:
    """A second command, so that ``eval`` is a subcommand as in the real CLI."""


def _select_random(task: Path, out: Path, budget: int) -> Path:
    result = runner.invoke(main_app, ["select", "--pool", str(task.parent / "pool.jsonl"), "--target",
                                      str(task / "target.jsonl"), "--template", "{instruction}\n{input}\n{output}",
                                      "--method", "random", "--budget", str(budget), "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out


def test_eval_command_on_a_hand_written_task(tmp_path: Path, tiny_llama_dir: Path) -> None:
    task = instruction_task(tmp_path)
    run = _select_random(task, tmp_path / "run", 5)
    result = runner.invoke(app, ["eval", "--task", str(task), "--selection", str(run), "--model",
                                 str(tiny_llama_dir), "--seeds", "2", "--max-steps", "3", "--train", "lr=1e-2",
                                 "--param", "batch_size=2"])
    assert result.exit_code == 0, result.output
    assert "accuracy" in result.stdout and "seed 1" in result.stdout
    saved = json.loads((run / "eval.json").read_text())
    assert saved["complete"] and saved["seeds"] == [0, 1] and saved["steps"] == [3, 3]
    assert "eval_file" not in saved and str(run / "eval.json") in result.stdout.replace("\n", "")
    assert saved["selection"]["training_examples"] == 5 and saved["selection"]["method"] == "random"
    assert saved["settings"]["lr"] == 1e-2 and saved["settings"]["batch_size"] == 2
    for run_record in saved["runs"].values():
        assert run_record["train"]["examples_seen"] == 2 + 2 + 1  # one pass of 5 in batches of 2
        assert 0.0 <= run_record["metrics"]["accuracy"] <= 1.0 and run_record["metrics"]["answer_loss"] > 0
    acc = [r["metrics"]["accuracy"] for r in saved["runs"].values()]
    assert saved["mean"]["accuracy"] == pytest.approx(sum(acc) / 2)

    base = runner.invoke(app, ["eval", "--task", str(task), "--selection", "none", "--model", str(tiny_llama_dir)])
    assert base.exit_code == 0, base.output
    none = json.loads((task / "baselines" / "none" / "eval.json").read_text())
    assert none["seeds"] == [0] and none["seed_independent"] and none["runs"]["0"]["train"] is None


@pytest.mark.parametrize("args, message", [
    (["--selection", "nowhere"], "not a selection run directory"),
    (["--selection", "full", "--param", "bogus=1"], "instruction training has no parameter 'bogus'"),
    (["--selection", "full", "--param", "lr=fast"], "lr='fast' is not allowed"),
    (["--selection", "full", "--seeds", "0"], "must be at least 1"),
])
def test_eval_command_bad_input_is_one_line(tmp_path: Path, tiny_llama_dir: Path, args: list[str],
                                            message: str) -> None:
    task = instruction_task(tmp_path)
    result = runner.invoke(app, ["eval", "--task", str(task), "--model", str(tiny_llama_dir), *args])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tasksift: error:") and message in lines[0]


def test_missing_task_json_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    result = runner.invoke(app, ["eval", "--task", str(tmp_path / "empty"), "--selection", "full"])
    assert result.exit_code == 2 and "no task.json" in result.stderr and str(tmp_path / "empty") in result.stderr


def test_an_interrupted_evaluation_resumes_at_the_next_seed(tmp_path: Path, tiny_llama_dir: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    task = instruction_task(tmp_path)
    ran: list[int] = []
    original = harness._Track.run

    def counting(self, seed, data):
        ran.append(seed)
        return original(self, seed, data)

    monkeypatch.setattr(harness._Track, "run", counting)
    kwargs = {"model": tiny_llama_dir, "max_steps": 2, "settings": {"lr": 1e-2}, "progress": False}
    first = evaluate(task, "full", seeds=[0], **kwargs)
    both = evaluate(task, "full", seeds=[0, 1], **kwargs)
    assert ran == [0, 1]  # seed 0 came from eval.json
    assert both["runs"]["0"] == first["runs"]["0"]
    again = evaluate(task, "full", seeds=[0, 1], **kwargs)
    assert ran == [0, 1] and again["mean"] == both["mean"]
    changed = evaluate(task, "full", seeds=[0], **{**kwargs, "settings": {"lr": 2e-2}})
    assert ran == [0, 1, 0] and changed["key"] != both["key"]  # other settings: nothing reused
    fresh = evaluate(task, "full", seeds=[0], resume=False, **{**kwargs, "settings": {"lr": 2e-2}})
    assert ran == [0, 1, 0, 0] and fresh["runs"]["0"]["metrics"] == changed["runs"]["0"]["metrics"]  # seeded


def test_the_same_training_is_scored_once_per_test_set(tmp_path: Path, tiny_llama_dir: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    import tasksift.eval.harness
    from tasksift.train.store import eval_set_key

    task = instruction_task(tmp_path)
    scored: list[int] = []
    original = tasksift.eval.harness.score_options

    def counting(*args, **kwargs):
        scored.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(tasksift.eval.harness, "score_options", counting)
    monkeypatch.setenv("TASKSIFT_CACHE", str(tmp_path / "cache"))  # no training kept by another test
    kwargs = {"model": tiny_llama_dir, "max_steps": 2, "settings": {"lr": 1e-2}, "progress": False}
    first = evaluate(task, "full", seeds=[0], out=tmp_path / "a", **kwargs)
    # the same rows under another selection's folder: the kept training and its kept scores, nothing run again
    second = evaluate(task, "full", seeds=[0], out=tmp_path / "b", **kwargs)
    assert len(scored) == 1 and second["runs"]["0"]["metrics"] == first["runs"]["0"]["metrics"]
    evaluate(task, "none", seeds=[0], out=tmp_path / "c", **kwargs)
    evaluate(task, "none", seeds=[0], out=tmp_path / "d", **kwargs)
    assert len(scored) == 3  # the base model is not a kept training: scored each time
    # another seed is another training
    evaluate(task, "full", seeds=[1], out=tmp_path / "e", **kwargs)
    assert len(scored) == 4
    prompts, options, correct = ["p1", "p2"], [["a", "b"], ["c", "d"]], [0, 1]
    assert eval_set_key(prompts, options, correct) != eval_set_key(prompts, [["a", "b"], ["c", "e"]], correct)
    assert eval_set_key(prompts, options, correct) != eval_set_key(prompts, options, [0, 0])


def test_classification_and_retrieval_evaluate(tmp_path: Path) -> None:
    cls = evaluate(classification_task(tmp_path), "full", seeds=2, max_steps=2, progress=False)
    assert set(cls["runs"]) == {"0", "1"} and cls["steps"] == [2, 2]
    assert 0.0 <= cls["score"] <= 1.0 and cls["std"]["accuracy"] >= 0.0
    ret = evaluate(retrieval_task(tmp_path), "full", seeds=1, max_steps=1, settings={"batch_size": "4"},
                   progress=False)
    assert set(ret["mean"]) == {"ndcg@10", "recall@10", "recall@20", "recall@100"}
    assert all(0.0 <= v <= 1.0 for v in ret["mean"].values())
    assert ret["mean"]["recall@100"] == 1.0  # a 12-document corpus is ranked whole
    assert ret["runs"]["0"]["train"]["examples_seen"] == 4


def test_a_crash_keeps_the_finished_seeds(tmp_path: Path, tiny_llama_dir: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    task = instruction_task(tmp_path)
    original = harness._Track.run

    def crash_on_seed_1(self, seed, data):
        if seed == 1:
            raise KeyboardInterrupt
        return original(self, seed, data)

    monkeypatch.setattr(harness._Track, "run", crash_on_seed_1)
    kwargs = {"model": tiny_llama_dir, "max_steps": 1, "seeds": 3, "progress": False}
    with pytest.raises(KeyboardInterrupt):
        evaluate(task, "full", **kwargs)
    partial = json.loads((task / "baselines" / "full" / "eval.json").read_text())
    assert not partial["complete"] and list(partial["runs"]) == ["0"]
    ran: list[int] = []

    def counting(self, seed, data):
        ran.append(seed)
        return original(self, seed, data)

    monkeypatch.setattr(harness._Track, "run", counting)
    done = evaluate(task, "full", **kwargs)
    assert ran == [1, 2] and done["complete"] and list(done["runs"]) == ["0", "1", "2"]
    assert done["runs"]["0"] == partial["runs"]["0"]


def test_a_grouped_task_is_scored_per_group_and_by_their_mean(tmp_path: Path, tiny_llama_dir: Path) -> None:
    task = instruction_task(tmp_path)
    rows = [json.loads(line) for line in (task / "test.jsonl").read_text().splitlines()]
    (task / "test.jsonl").write_text("".join(json.dumps({**r, "family": "ab"[i < 2]}) + "\n"
                                             for i, r in enumerate(rows)))
    spec = json.loads((task / "task.json").read_text())
    (task / "task.json").write_text(json.dumps({**spec, "group_field": "family", "metric": "macro_accuracy"}))
    res = evaluate(task, "none", seeds=[0], model=tiny_llama_dir, progress=False, out=tmp_path / "none")
    metrics = res["runs"]["0"]["metrics"]
    assert set(metrics) >= {"accuracy", "accuracy/b", "accuracy/a", "macro_accuracy"}
    assert metrics["macro_accuracy"] == pytest.approx((metrics["accuracy/a"] + metrics["accuracy/b"]) / 2)
    # the plain accuracy weighs items: 2 items in b, 4 in a
    assert metrics["accuracy"] == pytest.approx((2 * metrics["accuracy/b"] + 4 * metrics["accuracy/a"]) / 6)
    assert res["score"] == metrics["macro_accuracy"]
