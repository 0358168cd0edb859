"""The ids and text views of one input's records, and what is needed to fetch chosen records again."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from tasksift.records.formats import Take


@dataclass(eq=False, repr=False)
class RecordSet:
    """Ids and text views of the records of one file, and what is needed to fetch records again.

    ``id_rule`` is ``"field:<name>"`` or ``"content-sha1"``; ``text_rule`` is ``"field:<name>"`` or
    ``"template:<template>"``; ``file_sha256`` hashes the file's bytes (the ``.arrow`` files of an HF dataset
    directory, the canonical JSON of in-memory records) and goes into the run's manifest. ``_take`` is the
    format's row fetcher and ``_state`` what it needs (line offsets, csv column types, a dataset, the records);
    ``_again`` reads the same records again under other view settings (:meth:`with_view`).

    ``ids`` and ``texts`` are lists, or for a streamed input (:attr:`streamed`, :mod:`.column`) sequences that
    hold no string: ``texts`` a :class:`~tasksift.records.column.TextColumn` that reads each text again from the
    input (slice it, ``texts[start:stop]``, to read many), ``ids`` a compact column (:mod:`.ids`).
    """

    path: Path | None
    format: str
    ids: Sequence[str]
    texts: Sequence[str]
    domains: list[str] | None
    id_rule: str
    text_rule: str
    file_sha256: str
    _take: Take | None = field(default=None)
    _state: Any = field(default=None)
    _again: Callable[..., RecordSet] | None = field(default=None)

    @property
    def n(self) -> int:
        return len(self.ids)

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def streamed(self) -> bool:
        """Whether the texts are read from the input on demand (a large input; see :mod:`.column`)."""
        return not isinstance(self.texts, list)

    def __repr__(self) -> str:
        return f"RecordSet(path={str(self.path)!r}, format={self.format!r}, n={self.n}, id_rule={self.id_rule!r})"

    def with_view(self, **view: Any) -> RecordSet:
        """The same records, same rows, read again with other view settings (``text_field``, ``template``,
        ``text_view``, ``id_field``, ``domain_field``; those not given are kept)."""
        if self._again is None:
            raise ValueError("these records cannot be read again")
        return self._again(**view)

    def with_text(self, *, text_field: str | None = None, template: str | None = None) -> RecordSet:
        """The same records under another text: a field or a template, in place of the view they were read
        with (ids and the rest of the view kept)."""
        return self.with_view(text_field=text_field, template=template, text_view=None, chat_model=None)

    def take(self, indices: Sequence[int] | np.ndarray) -> list[dict[str, Any]]:
        """The original records at ``indices`` (row positions), parsed, in the order of ``indices``.

        jsonl lines are re-read at their saved byte offsets and parsed again, so each record comes back exactly
        as written (same keys, same key order, same values). Each position gets its own dict.
        """
        rows = self._fetch(indices)
        return rows.to_pylist() if isinstance(rows, pa.Table) else rows

    def take_table(self, indices: Sequence[int] | np.ndarray) -> pa.Table:
        """The same rows as :meth:`take`, as an Arrow table (used to write ``selected.parquet``)."""
        rows = self._fetch(indices)
        return rows if isinstance(rows, pa.Table) else pa.Table.from_pylist(rows)

    def _fetch(self, indices: Sequence[int] | np.ndarray) -> list[dict[str, Any]] | pa.Table:
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        if len(idx) and (idx.min() < 0 or idx.max() >= self.n):
            bad = int(idx[(idx < 0) | (idx >= self.n)][0])
            raise IndexError(f"row {bad} is outside the {self.n} records of {self.path}")
        return self._take(self.path, self._state, idx)
