"""The table of selected examples: each one's text (trimmed) beside its nearest target example and the method's
reason in words, with a search box over the rows.

The nearest target example is the reason's ``target`` row where the method records one (knn, tsds, less), else
the target example most similar (cosine) to it in the vectors the report draws its map with. The texts come
from the pool and target records; when the pool file changed since the run, from the run's own
``selected.jsonl`` / ``selected.parquet``, which hold the chosen records as they were.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from tasksift.report.page import escape, search_box, table, trim
from tasksift.report.reasons import describe

SHOWN = 300
TEXT_CHARS = 300


def _reason(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _nearest(reasons: list[Any], rows: np.ndarray, x: np.ndarray | None, q: np.ndarray | None,
             n_targets: int | None) -> list[int | None]:
    """Each shown example's nearest target row: the reason's ``target``, else by cosine in ``x`` / ``q``."""
    out: list[int | None] = []
    for reason in reasons:
        t = reason.get("target") if isinstance(reason, Mapping) else None
        ok = isinstance(t, int) and not isinstance(t, bool) and t >= 0 and (n_targets is None or t < n_targets)
        out.append(int(t) if ok else None)
    missing = [i for i, t in enumerate(out) if t is None]
    if missing and x is not None and q is not None and len(q) and x.shape[1] == q.shape[1]:
        a = np.asarray(x[rows[missing]], dtype=np.float64)
        b = np.asarray(q, dtype=np.float64)
        a /= np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
        b /= np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
        for i, t in zip(missing, np.argmax(a @ b.T, axis=1), strict=True):
            out[i] = int(t)
    return out


def _record_text(record: Mapping[str, Any], call: Mapping[str, Any]) -> str:
    """A chosen record's text by the run's text rule (field or template), else its ``text`` field, else its JSON."""
    fields = {k: v for k, v in record.items() if not str(k).startswith("_")}
    if call.get("text_field") in fields:
        return str(fields[call["text_field"]])
    if call.get("template"):
        try:
            return str(call["template"]).replace("\\n", "\n").replace("\\t", "\t").format(**fields)
        except (KeyError, IndexError, ValueError, AttributeError):
            pass
    return str(fields["text"]) if "text" in fields else json.dumps(fields, default=str)


def run_texts(run_dir: Path, call: Mapping[str, Any], n: int) -> list[str] | None:
    """Texts of the first ``n`` chosen records (rank order) from the run's ``selected`` file, ``None`` when
    it is missing or unreadable."""
    try:
        if (run_dir / "selected.jsonl").is_file():
            with open(run_dir / "selected.jsonl", encoding="utf-8") as fh:
                records = [json.loads(line) for _, line in zip(range(n), fh, strict=False)]
        elif (run_dir / "selected.parquet").is_file():
            records = pq.read_table(run_dir / "selected.parquet").slice(0, n).to_pylist()
        else:
            return None
    except (OSError, ValueError, pa.ArrowException):
        return None
    return [_record_text(r, call) if isinstance(r, Mapping) else str(r) for r in records]


def examples_section(frame: Any, method: str | None, texts: Sequence[str] | None, target_texts: Sequence[str] | None,
                     x: np.ndarray | None, q: np.ndarray | None) -> str:
    """The searchable table of the first :data:`SHOWN` selected examples (``frame``: the selection in rank
    order; ``texts``: the texts of those examples, in the same order)."""
    head = frame.head(SHOWN)
    rows = head["row"].to_numpy()
    reasons = [_reason(r) for r in head["reason"]]
    n_targets = len(target_texts) if target_texts is not None else (len(q) if q is not None else None)
    nearest = _nearest(reasons, rows, x, q, n_targets)
    cells = []
    for i, (rec, reason, t) in enumerate(zip(head.to_dict("records"), reasons, nearest, strict=True)):
        text = texts[i] if texts is not None and i < len(texts) else None
        chosen = (f'<div class="text">{escape(trim(text, TEXT_CHARS))}</div>' if text is not None else "")
        chosen += f'\n<div class="muted">{escape(rec["id"])} · pool row {int(rec["row"]):,}</div>'
        if t is None:
            target = '<span class="muted">—</span>'
        else:
            words = escape(trim(target_texts[t], TEXT_CHARS)) if target_texts is not None else ""
            target = f'<div class="text">{words}</div>\n<div class="muted">target #{t}</div>'
        cells.append([int(rec["rank"]), chosen, target, f"{rec['weight']:g}", f"{rec['score']:.4g}",
                      f'<div class="why">{escape(describe(method, reason))}</div>'])
    more = (f"<p class='muted'>The first {len(head):,} of {len(frame):,} selected examples, by rank.</p>"
            if len(frame) > len(head) else "")
    return (search_box("examples", len(head), "search the selected examples")
            + table(["rank", "selected example", "nearest target example", "weight", "score", "why"], cells,
                    table_id="examples", raw=True) + more)
