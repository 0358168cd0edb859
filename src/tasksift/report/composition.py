"""The selection's composition by a field of the pool records, against the pool's.

Without ``--by`` the field is the candidate (``label``, ``domain``, ``source``, ``task``, ``topic``,
``category``) that best explains the pool: among those with 2 to 50 groups, the one whose groups explain the
largest share of the variance of the pool's vectors (adjusted R², over the map's sample of rows); without
vectors, the first candidate with 2 to 50 groups.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

from tasksift.report.page import escape, img, png, pyplot, table
from tasksift.util.errors import InputError

GROUP_FIELDS = ("label", "domain", "source", "task", "topic", "category")
MAX_GROUPS = 50
_CHUNK = 10_000


def explained(x: np.ndarray, groups: np.ndarray) -> float:
    """Adjusted share of the variance of ``x`` explained by ``groups`` (between-group over total sum of squares,
    corrected for the number of groups)."""
    x = np.asarray(x, dtype=np.float64)
    centred = x - x.mean(axis=0)
    total = float((centred ** 2).sum())
    names, inverse = np.unique(groups, return_inverse=True)
    n, k = len(x), len(names)
    if total <= 0 or k < 2 or n <= k:
        return 0.0
    sums = np.zeros((k, x.shape[1]))
    np.add.at(sums, inverse, centred)
    between = float(((sums ** 2).sum(axis=1) / np.bincount(inverse, minlength=k)).sum())
    r2 = between / total
    return 1.0 - (1.0 - r2) * (n - 1) / (n - k)


def pool_groups(pool_records: Any, fields: list[str]) -> dict[str, list[str]]:
    """Each field's value (as text) for every pool record, read in chunks."""
    groups: dict[str, list[str]] = {f: [] for f in fields}
    for start in range(0, len(pool_records), _CHUNK):
        for record in pool_records.take(np.arange(start, min(start + _CHUNK, len(pool_records)))):
            for f in fields:
                groups[f].append(str(record.get(f)))
    return groups


def choose_field(pool_records: Any, by: str | None, x: np.ndarray | None, sample: np.ndarray | None
                 ) -> tuple[str | None, list[str] | None, str]:
    """The composition's field, every pool record's group and why the field was chosen."""
    if pool_records is None or len(pool_records) == 0:
        return None, None, ""
    first = pool_records.take([0])[0]
    if by is not None:
        if by not in first:
            raise InputError(f"the pool records have no field {by!r}", path=pool_records.path,
                             fix=f"choose --by among: {', '.join(first)}")
        return by, pool_groups(pool_records, [by])[by], "chosen with --by"
    candidates = [f for f in GROUP_FIELDS if f in first]
    if not candidates:
        return None, None, ""
    groups = pool_groups(pool_records, candidates)
    usable = [f for f in candidates if 2 <= len(set(groups[f])) <= MAX_GROUPS] or candidates[:1]
    if x is None or sample is None or len(usable) == 1:
        return usable[0], groups[usable[0]], f"the first of {', '.join(GROUP_FIELDS)} with 2 to {MAX_GROUPS} groups"
    shares = {f: explained(x[sample], np.asarray(groups[f], dtype=object)[sample].astype(str)) for f in usable}
    best = max(usable, key=lambda f: (shares[f], -usable.index(f)))
    why = "; ".join(f"{f} {shares[f]:.0%}" for f in usable)
    return best, groups[best], f"it explains the most variance of the pool's vectors (adjusted R²: {why})"


def composition_section(field: str, groups: list[str], rows: np.ndarray, weights: np.ndarray, why: str) -> str:
    """The composition chart (a PNG image) and the table of shares."""
    pool_counts = Counter(groups)
    chosen: Counter[str] = Counter()
    for row, w in zip(rows, weights, strict=True):
        chosen[groups[row]] += float(w)
    total_pool, total_sel = sum(pool_counts.values()), sum(chosen.values()) or 1.0
    names = sorted(pool_counts, key=lambda g: (-chosen[g], -pool_counts[g], g))[:20]
    shares = [(g, pool_counts[g] / total_pool, chosen[g] / total_sel) for g in names]
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 0.35 * len(names) + 1.2))
    ypos = np.arange(len(names))
    ax.barh(ypos - 0.2, [s[1] for s in shares], height=0.4, color="#bbbbbb", label="pool")
    ax.barh(ypos + 0.2, [s[2] for s in shares], height=0.4, color="#1f77b4", label="selection (by weight)")
    ax.set_yticks(ypos, names)
    ax.invert_yaxis()
    ax.set_xlabel("share")
    ax.set_title(f"Composition by '{field}'")
    ax.legend(loc="lower right", fontsize=8)
    return (f"<p>By <b>{escape(field)}</b>: {escape(why)}.</p>{img('composition', png(fig))}"
            + table([field, "pool share", "selection share"], [[g, f"{p:.1%}", f"{s:.1%}"] for g, p, s in shares]))
