"""TSDS: tasksift's selector against the reference implementation (github.com/ZifanL/TSDS).

    python benchmarks/tsds.py [--reference PATH] [--part a|b|all] [--out benchmarks/results/tsds.json]

The reference is found at ``--reference`` (or ``$TSDS_REFERENCE``): a directory holding its ``tsds.py`` and
``faiss_helper.py``. It is run as it is, in this process, on a temporary copy of those two files whose only
change is that its density sum is done in float64 (``kernel.sum(axis=-1, dtype=np.float64)``); without that
it stops on its own assertion on this data. For the parity run its faiss index constructor
(``FaissIndexIVFFlat``) is replaced, in this process only, by exact search. Its probabilities are read by
wrapping ``numpy.random.multinomial`` while it runs; its stage times come from its own log lines. Without a
reference only our numbers are printed.

Data (unit vectors in 384 dimensions, fixed seeds), two generators:

- ``geometry``: a pool drawn from ``--topics`` topics, each with 20 subtopics (a subtopic centre is its topic
  centre plus noise, a row its subtopic centre plus noise, all normalised), where 2% of the rows are near-copies
  of another row (groups of 2 to 10, noise 0.05): tight subtopics, about 50 rows within the kernel's radius of
  each row. Targets: fresh draws from ``--target-topics`` of the topics.
- ``topical``: topics of Zipf-distributed sizes, each row its topic's centre plus a spread along 24 directions
  of the topic (decaying variances) plus isotropic noise as large, normalised; 1% of the rows are near-copies
  of another row (noise 0.04). Same-topic rows are about 1.2 apart, so a row has about 0.1 others within the
  kernel's radius (0.75): nearly every distance computed for a density is wasted. Targets: fresh draws from
  ``--topical-target-topics`` topics.

Parts:

- ``a``: 100,000 pool rows, 500 targets, for each generator: ``--rounds`` rounds, each running the reference
  as it is (IVF, its density rule), ours with defaults (exact search below 200,000 rows, exact radius density
  through the pruned exact search, :mod:`tasksift.index.pruned`) and ours with the brute-force range search,
  in an order that alternates between rounds; the one-minute load average is recorded before and after each
  run. Medians over the rounds of the density stage and of the whole process, their ratios, and the total
  variation between the two distributions. ``--parity``: both with exact search, ours with
  ``density="reference"``: total variation (target <= 1e-6).
- ``b``: 1,000,000 pool rows of ``--b-generator``, ours, one fresh subprocess per density rule
  (``--b-density``; default ``radius``, ``auto`` and ``reference``): stage times, the share of the neighbour
  search (index build and search), peak resident memory (``ru_maxrss``) against the embedding matrix's size. A
  rule that computes densities approximately (``ivf``, or ``auto`` above its exact budget) is checked against
  the exact density in two ways: inside its own run, on a random sample of ``--b-check-rows`` of the rows it
  computed (exact range search over the whole pool, timed apart from the fit); and, when ``radius`` ran in the
  same invocation, on every row both runs computed, with the total variation between the two distributions.
  With a reference, it runs on the same pool in a subprocess stopped after ``--b-reference-seconds``.

Results are merged into the JSON file after every finished run, so a killed benchmark keeps what finished.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tsds_data import DIM, GENERATORS, Geometry, Topical, generator  # noqa: E402
from tsds_reference import BUDGET, run_reference  # noqa: E402

TARGETS = 500
RESULTS = Path(__file__).resolve().parent / "results" / "tsds.json"
# -- ours ---------------------------------------------------------------------------------------------------------
def run_ours(x: np.ndarray, q: np.ndarray, prune: bool = True, **params: Any) -> dict[str, Any]:
    """Our selector on ``x`` and ``q``; ``prune=False``: its exact range search by brute force."""
    from tasksift.index.searcher import LocalSearch
    from tasksift.selectors.base import Context
    from tasksift.selectors.tsds import TSDSSelector

    selector = TSDSSelector(BUDGET, **params).fit(x, q, ctx=Context(search=LocalSearch(prune=prune)))
    manifest = selector.selection_.manifest
    probability = np.zeros(len(x))
    probability[selector.probability_.rows] = selector.probability_.probability
    stages = dict(manifest["stages"])
    stages["load"] = stages.pop("prepare")
    return {"probability": probability, "stages": stages, "seconds": selector.fit_seconds_,
            "solver": manifest["solver"], "density": manifest["density"], "index": manifest["index"]}


def total_variation(p: np.ndarray, r: np.ndarray) -> float:
    return float(np.abs(np.asarray(p, np.float64) - np.asarray(r, np.float64)).sum() / 2)


def _compute_seconds(run: dict[str, Any]) -> float:
    """End to end without reading the inputs and writing the output (the reference does both from files)."""
    return run["seconds"] - run["stages"].get("load", 0.0) - run["stages"].get("save", 0.0)


def _public(run: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in run.items() if k != "probability"}


# -- parts --------------------------------------------------------------------------------------------------------
PROGRAMS = ("reference", "ours", "ours, brute-force range search")


def _timed(program: str, x: np.ndarray, q: np.ndarray, reference: Path | None) -> dict[str, Any]:
    before = os.getloadavg()[0]
    if program == "reference":
        run = run_reference(reference, x, q, exact=False)
    else:
        run = run_ours(x, q, prune=program == "ours")
    return {**run, "program": program, "load_before": before, "load_after": os.getloadavg()[0]}


def _median(values: list[float]) -> float:
    return float(np.median(values))


def part_a(args: argparse.Namespace, reference: Path | None, save: Results) -> None:
    """Each generator: rounds of every program, in an order alternating between rounds; medians and ratios."""
    save.clear("a")
    programs = [p for p in PROGRAMS if p != "reference" or reference is not None]
    for name in args.generators:
        topics = args.target_topics if name == "geometry" else args.topical_target_topics
        data = generator(name)
        x, q = data.pool(args.n_a), data.targets(TARGETS, topics)
        save("a", f"{name}/data", {"pool": list(x.shape), "targets": list(q.shape), "target_topics": topics,
                                   "generator": data.__dict__, "budget": BUDGET})
        runs: list[dict[str, Any]] = []
        last: dict[str, dict[str, Any]] = {}
        for round_ in range(args.rounds):
            for program in programs if round_ % 2 == 0 else programs[::-1]:
                last[program] = run = _timed(program, x, q, reference)
                runs.append({"round": round_, **_public(run)})
                save("a", f"{name}/runs", runs)
        summary: dict[str, Any] = {}
        for program in programs:
            mine = [r for r in runs if r["program"] == program]
            summary[program] = {"rounds": len(mine), "density_median": _median([r["stages"]["density"] for r in mine]),
                                "whole_median": _median([r["seconds"] for r in mine]),
                                "compute_median": _median([_compute_seconds(r) for r in mine]),
                                "load": [min(r["load_before"] for r in mine), max(r["load_after"] for r in mine)]}
        if reference is not None:
            ref = [r for r in runs if r["program"] == "reference"]
            for program in programs[1:]:
                mine = [r for r in runs if r["program"] == program]
                per_round = [a["stages"]["density"] / b["stages"]["density"] for a, b in zip(ref, mine, strict=True)]
                summary[program].update({
                    "density_ratio_of_medians": summary["reference"]["density_median"] / summary[program][
                        "density_median"],
                    "density_ratio_per_round": [min(per_round), max(per_round)],
                    "whole_ratio_of_medians": summary["reference"]["whole_median"] / summary[program]["whole_median"],
                    "compute_ratio_of_medians": summary["reference"]["compute_median"] / summary[program][
                        "compute_median"],
                    "total_variation": total_variation(last[program]["probability"], last["reference"]["probability"]),
                })
        if "ours" in last and PROGRAMS[2] in last:  # the pruned search against the brute force
            summary["ours"]["total_variation_against_brute_force"] = total_variation(
                last["ours"]["probability"], last[PROGRAMS[2]]["probability"])
        save("a", f"{name}/summary", summary)
        if args.parity and reference is not None:
            ref_exact = run_reference(reference, x, q, exact=True)
            parity = run_ours(x, q, density="reference", index="flat")
            save("a", f"{name}/parity", {
                "total_variation": total_variation(parity["probability"], ref_exact["probability"]),
                "what": "both with exact search; ours with density='reference'; the reference's sum in float64"})


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def relative_errors(exact: np.ndarray, approximate: np.ndarray) -> dict[str, float]:
    """``(exact - approximate) / exact`` of densities: median, 90th percentile, max, and min (below 0 only by
    float32 rounding when the approximation is a lower bound), and the share of rows off by more than 1e-4."""
    error = (np.asarray(exact, np.float64) - approximate) / exact
    return {"rows": len(error), "median": float(np.median(error)), "p90": float(np.quantile(error, 0.9)),
            "max": float(error.max()), "min": float(error.min()), "share_above_1e-4": float((error > 1e-4).mean())}


def exact_density_sample(x: np.ndarray, rows: np.ndarray, values: np.ndarray, count: int) -> dict[str, Any]:
    """Exact densities of ``count`` random rows among ``rows`` (computed with ``values``), against ``values``."""
    from tasksift.index.exact import pool_range_search
    from tasksift.selectors.tsds import radius_density

    pick = np.sort(np.random.default_rng(0).choice(len(rows), min(count, len(rows)), replace=False))
    t0 = time.perf_counter()
    exact = radius_density(pool_range_search(x, 0.75, {}), x, rows[pick], 0.75)
    return {**relative_errors(exact, values[pick]), "of_rows": len(rows), "seconds": time.perf_counter() - t0}


def _b_data(args: argparse.Namespace) -> tuple[np.ndarray, np.ndarray]:
    """Part b's pool (``--n-b`` rows of ``--b-generator``) and targets."""
    if args.b_generator == "geometry":
        data = Geometry(topics=args.b_topics)
        return data.pool(args.n_b, chunk=20_000), data.targets(TARGETS, args.target_topics)
    data = Topical()
    return data.pool(args.n_b, chunk=20_000), data.targets(TARGETS, args.topical_target_topics)


