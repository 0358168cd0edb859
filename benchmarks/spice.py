"""SPICE greedy selection: incremental exact gains against recomputing them from scratch, and the reference.

    python benchmarks/spice.py [--n 100000] [--d 1024] [--k 1000] [--scratch-steps 0,250,500,750,999]
                               [--reference DIR] [--ref-n 5000] [--ref-k 50] [--threads N]

Features: ``--n`` Gaussian rows of ``--d`` dimensions with a decaying spectrum (coordinate ``j`` scaled by
``1 / sqrt(1 + j / 32)``) and row norms around 1, float32, seeded.

- ours: :class:`SpiceSelector` (``fisher="exact"``, ``lam=0.1``) selecting ``--k``; also FisherSFT
  (``lam=0``) and ``fisher="diag"``.
- from scratch: at step ``t`` the gain of every candidate is recomputed from the ``t`` rows chosen so far, by
  the cheaper of a Cholesky factorisation of the ``d x d`` matrix ``I + alpha F_S`` (``O(N d^2)``) and the
  Woodbury identity in the ``t x t`` space (``O(N t d + t^3)``), plus the conflict term. That costs seconds
  per step at this size, so it is timed only at the steps of ``--scratch-steps`` (with ours' first ``t``
  picks as ``S``; its pick at each such step is checked against ours) and the total over all ``k`` steps is
  extrapolated by linear interpolation of the per-step times between the measured steps.
- reference (``--reference DIR``: an unpacked checkout of github.com/Chang-pw/SPICE, e.g.
  ``git clone https://github.com/Chang-pw/SPICE /tmp/spice-ref`` on a machine with network access, then copy it
  over): its ``greedy_select_with_conflict_penalty`` in ``diag`` mode (a Python loop over
  candidates per step) on the first ``--ref-n`` rows selecting ``--ref-k``, against ours on the same rows.

Results go to ``benchmarks/results/spice.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from scipy.linalg import cho_factor, cho_solve, solve_triangular

from tasksift.selectors.spice import FisherSFTSelector, SpiceSelector

RESULTS = Path(__file__).parent / "results"


def features(n: int, d: int, seed: int = 0, chunk: int = 16384) -> np.ndarray:
    """Gaussian rows with a decaying spectrum, norms around 1, float32, generated in chunks."""
    scale = (1.0 / np.sqrt(1.0 + np.arange(d) / 32.0)).astype(np.float32)
    scale /= np.sqrt((scale**2).sum())
    out = np.empty((n, d), dtype=np.float32)
    for c, start in enumerate(range(0, n, chunk)):
        rng = np.random.default_rng([seed, c])
        out[start:start + chunk] = rng.standard_normal((min(chunk, n - start), d), dtype=np.float32) * scale
    return out


def scores_from_scratch(g: np.ndarray, chosen: list[int], alpha: float, lam: float) -> np.ndarray:
    """SPICE scores of every row given the chosen rows, recomputed with no state from earlier steps."""
    n, d = g.shape
    t = len(chosen)
    norms2 = np.einsum("ij,ij->i", g, g, dtype=np.float64)
    if t == 0:
        q = norms2
    elif t < d:  # Woodbury: g^T (I + a U^T U)^-1 g = |g|^2 - a (U g)^T (I + a U U^T)^-1 (U g)
        u = g[chosen].astype(np.float64)
        inner = cho_factor(np.eye(t) + alpha * u @ u.T)
        c = (g @ g[chosen].T).astype(np.float64)
        q = norms2 - alpha * np.einsum("ij,ji->i", c, cho_solve(inner, c.T))
    else:
        u = g[chosen].astype(np.float64)
        low = np.linalg.cholesky(np.eye(d) + alpha * u.T @ u)
        y = solve_triangular(low, g.T.astype(np.float64), lower=True)
        q = np.einsum("ij,ij->j", y, y)
    scores = np.log1p(alpha * np.maximum(q, 0.0))
    if lam > 0 and t > 0:
        mean = g[chosen].astype(np.float64).mean(0)
        cos = (g @ mean.astype(np.float32)) / np.maximum(np.sqrt(norms2) * np.linalg.norm(mean), 1e-300)
        scores -= lam * np.maximum(0.0, -cos)
    scores[chosen] = -np.inf
    return scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--d", type=int, default=1024)
    parser.add_argument("--k", type=int, default=1000)
    parser.add_argument("--alpha", type=float, default=1.0)
    parser.add_argument("--lam", type=float, default=0.1)
    parser.add_argument("--scratch-steps", default="0,250,500,750,999")
    parser.add_argument("--reference", type=Path, default=None, help="unpacked Chang-pw/SPICE checkout")
    parser.add_argument("--ref-n", type=int, default=5000)
    parser.add_argument("--ref-k", type=int, default=50)
    parser.add_argument("--threads", type=int, default=None, help="BLAS/torch threads (default: all cores)")
    parser.add_argument("--out", type=Path, default=RESULTS / "spice.json")
    args = parser.parse_args()
    console = Console(width=max(Console().width, 120))
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)

    t = time.perf_counter()
    g = features(args.n, args.d)
    console.print(f"{args.n:,} x {args.d:,} features ({g.nbytes / 2**20:,.0f} MiB) in {time.perf_counter() - t:.1f} s; "
                  f"selecting {args.k:,}, alpha {args.alpha}, lam {args.lam}")

    ours: dict[str, float] = {}
    runs = {}
    for label, selector in (("spice exact", SpiceSelector(args.k, alpha=args.alpha, lam=args.lam)),
                            ("fishersft exact", FisherSFTSelector(args.k, alpha=args.alpha)),
                            ("spice diag", SpiceSelector(args.k, alpha=args.alpha, lam=args.lam, fisher="diag"))):
        t = time.perf_counter()
        runs[label] = selector.fit(g).selection_
        ours[label] = time.perf_counter() - t
        console.print(f"ours, {label}: {ours[label]:.1f} s ({1000 * ours[label] / args.k:.1f} ms/step)")
    picks = runs["spice exact"].indices.tolist()

    steps = sorted({min(int(s), args.k - 1) for s in args.scratch_steps.split(",")})
    scratch: dict[int, float] = {}
    agree = 0
    gain_diff = 0.0
    bar = Progress(TextColumn("from scratch"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console)
    with bar:
        task = bar.add_task("scratch", total=len(steps))
        for step in steps:
            t = time.perf_counter()
            s = scores_from_scratch(g, picks[:step], args.alpha, args.lam)
            scratch[step] = time.perf_counter() - t
            best = int(np.argmax(s))
            agree += best == picks[step]
            reason = runs["spice exact"].reasons[step]
            gain_diff = max(gain_diff, abs(float(s[picks[step]]) - (reason["gain"] - reason["conflict"])))
            bar.update(task, advance=1)
    xs = np.array(steps, dtype=float)
    per_step = np.interp(np.arange(args.k), xs, [scratch[s] for s in steps])
    scratch_total = float(per_step.sum())
    ratio = scratch_total / ours["spice exact"]

    table = Table(title=f"SPICE greedy, {args.k:,} of {args.n:,} in {args.d:,} dimensions (CPU x{os.cpu_count()})")
    for col in ("method", "seconds", "ms / step", "vs ours exact"):
        table.add_column(col, justify="left" if col == "method" else "right")
    for label, seconds in ours.items():
        table.add_row(f"tasksift {label} (incremental)", f"{seconds:,.1f}", f"{1000 * seconds / args.k:,.1f}",
                      f"{seconds / ours['spice exact']:.2f}x")
    table.add_row(f"from scratch each step (extrapolated from steps {', '.join(map(str, steps))})",
                  f"{scratch_total:,.0f}", f"{1000 * scratch_total / args.k:,.0f}", f"{ratio:,.1f}x")
    report = {"benchmark": "spice", "n": args.n, "d": args.d, "k": args.k, "alpha": args.alpha, "lam": args.lam,
              "ours_seconds": ours, "scratch_step_seconds": {str(k): v for k, v in scratch.items()},
              "scratch_total_extrapolated_seconds": scratch_total, "scratch_over_ours": ratio,
              "scratch_picks_agree": f"{agree}/{len(steps)}", "scratch_max_score_difference": gain_diff,
              "target_met": ratio >= 10,
              "overlap": {"fishersft_vs_spice": len(set(runs["fishersft exact"].indices) & set(picks)),
                          "diag_vs_exact": len(set(runs["spice diag"].indices) & set(picks))}}

    if args.reference is not None:
        report["reference"] = run_reference(args, g, table, console)
    console.print(table)
    console.print(f"from scratch / incremental: {ratio:,.1f}x (target >= 10x: {'met' if ratio >= 10 else 'MISSED'}); "
                  f"from-scratch argmax equals our pick at {agree}/{len(steps)} measured steps, largest score "
                  f"difference {gain_diff:.1e}")
    report["environment"] = {"python": platform.python_version(), "numpy": np.__version__,
                             "cpu_count": os.cpu_count(), "machine": platform.machine(),
                             "load_average": os.getloadavg()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    console.print(f"report: {args.out}")


def run_reference(args: argparse.Namespace, g: np.ndarray, table: Table, console: Console) -> dict:
    """The reference's diag-mode SPICE on a subset, and ours on the same subset."""
    import torch

    sys.path.insert(0, str(args.reference))
    from spice.select import greedy_select_with_conflict_penalty

    sub = g[: args.ref_n]
    g_list = [torch.from_numpy(row.copy()) for row in sub]
    t = time.perf_counter()
    ref = greedy_select_with_conflict_penalty(g_list, args.alpha, args.ref_k, args.lam, "diag")
    ref_s = time.perf_counter() - t
    timings = {}
    sets = {}
    for label, fisher in (("diag", "diag"), ("exact", "exact")):
        t = time.perf_counter()
        sel = SpiceSelector(args.ref_k, alpha=args.alpha, lam=args.lam, fisher=fisher).fit(sub).selection_
        timings[label] = time.perf_counter() - t
        sets[label] = set(sel.indices.tolist())
    ref_set = set(ref["selected"])
    table.add_row(f"reference diag (g^4), {args.ref_k} of {args.ref_n:,}", f"{ref_s:,.1f}",
                  f"{1000 * ref_s / args.ref_k:,.0f}", "")
    for label, seconds in timings.items():
        table.add_row(f"tasksift spice {label}, {args.ref_k} of {args.ref_n:,}", f"{seconds:,.3f}",
                      f"{1000 * seconds / args.ref_k:,.2f}", f"reference / ours {ref_s / seconds:,.0f}x")
    console.print(f"reference diag vs ours: {len(ref_set & sets['diag'])}/{args.ref_k} picks shared with our diag "
                  f"(g^2), {len(ref_set & sets['exact'])}/{args.ref_k} with our exact")
    return {"n": args.ref_n, "k": args.ref_k, "reference_seconds": ref_s, "ours_seconds": timings,
            "shared_picks": {label: len(ref_set & s) for label, s in sets.items()}}


if __name__ == "__main__":
    main()
