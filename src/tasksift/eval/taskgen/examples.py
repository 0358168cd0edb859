"""The pieces both tracks share: text clean-up, one instruction example, and the held-out split.

Every split is drawn with a numpy Generator seeded from ``seed`` and a purpose's name (:func:`named_rng`), from
inputs in a fixed order, so building twice gives byte-identical files.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

#: target examples (the few a selector may see) and test examples of a task
N_TARGET = 50
N_TEST = 300
#: shortest definition a definition task or retrieval pair keeps
MIN_DEFINITION_CHARS = 20


def named_rng(seed: int, *names: str) -> np.random.Generator:
    """A Generator for one named purpose: the same for the same seed and names, whatever else is built."""
    digest = hashlib.sha256("/".join(names).encode("utf-8")).digest()
    return np.random.default_rng([seed, int.from_bytes(digest[:8], "little")])


def squash(text: str) -> str:
    """Collapse every run of whitespace into one space."""
    return " ".join(text.split())


def norm_key(text: str) -> str:
    """A comparison key: lower case, whitespace collapsed."""
    return squash(text).lower()


def truncate(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` characters at a word boundary, ending in ``...`` when cut."""
    text = text.strip()
    if len(text) <= limit:
        return text
    cut = text[: limit - 3]
    space = cut.rfind(" ")
    if space > limit // 2:
        cut = cut[:space]
    return cut.rstrip(" ,;:") + "..."


@dataclass(frozen=True)
class Example:
    """One instruction example of a source: ``group`` keeps related examples on one side of every split."""

    input: str
    output: str
    group: str


@dataclass
class SourceTask:
    """The examples of one source written as one instruction task.

    ``labels`` lists the answer words of a label task (every test record gets all of them as options); for a
    definition-like task it is ``None`` and a test record's options are its answer and distractors drawn from
    the other test records. ``per_group`` caps the held-out examples taken from one group.
    """

    name: str
    source: str
    instruction: str
    examples: list[Example]
    labels: tuple[str, ...] | None = None
    per_group: int = 1

    def __post_init__(self) -> None:
        self.examples = dedupe(self.examples, labelled=self.labels is not None)


def dedupe(examples: Sequence[Example], *, labelled: bool) -> list[Example]:
    """Drop repeated (input, output) pairs, keeping the first; for a label task also drop every example whose
    input appears with two different labels."""
    if labelled:
        outputs: dict[str, set[str]] = {}
        for ex in examples:
            outputs.setdefault(norm_key(ex.input), set()).add(ex.output)
        examples = [ex for ex in examples if len(outputs[norm_key(ex.input)]) == 1]
    seen: set[tuple[str, str]] = set()
    out = []
    for ex in examples:
        key = (norm_key(ex.input), norm_key(ex.output))
        if key not in seen:
            seen.add(key)
            out.append(ex)
    return out


def split_heldout(groups: Sequence[str], rng: np.random.Generator, n_target: int, n_test: int,
                  per_group: int = 1) -> tuple[list[int], list[int], list[int]]:
    """Indices of the target, test and remaining items.

    Groups are visited in a random order; each gives up to ``per_group`` random members, to the target until
    it holds ``n_target`` items, then to the test set. A visited group gives nothing to the remainder, so the
    three parts share no group. Raises ValueError when the groups cannot fill both sets.
    """
    members: dict[str, list[int]] = {}
    for i, g in enumerate(groups):
        members.setdefault(g, []).append(i)
    keys = sorted(members)
    target: list[int] = []
    test: list[int] = []
    held: set[str] = set()
    for k in rng.permutation(len(keys)):
        if len(test) >= n_test and len(target) >= n_target:
            break
        group = members[keys[int(k)]]
        picked = [group[int(j)] for j in rng.permutation(len(group))[:per_group]]
        dest, room = (target, n_target - len(target)) if len(target) < n_target else (test, n_test - len(test))
        dest.extend(picked[:room])
        held.add(keys[int(k)])
    if len(target) < n_target or len(test) < n_test:
        raise ValueError(f"{len(keys)} groups give only {len(target)} target and {len(test)} test items; "
                         f"{n_target} and {n_test} are needed")
    rest = [i for i, g in enumerate(groups) if g not in held]
    return target, test, rest
