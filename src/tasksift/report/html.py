"""``tasksift report RUN_DIR``: one self-contained HTML page about a selection.

The page holds (images embedded as base64 PNG, no external files or scripts):

- a 2-D map (PCA, scikit-learn) of a sample of the pool, the target examples and the selection, in the
  space the selector saw (the run's user vectors or embeddings, read back from the feature cache);
- histograms of the selection's scores and weights;
- the selection's composition by a field of the pool records (``source``, ``task`` or ``label``, or ``--by``),
  against the pool's composition;
- the evaluation table when the run directory holds an ``eval.json``.

A directory written by ``tasksift retriever train`` (its ``summary.json``) gets a training report instead: the
curves of NDCG@10 and Recall@20 against training steps for each pruning (mean over seeds, with a band of one
standard deviation), the base model as step 0, and the results table.

A small inline script marks ``<body data-images-ok="N">`` once the browser has decoded N images, so a headless
browser test can check that the page rendered with its images.
"""

from __future__ import annotations

import base64
import html
import io
import json
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from tasksift.report.run import check_rows, page_path, read_eval, read_run, write_page
from tasksift.selection.manifest import changed_inputs
from tasksift.util.errors import InputError

MAP_SAMPLE = 5000
GROUP_FIELDS = ("source", "task", "label", "topic", "category")


def _png(fig: Any) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _vectors(manifest: dict[str, Any], pool_records: Any, target_records: Any, cache_dir: Any
             ) -> tuple[np.ndarray | None, np.ndarray | None]:
    """The run's pool and target vectors: its user vectors, else embeddings (from the cache when present)."""
    call = manifest.get("call", {})
    pv, tv = call.get("pool_vectors"), call.get("target_vectors")
    if pv and tv and pv != "<in memory>" and tv != "<in memory>":
        from tasksift.records import load_vectors

        return np.asarray(load_vectors(pv)), np.asarray(load_vectors(tv, what="target vectors"))
    if pool_records is None:
        return None, None
    from tasksift.features import embed_texts

    model = call.get("model")
    x = embed_texts(pool_records.texts, model=model, cache_dir=cache_dir, progress=False).matrix()
    q = (embed_texts(target_records.texts, model=model, cache_dir=cache_dir, progress=False).matrix()
         if target_records is not None else None)
    return x, q


def _records(manifest: dict[str, Any], which: str) -> Any:
    call = manifest.get("call", {})
    path = call.get(which)
    if not path or path == "<in memory>" or not Path(path).exists():
        return None
    from tasksift.records import load_records

    return load_records(path, text_field=call.get("text_field"), template=call.get("template"),
                        id_field=call.get("id_field"))


def _map_figure(x: np.ndarray, q: np.ndarray | None, rows: np.ndarray, seed: int = 0) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.decomposition import PCA

    rng = np.random.default_rng(seed)
    sample = np.sort(rng.choice(len(x), size=min(MAP_SAMPLE, len(x)), replace=False))
    pca = PCA(n_components=2, random_state=seed).fit(np.asarray(x[sample], dtype=np.float64))
    fig, ax = plt.subplots(figsize=(7, 5.5))
    pool_2d = pca.transform(np.asarray(x[sample], dtype=np.float64))
    ax.scatter(pool_2d[:, 0], pool_2d[:, 1], s=4, c="#bbbbbb", label=f"pool (sample of {len(sample):,})")
    sel_2d = pca.transform(np.asarray(x[rows], dtype=np.float64))
    ax.scatter(sel_2d[:, 0], sel_2d[:, 1], s=10, c="#1f77b4", label=f"selected ({len(rows):,})")
    if q is not None:
        q_2d = pca.transform(np.asarray(q, dtype=np.float64))
        ax.scatter(q_2d[:, 0], q_2d[:, 1], s=60, marker="*", c="#d62728", label=f"target ({len(q):,})")
    ax.set_xlabel("PC 1")
    ax.set_ylabel("PC 2")
    ax.legend(loc="best", fontsize=8)
    ax.set_title("Pool, target and selection (PCA of the selector's vectors)")
    return _png(fig)


def _histogram(values: np.ndarray, title: str, xlabel: str) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.hist(values, bins=min(40, max(5, len(np.unique(values)))), color="#1f77b4")
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("examples")
    return _png(fig)


