"""``tasksift demo``: the whole path on real text that ships with the package's dependencies.

Pool: BBC News articles of five topics (headline and lead) and 800 chatterbot question/answer pairs. Target: 8
technology articles held out of the pool. The demo selects with the chosen method and reports which share of
the selection is technology news, against that share in the pool.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer
from rich.console import Console
from rich.table import Table

from tasksift.api import select
from tasksift.cli.common import CacheOpt, console, user_errors
from tasksift.eval.taskgen.sources import bbc_news, chatterbot_english
from tasksift.util.io import atomic_path

TARGET_TOPIC = "tech"
N_TARGET = 8
N_CHAT = 800
LEAD_CHARS = 300


def _lead(text: str, limit: int = LEAD_CHARS) -> str:
    first = text.split("\n", 1)[0]
    if len(first) <= limit:
        return first
    return first[:limit].rsplit(" ", 1)[0]


def build_demo_data(out_dir: Path, seed: int = 0) -> tuple[Path, Path]:
    """Write ``pool.jsonl`` and ``target.jsonl`` under ``out_dir/data`` (same files for the same seed)."""
    rng = np.random.default_rng(seed)
    articles = bbc_news()
    on_topic = [i for i, a in enumerate(articles) if a["topic"] == TARGET_TOPIC]
    target_rows = set(rng.choice(on_topic, size=N_TARGET, replace=False).tolist())
    chat = chatterbot_english()
    chat_rows = sorted(rng.choice(len(chat), size=min(N_CHAT, len(chat)), replace=False).tolist())

    def article(a: dict[str, Any]) -> dict[str, Any]:
        return {"source": "bbc", "label": a["topic"], "file": a["file"],
                "text": f"{a['headline']}\n{_lead(a['body'])}"}

    pool = [article(a) for i, a in enumerate(articles) if i not in target_rows]
    pool += [{"source": "chatterbot", "label": chat[i]["category"],
              "text": f"{chat[i]['question']}\n{chat[i]['answer']}"} for i in chat_rows]
    target = [article(articles[i]) for i in sorted(target_rows)]
    data = out_dir / "data"
    data.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, rows in (("pool", pool), ("target", target)):
        path = data / f"{name}.jsonl"
        with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as fh:
            for row in rows:
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")
        paths.append(path)
    return paths[0], paths[1]


def run_demo(out_dir: Path, *, method: str = "knn", budget: str = "5%", seed: int = 0,
             cache_dir: Path | None = None, console: Console | None = None) -> dict[str, Any]:
    """Build the data, select, print a one-screen summary, and return the figures shown."""
    console = console or Console()
    pool_path, target_path = build_demo_data(out_dir, seed)
    run_dir = out_dir / "run"
    console.print(f"[bold]tasksift demo[/]: pool {pool_path}, target {target_path} ({N_TARGET} '{TARGET_TOPIC}' "
                  f"articles); selecting {budget} with {method}")
    selection = select(pool_path, target_path, method=method, budget=budget, seed=seed, text_field="text",
                       cache_dir=cache_dir, out=run_dir, progress=True)
    pool_labels = [json.loads(line)["label"] for line in pool_path.read_text(encoding="utf-8").splitlines()]
    chosen = Counter()
    for row, weight in zip(selection.indices, selection.weights, strict=True):
        chosen[pool_labels[row]] += float(weight)
    total = sum(chosen.values())
    share_selected = chosen[TARGET_TOPIC] / total
    share_pool = pool_labels.count(TARGET_TOPIC) / len(pool_labels)

    table = Table(title=f"tasksift demo: {method}, budget {budget}", show_header=False, box=None)
    table.add_row("pool", f"{len(pool_labels):,} examples ({share_pool:.1%} '{TARGET_TOPIC}')")
    table.add_row("selected", f"{len(selection):,} examples, total weight {total:g}")
    table.add_row(f"on-topic ('{TARGET_TOPIC}') share", f"[bold]{share_selected:.1%}[/] of the selection "
                                                          f"({share_selected / share_pool:.1f}x the pool's share)")
    table.add_row("composition", ", ".join(f"{k} {v / total:.0%}" for k, v in chosen.most_common(6)))
    table.add_row("time", ", ".join(f"{k} {v:.1f}s" for k, v in selection.manifest["timings"].items()))
    table.add_row("outputs", f"{run_dir}/ (selected.jsonl, selection.parquet, manifest.json)")
    console.print(table)
    return {"share_selected": share_selected, "share_pool": share_pool, "selected": len(selection),
            "run_dir": str(run_dir)}


def demo_command(
    out: Annotated[Path, typer.Option("--out", help="Where the demo writes its data and selection.")]
    = Path("tasksift-demo"),
    method: Annotated[str, typer.Option("--method")] = "knn",
    budget: Annotated[str, typer.Option("--budget")] = "5%",
    seed: Annotated[int, typer.Option("--seed")] = 0,
    cache_dir: CacheOpt = None,
) -> None:
    """Build a small real pool (BBC News + chatterbot answers), select for a few tech articles, report."""
    with user_errors():
        run_demo(out, method=method, budget=budget, seed=seed, cache_dir=cache_dir, console=console)
