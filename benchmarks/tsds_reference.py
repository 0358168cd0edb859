"""The TSDS benchmark's reference runner: the reference code run as it is, in this process (see ``tsds.py``)."""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

BUDGET = 1000
#: the reference's stages, keyed by the log line that opens each
REFERENCE_STAGES = (
    ("number of query examples", "load"),
    ("Starting building index", "index"),
    ("Start prefetching", "search"),
    ("Start computing KDE", "density"),
    ("Sigma is zero", "density"),
    ("Start computing the probability assignment", "solver"),
    ("Start sampling", "sampling"),
    ("Saving indices", "save"),
)



class _ExactIndex:
    """Stands in for the reference's ``FaissIndexIVFFlat`` in the parity run: the same interface, exact search."""

    def __init__(self, data: np.ndarray, nprobe: int = 10) -> None:
        import faiss

        self.index = faiss.IndexFlatL2(data.shape[-1])
        self.index.add(data)

    def search(self, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        return self.index.search(query, k)


class _LogTimes(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[tuple[float, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append((time.perf_counter(), record.getMessage()))


def reference_copy(reference: Path, into: Path) -> Path:
    """Copy the reference's two files into ``into`` with its density sum in float64 (the one change)."""
    source = (reference / "tsds.py").read_text()
    old = "kde = kernel.sum(axis=-1)"
    if source.count(old) != 1:
        raise SystemExit(f"{reference / 'tsds.py'}: expected the line {old!r} exactly once; is this the reference?")
    (into / "tsds.py").write_text(source.replace(old, "kde = kernel.sum(axis=-1, dtype=np.float64)"))
    shutil.copy(reference / "faiss_helper.py", into / "faiss_helper.py")
    return into


@contextlib.contextmanager
def _captured_multinomial(store: dict[str, np.ndarray]) -> Iterator[None]:
    original = np.random.multinomial

    def wrapper(n: int, pvals: Any, size: Any = None) -> np.ndarray:
        store["p"] = np.array(pvals, dtype=np.float64)
        return original(n, pvals, size)

    np.random.multinomial = wrapper
    try:
        yield
    finally:
        np.random.multinomial = original


def run_reference(reference: Path, x: np.ndarray, q: np.ndarray, *, exact: bool, budget: int = BUDGET,
                  params: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run the reference's ``main()`` on ``x`` and ``q``; return its probabilities and stage times."""
    import yaml

    config = {"alpha": 0.5, "C": 5.0, "sigma": 0.75, "max_K": 5000, "kde_K": 1000, **(params or {})}
    with tempfile.TemporaryDirectory(prefix="tsds_ref_") as tmp:
        work = reference_copy(reference, Path(tmp))
        np.save(work / "candidates.npy", x)
        np.save(work / "queries.npy", q)
        config.update(query_embedding_path="queries.npy", candidate_embedding_path="candidates.npy",
                      output_folder="out", sample_size=budget)
        (work / "config.yaml").write_text(yaml.safe_dump(config))
        handler = _LogTimes()
        root = logging.getLogger()
        saved = root.handlers[:], root.level
        root.handlers, root.level = [handler], logging.INFO
        name = f"tsds_reference_{os.getpid()}_{time.monotonic_ns()}"
        cwd = Path.cwd()
        sys.path.insert(0, str(work))
        store: dict[str, np.ndarray] = {}
        try:
            spec = importlib.util.spec_from_file_location(name, work / "tsds.py")
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            if exact:
                module.FaissIndexIVFFlat = _ExactIndex
            os.chdir(work)
            t0 = time.perf_counter()
            with _captured_multinomial(store):
                module.main()
            t1 = time.perf_counter()
        finally:
            os.chdir(cwd)
            sys.path.remove(str(work))
            sys.modules.pop("faiss_helper", None)
            root.handlers, root.level = saved
    return {"probability": store["p"], "stages": _reference_stages(handler.lines, t0, t1), "seconds": t1 - t0}


def _reference_stages(lines: list[tuple[float, str]], t0: float, t1: float) -> dict[str, float]:
    marks = [(t0, "load")]
    for when, message in lines:
        for prefix, stage in REFERENCE_STAGES:
            if message.startswith(prefix) and stage != marks[-1][1]:
                marks.append((when, stage))
    marks.append((t1, "end"))
    stages: dict[str, float] = {}
    for (start, stage), (end, _) in zip(marks, marks[1:], strict=False):
        stages[stage] = stages.get(stage, 0.0) + end - start
    return stages
