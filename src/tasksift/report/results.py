"""The report's evaluation section: the accuracy table of one ``eval.json`` or of a ``tasksift compare`` folder,
and a bar chart of the methods against random and the full pool."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tasksift.report.page import escape, table
from tasksift.report.run import read_comparison, read_eval
from tasksift.report.svg import Bar, bars_svg

#: bar colours: the reported run's method stands out, the references are grey and dark
_COLORS = {"random": "#999999", "full": "#444444", "none": "#cccccc"}
_LABELS = {"full": "full pool", "none": "no finetuning"}
_HIGHLIGHT, _OTHER = "#ff7f0e", "#1f77b4"


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _bar(name: str, mean: Any, std: Any, method: str | None) -> Bar | None:
    m = _number(mean)
    if m is None:
        return None
    color = _HIGHLIGHT if name == method else _COLORS.get(name, _OTHER)
    return Bar(_LABELS.get(name, name), m, _number(std) or 0.0, color)


def _references(bars: dict[str, Bar]) -> dict[str, float]:
    return {_LABELS.get(k, k): bars[k].mean for k in ("random", "full") if k in bars}


def _chart(bars: dict[str, Bar], metric: str) -> str:
    return bars_svg(list(bars.values()), metric, _references(bars)) if bars else ""


def eval_section(path: Path, method: str | None) -> str:
    """One selection's ``eval.json``: its metrics, and its task metric beside the task's baselines (the full
    pool, no finetuning) where the task folder holds them."""
    result = read_eval(path)
    if result is None:
        return ("<p>No evaluation yet: run <code>tasksift eval --task TASK --selection RUN_DIR</code>, or give "
                "<code>--eval DIR</code> or <code>--compare DIR</code>.</p>")
    means, stds = result.get("mean") or {}, result.get("std") or {}
    if not isinstance(means, Mapping) or not isinstance(stds, Mapping):
        means, stds = {}, {}
    n = len(result.get("seeds") or [])
    rows = [[metric, f"{value:.4f}", f"{_number(stds.get(metric)) or 0.0:.4f}", n]
            for metric, value in means.items() if _number(value) is not None]
    if not rows:
        return f"<pre>{escape(json.dumps(result, indent=2)[:4000])}</pre>"
    metric = str(result.get("metric") or rows[0][0])
    bars: dict[str, Bar] = {}
    task_dir = (result.get("task") or {}).get("dir") if isinstance(result.get("task"), Mapping) else None
    for name in ("none", "full"):
        baseline = _baseline(task_dir, name)
        if baseline is not None and (bar := _bar(name, baseline.get("mean", {}).get(metric),
                                                 baseline.get("std", {}).get(metric), None)):
            bars[name] = bar
    label = method or "this selection"
    if (bar := _bar(label, means.get(metric), stds.get(metric), label)) is not None:
        bars[label] = bar
    return table(["metric", "mean", "std", "seeds"], rows) + _chart(bars, metric)


def _baseline(task_dir: Any, name: str) -> dict[str, Any] | None:
    if not isinstance(task_dir, str):
        return None
    try:
        result = read_eval(Path(task_dir) / "baselines" / name / "eval.json")
    except Exception:  # a damaged baseline leaves its bar out; the run's own evaluation is what was asked for
        return None
    if result is None or not isinstance(result.get("mean"), Mapping) or not isinstance(result.get("std", {}), Mapping):
        return None
    return result


def compare_section(folder: Path, method: str | None) -> str:
    """A comparison's table (every metric, mean ± std over seeds, training examples, seconds per seed) and its
    task metric per method against random and the full pool."""
    result = read_comparison(folder)
    rows: dict[str, Any] = result["rows"]
    metric = str(result.get("metric") or "")
    order = [m for m in ("none",) if m in rows] + [m for m in result.get("methods") or [] if m in rows]
    order += [m for m in rows if m not in order and m != "full"] + [m for m in ("full",) if m in rows]
    names: list[str] = []
    for name in order:
        for key in rows[name].get("summary") or {}:
            if key not in names:
                names.append(key)
    names.sort(key=lambda n: (n != metric, n))
    cells, bars = [], {}
    for name in order:
        row = rows[name]
        summary = row.get("summary") if isinstance(row.get("summary"), Mapping) else {}
        stats = [summary.get(n) if isinstance(summary.get(n), Mapping) else {} for n in names]
        examples = [e for e in row.get("training_examples") or [] if _number(e) is not None]
        seconds = [s for s in row.get("seconds") or [] if _number(s) is not None]
        cells.append([_LABELS.get(name, name), len(row.get("seeds") or []),
                      *[f"{s['mean']:.4f} ± {s.get('std', 0.0):.4f}" if _number(s.get("mean")) is not None else ""
                        for s in stats],
                      f"{sum(examples) / len(examples):,.0f}" if examples else "",
                      f"{sum(seconds) / len(seconds):.0f}" if seconds else ""])
        top = summary.get(metric) if isinstance(summary.get(metric), Mapping) else {}
        if (bar := _bar(name, top.get("mean"), top.get("std"), method)) is not None:
            bars[name] = bar
    header = ["method", "seeds", *[f"{n} (mean ± std)" for n in names], "training examples", "seconds / seed"]
    task = result.get("task") if isinstance(result.get("task"), Mapping) else {}
    intro = (f"<p>Comparison on task <b>{escape(task.get('name', '?'))}</b>, budget "
             f"{escape(result.get('budget', '?'))}, metric <b>{escape(metric)}</b>.</p>")
    return intro + table(header, cells) + _chart(bars, metric)
