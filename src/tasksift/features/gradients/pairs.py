"""Prompt / response pairs carried through the gradient pipeline as one text each.

The feature cache, the engines, the warm-up and SPICE's proxy trainer all take texts. A pair travels as
``prompt + PAIR_SEPARATOR + response`` (U+001E, the record separator, which no text of a pair may hold), so its
cache key covers both halves and where they meet; a causal-LM proxy splits it again and takes the loss of the
response tokens only, the prompt masked, exactly as :mod:`tasksift.train.lm` trains on the pair. A text
without the separator is a whole text: its loss covers every token.
"""

from __future__ import annotations

from collections.abc import Sequence

from tasksift.util.errors import InputError

PAIR_SEPARATOR = "\x1e"


def join_pairs(prompts: Sequence[str], responses: Sequence[str], *, what: str = "records") -> list[str]:
    """One text per pair; a prompt or response holding U+001E is refused (the split would be ambiguous)."""
    if len(prompts) != len(responses):
        raise ValueError(f"{len(prompts)} prompts but {len(responses)} responses")
    out = []
    for row, (p, r) in enumerate(zip(prompts, responses, strict=True)):
        if PAIR_SEPARATOR in p or PAIR_SEPARATOR in r:
            raise InputError(f"{what}: row {row} holds the control character U+001E, which marks where a prompt "
                             "ends in gradient features", fix="remove U+001E from that record")
        out.append(p + PAIR_SEPARATOR + r)
    return out


def split_pair(text: str) -> tuple[str, str] | None:
    """``(prompt, response)`` of a joined pair, or ``None`` for a whole text."""
    prompt, sep, response = text.partition(PAIR_SEPARATOR)
    return (prompt, response) if sep else None
