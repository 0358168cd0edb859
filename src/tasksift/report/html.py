"""``tasksift report RUN_DIR``: one self-contained HTML page about a selection (no external files, scripts or
addresses; figures are inline SVG or base64 PNG).

The page holds:

- the selected examples, each one's text beside its nearest target example and the method's reason in words,
  with a search box over the table (``report/examples.py``);
- a 2-D map (PCA, scikit-learn) of a sample of the pool, the target examples and the selection, in the space
  the selector saw (the run's user vectors, or embeddings read back from the feature cache), each point's text
  shown on hover;
- histograms of the selection's scores and weights;
- the selection's composition by the field of the pool records that best explains the pool, or ``--by``
  (``report/composition.py``);
- the evaluation: the run's ``eval.json`` (or ``--eval DIR``), or a comparison (``--compare DIR``), as an
  accuracy table and a bar chart of the methods against random and the full pool (``report/results.py``).

A directory written by ``tasksift retriever train`` (its ``summary.json``) gets a training report instead
(``report/training.py``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from tasksift.features import embed_texts
from tasksift.records import load_records, load_vectors
from tasksift.report.composition import choose_field, composition_section
from tasksift.report.examples import SHOWN, examples_section, run_texts
from tasksift.report.page import document, escape, img, png, pyplot, table
from tasksift.report.results import compare_section, eval_section
from tasksift.report.run import check_rows, page_path, read_run, write_page
from tasksift.report.svg import Layer, map_svg
from tasksift.report.training import write_training_report
from tasksift.selection.manifest import changed_inputs
from tasksift.util.errors import InputError

MAP_SAMPLE = 3000

__all__ = ["write_report", "write_training_report"]


def _vectors(manifest: dict[str, Any], pool_records: Any, target_records: Any, cache_dir: Any
             ) -> tuple[np.ndarray | None, np.ndarray | None]:
    """The run's pool and target vectors: its user vectors, else embeddings (from the cache when present)."""
    call = manifest.get("call", {})
    pv, tv = call.get("pool_vectors"), call.get("target_vectors")
    if pv and tv and pv != "<in memory>" and tv != "<in memory>":
        return np.asarray(load_vectors(pv)), np.asarray(load_vectors(tv, what="target vectors"))
    if pool_records is None:
        return None, None
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
    return load_records(path, text_field=call.get("text_field"), template=call.get("template"),
                        id_field=call.get("id_field"))


def _map(x: np.ndarray, q: np.ndarray | None, rows: np.ndarray, sample: np.ndarray, pool_texts: Any,
         target_texts: Any, seed: int) -> str:
    """The inline SVG map; hovering a point shows its text (pool row, rank or target number and the text)."""
    from sklearn.decomposition import PCA

    pca = PCA(n_components=2, random_state=seed).fit(np.asarray(x[sample], dtype=np.float64))

    def text(texts: Any, i: int) -> str:
        return f": {texts[i]}" if texts is not None else ""

    layers = [Layer(pca.transform(np.asarray(x[sample], dtype=np.float64)),
                    [f"pool row {i}{text(pool_texts, i)}" for i in sample], "#bbbbbb", 2,
                    f"pool (sample of {len(sample):,})"),
              Layer(pca.transform(np.asarray(x[rows], dtype=np.float64)),
                    [f"selected #{k + 1}, pool row {r}{text(pool_texts, r)}" for k, r in enumerate(rows)],
                    "#1f77b4", 3.5, f"selected ({len(rows):,})")]
    if q is not None and q.shape[1] == x.shape[1]:
        layers.append(Layer(pca.transform(np.asarray(q, dtype=np.float64)),
                            [f"target #{i}{text(target_texts, i)}" for i in range(len(q))], "#d62728", 6,
                            f"target ({len(q):,})"))
    return map_svg(layers, "Pool, target and selection (PCA of the selector's vectors); hover a point for its text")


def _histogram(values: np.ndarray, title: str, xlabel: str) -> str:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.hist(values, bins=min(40, max(5, len(np.unique(values)))), color="#1f77b4")
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("examples")
    return png(fig)