def _composition(pool_groups: list[str], selected_rows: np.ndarray, weights: np.ndarray, field: str
                 ) -> tuple[str, list[tuple[str, float, float]]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pool_counts = Counter(pool_groups)
    chosen: Counter[str] = Counter()
    for row, w in zip(selected_rows, weights, strict=True):
        chosen[pool_groups[row]] += float(w)
    total_pool, total_sel = sum(pool_counts.values()), sum(chosen.values())
    groups = sorted(pool_counts, key=lambda g: (-chosen[g], -pool_counts[g], g))[:20]
    rows = [(g, pool_counts[g] / total_pool, chosen[g] / total_sel) for g in groups]
    fig, ax = plt.subplots(figsize=(7, 0.35 * len(groups) + 1.2))
    ypos = np.arange(len(groups))
    ax.barh(ypos - 0.2, [r[1] for r in rows], height=0.4, color="#bbbbbb", label="pool")
    ax.barh(ypos + 0.2, [r[2] for r in rows], height=0.4, color="#1f77b4", label="selection (by weight)")
    ax.set_yticks(ypos, groups)
    ax.invert_yaxis()
    ax.set_xlabel("share")
    ax.set_title(f"Composition by '{field}'")
    ax.legend(loc="lower right", fontsize=8)
    return _png(fig), rows


def _group_field(pool_records: Any, by: str | None) -> tuple[str | None, list[str] | None]:
    if pool_records is None:
        return None, None
    first = pool_records.take([0])[0]
    field = by or next((f for f in GROUP_FIELDS if f in first), None)
    if field is None:
        return None, None
    if field not in first:
        raise InputError(f"the pool records have no field {field!r}", path=pool_records.path,
                         fix=f"choose --by among: {', '.join(first)}")
    groups: list[str] = []
    for start in range(0, len(pool_records), 10_000):
        chunk = pool_records.take(np.arange(start, min(start + 10_000, len(pool_records))))
        groups.extend(str(r.get(field)) for r in chunk)
    return field, groups


def _table(header: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _eval_section(run_dir: Path) -> str:
    result = read_eval(run_dir / "eval.json")
    if result is None:
        return "<p>No evaluation yet: run <code>tasksift eval --task TASK --selection RUN_DIR</code>.</p>"
    means, stds = result.get("mean") or {}, result.get("std") or {}
    n = len(result.get("seeds") or [])
    rows = [[metric, f"{value:.4f}", f"{stds.get(metric, float('nan')):.4f}", n]
            for metric, value in means.items() if isinstance(value, int | float)]
    if not rows:
        return f"<pre>{html.escape(json.dumps(result, indent=2)[:4000])}</pre>"
    return _table(["metric", "mean", "std", "seeds"], rows)


_STYLE = """
body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}
th{background:#f3f3f3}img{max-width:100%;border:1px solid #eee;margin:.5em 0}.grid{display:flex;gap:1em;
flex-wrap:wrap}code{background:#f5f5f5;padding:1px 4px}
"""
_SCRIPT = """
window.addEventListener('load', function () {
  var imgs = Array.prototype.slice.call(document.images);
  var ok = imgs.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length;
  document.body.setAttribute('data-images-ok', String(ok));
  document.body.setAttribute('data-images-total', String(imgs.length));
});
"""


def _curve_figure(summary: dict[str, Any], metric: str) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = {"none": "no pruning", "static": "static (OPERA-SP)", "dynamic": "dynamic (OPERA-DP)",
              "infobatch": "InfoBatch"}
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for name, points in summary.get("curves", {}).items():
        steps = np.array([p["step"] for p in points], dtype=float)
        mean = np.array([p["metrics"][metric] for p in points])
        std = np.array([p.get("std", {}).get(metric, 0.0) for p in points])
        ax.plot(steps, mean, marker="o", ms=3, label=labels.get(name, name))
        ax.fill_between(steps, mean - std, mean + std, alpha=0.15)
    base = summary.get("rows", {}).get("base", {}).get("mean", {}).get(metric)
    if base is not None:
        ax.axhline(base, color="#888888", ls="--", lw=1, label="base model")
    ax.set_xlabel("training steps")
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} on the test queries against training steps (mean over seeds, ±1 std)")
    ax.legend(loc="best", fontsize=8)
    return _png(fig)


def write_training_report(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """Write ``report.html`` for a ``tasksift retriever train`` directory: quality-vs-steps curves and the table."""
    run_dir = Path(run_dir)
    target = page_path(run_dir, out)
    path = run_dir / "summary.json"
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise InputError(f"cannot read the training summary ({err})", path=path,
                         fix="pass a directory written by `tasksift retriever train --out`") from None
    metrics = ("ndcg@10", "recall@20", "recall@10", "recall@100")
    rows = [[name, row.get("seeds") or "-",
             *[(f"{row['mean'][m]:.4f}" + (f" ± {row['std'][m]:.4f}" if m in row.get("std", {}) else ""))
               if m in row.get("mean", {}) else "" for m in metrics]]
            for name, row in summary.get("rows", {}).items()]
    reach = summary.get("dynamic_reaches_none") or {}
    reach_text = ""
    if reach:
        got = reach.get("dynamic_mean_curve")
        reach_text = (f"<p>No pruning ends at NDCG@10 {reach['target_ndcg@10']:.4f} after {reach['steps_of_none']} "
                      "steps; dynamic pruning's mean curve reaches it "
                      + (f"at step {got}." if got is not None else "at no evaluation point.") + "</p>")
    sizes = summary.get("sizes", {})
    images = [f'<img alt="{m}" src="data:image/png;base64,{_curve_figure(summary, m)}">'
              for m in ("ndcg@10", "recall@20")]
    task = summary.get("task", {})
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>tasksift retriever training</title>
<style>{_STYLE}</style></head><body>
<h1>Retriever finetuning with pruning: {html.escape(str(task.get('name', '')))}</h1>
<p>{summary.get('steps', '?')} steps per run; {html.escape(json.dumps(sizes))}.</p>
<h2>Quality against training steps</h2><div class="grid">{''.join(images)}</div>
<h2>Final metrics (mean ± std over seeds)</h2>{_table(["training", "seeds", *metrics], rows)}{reach_text}
<h2>Settings</h2>{_table(["setting", "value"], [[k, v] for k, v in summary.get("settings", {}).items()])}
<script>{_SCRIPT}</script></body></html>"""
    return write_page(target, page)


def write_report(run_dir: str | Path, out: str | Path | None = None, *, by: str | None = None,
                 cache_dir: str | Path | None = None) -> Path:
    """Write ``report.html`` for the selection in ``run_dir`` (or to ``out``) and return its path; a
    ``tasksift retriever train`` directory gets :func:`write_training_report`."""
    run_dir = Path(run_dir)
    if (run_dir / "summary.json").is_file() and not (run_dir / "selection.parquet").is_file():
        return write_training_report(run_dir, out)
    target = page_path(run_dir, out)
    manifest, table = read_run(run_dir)
    rows = table["row"].to_numpy()
    weights = table["weight"].to_numpy()
    scores = table["score"].to_numpy()
    changed = changed_inputs(manifest)
    pool_records = None if changed else _records(manifest, "pool")
    target_records = None if changed else _records(manifest, "target")
    if pool_records is not None:
        check_rows(rows, len(pool_records), "pool records", pool_records.path)

    images: list[tuple[str, str]] = []
    x, q = (None, None) if changed else _vectors(manifest, pool_records, target_records, cache_dir)
    if x is not None:
        check_rows(rows, len(x), "pool vectors", manifest.get("call", {}).get("pool_vectors"))
        images.append(("map", _map_figure(x, q, rows, seed=int(manifest.get("seed", 0)))))
    images.append(("scores", _histogram(scores, "Scores of the selected examples", "score")))
    images.append(("weights", _histogram(weights, "Weights (training counts)", "weight")))
    field, groups = _group_field(pool_records, by)
    composition = ""
    if field is not None and groups is not None:
        png, comp_rows = _composition(groups, rows, weights, field)
        images.append(("composition", png))
        composition = _table([field, "pool share", "selection share"],
                             [[g, f"{p:.1%}", f"{s:.1%}"] for g, p, s in comp_rows])

    counts = manifest.get("counts", {})
    requested = manifest.get("budget", {})
    budget = f"{requested.get('requested', '?')} = {requested.get('count', '?')} examples"
    params = manifest.get("params", {})
    top = [[int(r["rank"]), r["id"], f"{r['weight']:g}", f"{r['score']:.4g}", r["reason"]]
           for r in table.head(20).to_dict("records")]
    img = {name: f'<img alt="{name}" src="data:image/png;base64,{data}">' for name, data in images}
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>tasksift report: {
        html.escape(str(manifest.get('method')))}</title><style>{_STYLE}</style></head><body>
<h1>tasksift selection report</h1>
{_changed_note(changed)}<p>Method <b>{html.escape(str(manifest.get('method')))}</b>, budget {html.escape(budget)},
pool {_count(counts.get('pool'))} examples, target {_count(counts.get('target'))}, selected {len(table):,}
distinct examples (total weight {weights.sum():g}).</p>
{_table(["parameter", "value"], [[k, v] for k, v in params.items()])}
<h2>Map</h2>{img.get('map', '<p>No vectors for this run.</p>')}
<h2>Scores and weights</h2><div class="grid">{img['scores']}{img['weights']}</div>
<h2>Composition</h2>{img.get('composition', '<p>The pool records have no source, task or label field.</p>')}
{composition}
<h2>Evaluation</h2>{_eval_section(run_dir)}
<h2>Top of the selection</h2>{_table(["rank", "id", "weight", "score", "reason"], top)}
<script>{_SCRIPT}</script></body></html>"""
    return write_page(target, page)


def _count(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) else "?"


def _changed_note(changed: list[str]) -> str:
    if not changed:
        return ""
    return (f"<p><b>The run's inputs changed since it was made</b> ({html.escape(', '.join(changed))}): the map and "
            "the composition, which read them, are left out.</p>\n")