def worker_b(args: argparse.Namespace) -> dict[str, Any]:
    """Part b in this (fresh) process: our stage times and memory on the part b pool (``--b-density``'s first
    rule). ``--b-save``: where to write the distribution and the computed densities (``.npz``) for the
    comparison across rules."""
    import faiss  # noqa: F401 - loaded before the baseline, as any run would

    from tasksift.selectors.tsds import TSDSSelector

    density, save, check_rows = args.b_density[0], args.b_save, args.b_check_rows
    baseline = _rss()
    x, q = _b_data(args)
    n = len(x)
    with_data = _rss()
    peak = [0]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], _rss())
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    before = os.getloadavg()[0]
    t0 = time.perf_counter()
    selector = TSDSSelector(BUDGET, density=density).fit(x, q)
    seconds = time.perf_counter() - t0
    done.set()
    sampler.join()
    manifest = selector.selection_.manifest
    stages = manifest["stages"]
    search = stages["index"] + stages["search"]
    matrix = x.nbytes
    max_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    if save is not None:
        np.savez(save, rows=selector.probability_.rows, probability=selector.probability_.probability,
                 density_rows=selector.density_rows_, density=selector.density_values_)
    check = None
    if manifest["density"].get("rows_approximate") and check_rows > 0:
        check = exact_density_sample(x, selector.density_rows_, selector.density_values_, check_rows)
    return {
        "pool": [n, DIM], "generator": args.b_generator, "density": density, "seconds": seconds, "stages": stages,
        "load": [before, os.getloadavg()[0]],
        "neighbour_search_seconds": search, "neighbour_search_share": search / seconds,
        "total_over_neighbour_search": seconds / search,
        "matrix_bytes": matrix, "rss_baseline_bytes": baseline, "rss_with_data_bytes": with_data,
        "rss_peak_during_fit_bytes": max(peak[0], _rss()), "max_rss_bytes": max_rss,
        "peak_over_matrix": max_rss / matrix, "peak_above_baseline_over_matrix": (max_rss - baseline) / matrix,
        "index": manifest["index"], "solver": manifest["solver"], "density_info": manifest["density"],
        "density_error_sample": check,
    }