def write_report(run_dir: str | Path, out: str | Path | None = None, *, by: str | None = None,
                 cache_dir: str | Path | None = None, eval_dir: str | Path | None = None,
                 compare_dir: str | Path | None = None) -> Path:
    """Write ``report.html`` for the selection in ``run_dir`` (or to ``out``) and return its path; a
    ``tasksift retriever train`` directory gets :func:`write_training_report`.

    ``eval_dir``: a folder holding the ``eval.json`` to show (default: the run's own); ``compare_dir``: a folder
    written by ``tasksift compare`` whose ``comparison.json`` is shown as well."""
    run_dir = Path(run_dir)
    if (run_dir / "summary.json").is_file() and not (run_dir / "selection.parquet").is_file():
        return write_training_report(run_dir, out)
    target = page_path(run_dir, out)
    manifest, frame = read_run(run_dir)
    method = manifest.get("method")
    rows, weights = frame["row"].to_numpy(), frame["weight"].to_numpy()
    changed = changed_inputs(manifest)
    pool_records = None if changed else _records(manifest, "pool")
    target_records = None if changed else _records(manifest, "target")
    if pool_records is not None:
        check_rows(rows, len(pool_records), "pool records", pool_records.path)
    pool_texts = pool_records.texts if pool_records is not None else None
    target_texts = target_records.texts if target_records is not None else None

    x, q = (None, None) if changed else _vectors(manifest, pool_records, target_records, cache_dir)
    sample, map_html = None, "<p>No vectors for this run.</p>"
    if x is not None:
        check_rows(rows, len(x), "pool vectors", manifest.get("call", {}).get("pool_vectors"))
        seed = int(manifest.get("seed", 0))
        sample = np.sort(np.random.default_rng(seed).choice(len(x), size=min(MAP_SAMPLE, len(x)), replace=False))
        map_html = _map(x, q, rows, sample, pool_texts, target_texts, seed)
    shown = ([pool_texts[int(r)] for r in rows[:SHOWN]] if pool_texts is not None
             else run_texts(run_dir, manifest.get("call", {}), SHOWN))
    examples = examples_section(frame, method, shown, target_texts, x, q)
    field, groups, why = choose_field(pool_records, by, x, sample)
    composition = (composition_section(field, groups, rows, weights, why) if field is not None and groups
                   else "<p>The pool records have no label, domain, source or task field.</p>")
    results = eval_section(_eval_path(run_dir, eval_dir), method)
    if compare_dir is not None:
        results += "<h3>Comparison</h3>" + compare_section(Path(compare_dir), method)

    counts, requested = manifest.get("counts", {}), manifest.get("budget", {})
    budget = f"{requested.get('requested', '?')} = {requested.get('count', '?')} examples"
    hists = [img("scores", _histogram(frame["score"].to_numpy(), "Scores of the selected examples", "score")),
             img("weights", _histogram(weights, "Weights (training counts)", "weight"))]
    body = f"""<h1>tasksift selection report</h1>
{_changed_note(changed)}<p>Method <b>{escape(method)}</b>, budget {escape(budget)}, pool {_count(counts.get('pool'))}
examples, target {_count(counts.get('target'))}, selected {len(frame):,} distinct examples (total weight
{weights.sum():g}).</p>
{table(["parameter", "value"], [[k, v] for k, v in manifest.get("params", {}).items()])}
<h2>Selected examples</h2>{examples}
<h2>Map</h2>{map_html}
<h2>Scores and weights</h2><div class="grid">{''.join(hists)}</div>
<h2>Composition</h2>{composition}
<h2>Evaluation</h2>{results}"""
    return write_page(target, document(f"tasksift report: {method}", body))


def _eval_path(run_dir: Path, eval_dir: str | Path | None) -> Path:
    """The ``eval.json`` to show: the run's own (it may not exist yet), or the one ``--eval`` names (it must)."""
    if eval_dir is None:
        return run_dir / "eval.json"
    path = Path(eval_dir) / "eval.json" if Path(eval_dir).is_dir() else Path(eval_dir)
    if not path.is_file():
        raise InputError("not found", path=path, fix="pass --eval a folder holding the eval.json of `tasksift eval`")
    return path


def _count(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) else "?"


def _changed_note(changed: list[str]) -> str:
    if not changed:
        return ""
    return (f"<p><b>The run's inputs changed since it was made</b> ({escape(', '.join(changed))}): the map and "
            "the composition, which read them, are left out.</p>\n")
