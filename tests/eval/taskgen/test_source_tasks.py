"""Source tasks from real data that ships installed (no download)."""

from __future__ import annotations

from pathlib import Path

from tasksift.eval.taskgen.instruction import build_instruction_track
from tasksift.eval.taskgen.source_tasks import OUTPUT_CHARS, bbc_topic_task, chatterbot_answer_task
from tasksift.eval.taskgen.sources import bbc_news, chatterbot_english
from tests.eval.taskgen.helpers import read_jsonl, tree_bytes


def test_bbc_and_chatterbot_tasks_from_the_installed_packages(tmp_path: Path) -> None:
    articles, pairs = bbc_news(), chatterbot_english()
    bbc, chat = bbc_topic_task(articles), chatterbot_answer_task(pairs)
    assert bbc.labels == ("business", "entertainment", "politics", "sports", "tech")
    summary = build_instruction_track(tmp_path, [bbc, chat], seed=0, n_dups=40,
                                            classification={"bbc_topic": "bbc"})
    for name in ("bbc_topic", "chatterbot_answer"):
        assert (summary["tasks"][name]["target"], summary["tasks"][name]["test"]) == (50, 300)
    test = read_jsonl(tmp_path / "instruction" / "chatterbot_answer" / "test.jsonl")
    assert all(len(r["options"]) == 4 and len(r["output"]) <= OUTPUT_CHARS for r in test)
    assert summary["classification"]["bbc"]["pool"] + 350 <= len(articles)
    first = tree_bytes(tmp_path)
    build_instruction_track(tmp_path / "again", [bbc, chat], seed=0, n_dups=40,
                                  classification={"bbc_topic": "bbc"})
    assert tree_bytes(tmp_path / "again") == {k: v for k, v in first.items() if not k.startswith("again/")}