def against_exact(exact_file: Path, other_file: Path) -> dict[str, Any]:
    """Densities of the rows both runs computed, and the total variation between their distributions."""
    exact, other = np.load(exact_file), np.load(other_file)
    common, i, j = np.intersect1d(exact["density_rows"], other["density_rows"], return_indices=True)
    n = int(max(exact["rows"].max(), other["rows"].max())) + 1
    p, r = np.zeros(n), np.zeros(n)
    p[exact["rows"]], r[other["rows"]] = exact["probability"], other["probability"]
    return {"total_variation": total_variation(p, r),
            "density": relative_errors(exact["density"][i], other["density"][j]),
            "rows_only_exact": len(exact["density_rows"]) - len(common),
            "rows_only_approximate": len(other["density_rows"]) - len(common)}


def worker_reference(args: argparse.Namespace) -> dict[str, Any]:
    """The reference on the part b pool, in this (fresh) process."""
    x, q = _b_data(args)
    before = os.getloadavg()[0]
    run = run_reference(args.reference, x, q, exact=False)
    return {**_public(run), "load": [before, os.getloadavg()[0]]}


def _subprocess(args: argparse.Namespace, worker: str, extra: list[str], timeout: float | None = None
                ) -> dict[str, Any]:
    """A fresh process running ``worker`` on the part b data; its JSON answer, or ``{"error": ...}``."""
    command = [sys.executable, str(Path(__file__).resolve()), worker, "--n-b", str(args.n_b), "--b-generator",
               args.b_generator, "--target-topics", str(args.target_topics), "--topical-target-topics",
               str(args.topical_target_topics), "--b-topics", str(args.b_topics), *extra]
    try:
        done = subprocess.run(command, capture_output=True, text=True, check=False, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": [f"did not finish within {timeout:.0f} s (stopped)"], "load": os.getloadavg()[0]}
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-1:] or [f"exit {done.returncode}"]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def part_b(args: argparse.Namespace, reference: Path | None, save: Results) -> None:
    prefix = args.b_generator if args.b_topics == Geometry.topics else f"{args.b_generator}, {args.b_topics} topics"
    with tempfile.TemporaryDirectory(prefix="tsds_b_") as tmp:
        files: dict[str, Path] = {}
        for density in args.b_density:  # each run replaces the earlier one with the same rule and data
            files[density] = Path(tmp) / f"{density}.npz"
            result = _subprocess(args, "--worker-b", ["--b-density", density, "--b-save", str(files[density]),
                                                      "--b-check-rows", str(args.b_check_rows)])
            if "error" in result:
                files.pop(density)
            elif result["density_info"].get("rows_approximate") and "radius" in files:
                result["against_exact_run"] = against_exact(files["radius"], files[density])
            save("b", f"{prefix}/{density}", result)
    if reference is not None and args.b_reference_seconds > 0:
        save("b", f"{prefix}/reference", _subprocess(args, "--worker-reference", ["--reference", str(reference)],
                                                      timeout=args.b_reference_seconds))


