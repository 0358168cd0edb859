"""Domain labels of records (or of target examples): the domain names and each row's domain number."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np

from tasksift.util.errors import InputError

#: the one domain of rows without labels
ALL = "all"


def domain_index(labels: Sequence[Any] | str | None, n: int, *, who: str, sort: bool = False,
                 none_is_missing: bool = False) -> tuple[list[str], np.ndarray]:
    """``(domain names, the domain number of each of the n rows)``; no labels mean one domain, ``all``.

    A string (as ``--param domains=...`` gives it) is read as a JSON list, else as comma-separated labels.
    Names come in first-seen order, or sorted with ``sort``. With ``none_is_missing`` a ``None`` label is a
    missing one: it gets the name ``""``, and labels that are all missing mean one domain; without it ``None``
    is the label ``"None"``. There must be one label per row; errors start with ``who``.
    """
    if isinstance(labels, str):
        labels = _parse_list(labels, who)
    if labels is None or (none_is_missing and all(v is None for v in labels)):
        return [ALL], np.zeros(n, dtype=np.int64)
    names_of = ["" if none_is_missing and v is None else str(v) for v in labels]
    if len(names_of) != n:
        raise InputError(f"{who}: {len(names_of)} domain labels for {n} target examples",
                         fix="give one domain label per target example")
    names = sorted(set(names_of)) if sort else list(dict.fromkeys(names_of))
    number = {name: i for i, name in enumerate(names)}
    return names, np.array([number[name] for name in names_of], dtype=np.int64)


def _parse_list(text: str, who: str) -> list[Any]:
    """A JSON list, else comma-separated labels."""
    text = text.strip()
    try:
        parsed = json.loads(text)
    except ValueError:
        parsed = [part.strip() for part in text.split(",")]
    if not isinstance(parsed, list):
        raise InputError(f"{who}: domains must be a list with one label per target example",
                         fix='write it like domains=["math","code","math"] or domains=math,code,math')
    return parsed
