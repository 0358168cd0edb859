"""The pieces both tracks share: the held-out split, de-duplication, truncation."""

from __future__ import annotations

import numpy as np
import pytest

from tasksift.eval.taskgen.examples import Example, dedupe, split_heldout, truncate


def test_split_heldout_sizes_and_disjoint_groups() -> None:
    groups = [f"g{i // 3}" for i in range(90)]  # 30 groups of 3
    target, test, rest = split_heldout(groups, np.random.default_rng(0), 4, 10, per_group=2)
    assert (len(target), len(test)) == (4, 10)
    assert len(set(target + test + rest)) == len(target) + len(test) + len(rest)
    held = {groups[i] for i in target + test}
    assert not held & {groups[i] for i in rest}
    assert not {groups[i] for i in target} & {groups[i] for i in test}
    assert max(sum(groups[i] == g for i in target + test) for g in held) <= 2
    assert set(range(90)) - set(target + test + rest) == {i for i in range(90) if groups[i] in held} - set(
        target + test)


def test_split_heldout_is_seeded() -> None:
    groups = [str(i) for i in range(200)]
    a = split_heldout(groups, np.random.default_rng(3), 5, 20)
    assert a == split_heldout(groups, np.random.default_rng(3), 5, 20)
    assert a != split_heldout(groups, np.random.default_rng(4), 5, 20)


def test_split_heldout_refuses_too_few_groups() -> None:
    with pytest.raises(ValueError, match="only 5 target and 5 test"):
        split_heldout(["a", "b", "c", "d", "e", "f", "g", "h", "i", "j"], np.random.default_rng(0), 5, 6)


def test_dedupe_drops_conflicting_labels_and_repeats() -> None:
    examples = [Example("A  text", "x", "1"), Example("a text", "y", "2"), Example("other", "x", "3"),
                Example("Other", "x", "4")]
    assert dedupe(examples, labelled=True) == [Example("other", "x", "3")]
    assert dedupe(examples, labelled=False) == examples[:3]


def test_truncate_cuts_at_a_word() -> None:
    assert truncate("short", 10) == "short"
    assert truncate("alpha beta gamma delta", 15) == "alpha beta..."
    assert len(truncate("x" * 50, 20)) == 20