# -- output -------------------------------------------------------------------------------------------------------
class Results:
    """The JSON file, rewritten (to a temporary name, then renamed) after every finished piece."""

    def __init__(self, path: Path, fresh: bool) -> None:
        self.path = path
        self.data: dict[str, Any] = {}
        if path.exists() and not fresh:
            self.data = json.loads(path.read_text())
        self.data["machine"] = {"cpus": os.cpu_count(), "platform": platform.platform(),
                                "python": platform.python_version(), "numpy": np.__version__,
                                "faiss": _faiss_version()}

    def clear(self, part: str) -> None:
        self.data.pop(part, None)

    def __call__(self, part: str, key: str, value: Any) -> None:
        self.data.setdefault(part, {})[key] = value
        self.data["updated"] = time.strftime("%Y-%m-%d %H:%M:%S")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.data, indent=2, default=_plain) + "\n")
        tmp.replace(self.path)


def _faiss_version() -> str:
    import faiss

    return faiss.__version__


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"cannot write {type(value)} as JSON")


def _times(ratio: float | None) -> str:
    return "-" if ratio is None else f"{ratio:.1f}x"


def print_tables(data: dict[str, Any]) -> None:
    a = data.get("a", {})
    for name in GENERATORS:
        summary, info = a.get(f"{name}/summary"), a.get(f"{name}/data")
        if summary is None:
            continue
        print(f"(a) {name}: pool {info['pool'][0]:,} x {info['pool'][1]}, {info['targets'][0]} targets from "
              f"{info['target_topics']} topics, budget {info['budget']}; medians of "
              f"{summary['ours']['rounds']} alternating rounds")
        print(f"{'program':<34}{'density s':>10}{'whole s':>9}{'w/o io s':>9}{'ref/x density':>15}"
              f"{'(per round)':>14}{'ref/x whole':>12}{'load':>12}")
        for program, row in summary.items():
            spread = row.get("density_ratio_per_round")
            print(f"{program:<34}{row['density_median']:>10.2f}{row['whole_median']:>9.2f}"
                  f"{row['compute_median']:>9.2f}{_times(row.get('density_ratio_of_medians')):>15}"
                  f"{'-' if spread is None else f'{spread[0]:.1f}-{spread[1]:.1f}x':>14}"
                  f"{_times(row.get('whole_ratio_of_medians')):>12}{row['load'][0]:>6.1f}-{row['load'][1]:<5.1f}")
        runs = [r for r in a[f"{name}/runs"] if r["program"] == "ours"]
        density = runs[-1]["density"]
        print(f"ours: {density['rows_computed']:,} densities computed; {density['compared_distances']:,} distances "
              f"in full of {density.get('exact_search', {}).get('brute_force_distances', 0):,} "
              f"(search: {density.get('exact_search')})")
        if "total_variation" in summary["ours"]:
            print(f"total variation, reference vs ours: {summary['ours']['total_variation']:.3g}")
        print(f"total variation, ours vs ours with the brute-force range search: "
              f"{summary['ours'].get('total_variation_against_brute_force', float('nan')):.3g}")
        if f"{name}/parity" in a:
            print(f"parity, both exact search, ours density='reference': total variation "
                  f"{a[f'{name}/parity']['total_variation']:.3g}")
        print()
    for key, b in data.get("b", {}).items():
        print()
        if "error" in b:
            print(f"(b) {key}: failed: {b['error']}")
            continue
        if key.endswith("/reference"):
            print(f"(b) {key}: {b['seconds']:.2f} s, " + ", ".join(f"{k} {v:.2f}" for k, v in b["stages"].items())
                  + f" (load {b['load'][0]:.1f}-{b['load'][1]:.1f})")
            continue
        gib = 2.0**30
        how = "exact, in place" if b["index"].get("in_place") else b["index"]["kind"]
        print(f"(b) {key}: pool {b['pool'][0]:,} x {b['pool'][1]}, density={b['density']}, prefetch {how}, "
              f"load {b['load'][0]:.1f}-{b['load'][1]:.1f}")
        for stage, value in b["stages"].items():
            print(f"{stage:<24}{value:>9.2f}")
        print(f"{'end to end':<24}{b['seconds']:>9.2f}")
        print(f"neighbour search (index + search) {b['neighbour_search_seconds']:.2f} s = "
              f"{100 * b['neighbour_search_share']:.0f}% of the total; total / search = "
              f"{b['total_over_neighbour_search']:.2f} (target <= 1.5)")
        print(f"memory: matrix {b['matrix_bytes'] / gib:.2f} GiB; peak RSS {b['max_rss_bytes'] / gib:.2f} GiB = "
              f"{b['peak_over_matrix']:.2f}x the matrix (target <= 2); above the interpreter and libraries "
              f"({b['rss_baseline_bytes'] / gib:.2f} GiB): {b['peak_above_baseline_over_matrix']:.2f}x")
        info = b["density_info"]
        print(f"K_i {b['solver']['K']['min']:.0f} to {b['solver']['K']['max']:.0f}, capped queries "
              f"{b['solver']['capped_queries']}, {info.get('rows_computed', 0):,} densities computed")
        if info.get("rows_approximate"):
            ivf = info["approximate"]
            print(f"approximate densities: {info['rows_approximate']:,} rows ({info['rows_exact']:,} exact); "
                  f"{ivf['coarse_cells']} coarse cells ({ivf['coarse_cells_refined']} refined into "
                  f"{ivf['fine_cells']} fine cells of ~{ivf['cell_rows']} rows), probe {ivf['nprobe']} fine cells in "
                  f"{ivf['coarse_probe']} coarse; {ivf['compared']:,} distances searched, "
                  f"{ivf['assigned'] + ivf['fine_assigned']:,} to build")
            check = info.get("check") or {}
            if check.get("checks"):
                widest = check["checks"][-1]["tried"][-1]
                print(f"checked: {check['rows_checked']:,} rows computed exactly over {len(check['checks'])} "
                      f"request(s); tolerance {check['tolerance']:g}; last setting {widest['nprobe']} fine cells in "
                      f"{widest['coarse_probe']} coarse, max relative error {widest['max_relative_error']:.2g}, "
                      f"{widest['compared_share']:.1%} of the pool per row; exact search took over for "
                      f"{check['rows_exact_after_check']:,} rows")
        for what, errors in (("sample", b.get("density_error_sample")),
                             ("exact run", (b.get("against_exact_run") or {}).get("density"))):
            if errors:
                print(f"rho relative error vs exact ({what}, {errors['rows']:,} rows): median {errors['median']:.2g}, "
                      f"p90 {errors['p90']:.2g}, max {errors['max']:.2g}, min {errors['min']:.2g}, "
                      f"rows off by >1e-4: {100 * errors['share_above_1e-4']:.1f}%")
        if b.get("against_exact_run"):
            print(f"total variation vs the exact (radius) run: {b['against_exact_run']['total_variation']:.3g}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reference", type=Path, default=os.environ.get("TSDS_REFERENCE") or None,
                        help="directory with the reference's tsds.py and faiss_helper.py (or $TSDS_REFERENCE)")
    parser.add_argument("--part", choices=("a", "b", "all"), default="all")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--fresh", action="store_true", help="start a new results file instead of merging")
    parser.add_argument("--generators", nargs="+", choices=GENERATORS, default=list(GENERATORS),
                        help="part a's data")
    parser.add_argument("--n-a", type=int, default=100_000)
    parser.add_argument("--n-b", type=int, default=1_000_000)
    parser.add_argument("--target-topics", type=int, default=10, help="topics of the targets, geometry")
    parser.add_argument("--topical-target-topics", type=int, default=100, help="topics of the targets, topical")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of every program in part a (medians)")
    parser.add_argument("--parity", action="store_true", help="part a: the exact-search parity run as well")
    parser.add_argument("--b-generator", choices=GENERATORS, default="geometry")
    parser.add_argument("--b-density", nargs="+", default=["radius", "auto", "reference"],
                        choices=("radius", "auto", "ivf", "reference"),
                        help="density rules to run in part b (one subprocess each; radius first for the comparison)")
    parser.add_argument("--b-check-rows", type=int, default=500,
                        help="rows whose exact density checks an approximate run, inside that run")
    parser.add_argument("--b-reference-seconds", type=float, default=600,
                        help="part b: stop the reference after this long (0: do not run it)")
    parser.add_argument("--b-save", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--b-topics", type=int, default=Geometry.topics,
                        help="topics of the geometry pool in part b (default: the same distribution as part a)")
    parser.add_argument("--worker-b", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--worker-reference", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker_b or args.worker_reference:
        print(json.dumps(worker_b(args) if args.worker_b else worker_reference(args), default=_plain))
        return
    reference = Path(args.reference).resolve() if args.reference else None
    if reference is not None and not (reference / "tsds.py").is_file():
        raise SystemExit(f"--reference {reference}: no tsds.py there")
    results = Results(args.out, fresh=args.fresh)
    if args.part in ("a", "all"):
        part_a(args, reference, results)
    if args.part in ("b", "all"):
        part_b(args, reference, results)
    print_tables(results.data)
    print(f"\nresults: {args.out}")


if __name__ == "__main__":
    main()
