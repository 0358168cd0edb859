"""The output every selector produces: the chosen examples in rank order, with weight, score and reason.

One row per chosen example: its row position in the pool, id, weight, score, rank and a reason (a JSON-ready
dict saying why it was chosen). Weights are training counts: how many times to train on the example. For
methods that pick each example at most once they are all 1; for sampling with replacement (TSDS's multinomial
draws) they are the draw counts, so ``weights.sum()`` equals the budget for every method. docs/design.md
("The output contract") lists the files a selection is written as.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from tasksift.selection.exports import Rows, hf_dataset
from tasksift.selection.writers import write_selection_outputs
from tasksift.util.errors import InputError


@dataclass
class Selection:
    """The chosen examples in rank order.

    ``indices`` are row positions in the pool; ``ids`` are the records' stable ids (row numbers as strings
    when the pool came as bare vectors). ``reasons`` holds one JSON-serialisable dict per row. ``tables``
    holds side tables a method wants written next to the selection (for example TSDS's probability of every
    candidate with non-zero mass), each written as ``<name>.parquet``. ``records`` is the pool's record set
    when the pool came as records (``tasksift.select`` sets it), for :meth:`to_hf`.
    """

    indices: np.ndarray
    weights: np.ndarray
    scores: np.ndarray
    reasons: list[dict[str, Any]]
    ids: list[str] | None = None
    manifest: dict[str, Any] = field(default_factory=dict)
    tables: dict[str, pa.Table] = field(default_factory=dict)
    records: Any = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.indices = np.asarray(self.indices, dtype=np.int64)
        self.weights = np.asarray(self.weights, dtype=np.float64)
        self.scores = np.asarray(self.scores, dtype=np.float64)
        n = len(self.indices)
        if not (len(self.weights) == len(self.scores) == len(self.reasons) == n):
            raise ValueError("indices, weights, scores and reasons must have one entry per chosen example")
        if len(np.unique(self.indices)) != n:
            raise ValueError("a Selection lists each chosen example once; repeat it through its weight")
        if self.ids is None:
            self.ids = [str(i) for i in self.indices]

    def __len__(self) -> int:
        return len(self.indices)

    @property
    def ranks(self) -> np.ndarray:
        return np.arange(1, len(self.indices) + 1, dtype=np.int64)

    def to_arrow(self) -> pa.Table:
        reasons = pa.array([json.dumps(r, sort_keys=True) for r in self.reasons], type=pa.string())
        return pa.table({
            "id": pa.array(self.ids, type=pa.string()),
            "row": pa.array(self.indices, type=pa.int64()),
            "weight": pa.array(self.weights, type=pa.float64()),
            "score": pa.array(self.scores, type=pa.float64()),
            "rank": pa.array(self.ranks, type=pa.int64()),
            "reason": reasons,
        })

    def to_pandas(self):  # noqa: ANN201 - pandas is imported lazily
        df = self.to_arrow().to_pandas()
        df["reason"] = self.reasons
        return df

    def to_hf(self, records: Any = None, *, repeat_weights: bool = False) -> Any:
        """The chosen records as a ``datasets.Dataset`` in rank order, with ``_id``, ``_rank`` and ``_weight``
        columns; each example ``weight`` times (``_weight`` 1) with ``repeat_weights``. ``records``: the pool's
        record set, by default the one the selection was made from."""
        records = self.records if records is None else records
        if records is None:
            raise InputError("this selection has no records to fetch (its pool came as vectors)",
                             fix="pass the pool's records: selection.to_hf(tasksift.records.load_records(path))")
        return hf_dataset(Rows.of(self, records, repeat_weights))

    def save(self, out_dir: str | Path, records: Any = None) -> dict[str, Path]:
        """Write ``selection.parquet``, side tables, ``manifest.json`` and, given the pool's records, the
        chosen records (``selected.jsonl``, or ``selected.parquet`` for a parquet pool). Each file is written
        under a temporary name and renamed when complete."""
        return write_selection_outputs(self, Path(out_dir), records)
