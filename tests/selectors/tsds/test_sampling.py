"""Drawing the selection from the pool probability."""

from __future__ import annotations

import numpy as np
import pytest

from tasksift.selectors.tsds.selector import TSDSSelector
from tasksift.util.errors import InputError
from tests.selectors.tsds.helpers import clustered


def test_without_replacement_draws_distinct_rows() -> None:
    x, q = clustered(5, n=700, m=10)
    sel = TSDSSelector(40, sampling="without_replacement").fit(x, q).selection_
    assert len(sel) == 40 and np.all(sel.weights == 1)
    support = len(sel.tables["probability"])
    with pytest.raises(InputError, match="non-zero probability"):
        TSDSSelector(support + 1, sampling="without_replacement").fit(x, q)


def test_multinomial_budget_may_exceed_the_pool() -> None:
    x, q = clustered(6, n=60, m=4)
    sel = TSDSSelector(500).fit(x, q).selection_
    assert sel.weights.sum() == 500
