"""HARP selectors on small arrays with the surrogate probe, and end to end through tasksift.select."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

import tasksift
from tasksift.selectors import get
from tasksift.selectors.harp.probes import EmbeddingClassifierProbe, ProbeRunner
from tasksift.selectors.harp.selector import HarpCSelector, HarpESelector, HarpExhaustiveSelector
from tasksift.util.errors import InputError


def data(seed: int = 0) -> dict:
    """Pool: 6 topics of 40 rows, each topic its own answer; target: 12 rows of topics 0 and 1."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(6, 16)) * 3
    topic = np.repeat(np.arange(6), 40)
    x = (centres[topic] + rng.normal(size=(240, 16))).astype(np.float32)
    t_topic = np.array([0, 1] * 6)
    q = (centres[t_topic] + rng.normal(size=(12, 16))).astype(np.float32)
    return {"x": x, "q": q, "pool_answers": [f"a{v}" for v in topic],
            "target_answers": [f"a{v}" for v in t_topic], "topic": topic}


def runner(d: dict, tmp_path: Path, domains: list | None = None) -> ProbeRunner:
    probe = EmbeddingClassifierProbe(d["x"], d["pool_answers"], d["q"], d["target_answers"], domains)
    return ProbeRunner(probe, [f"row {i}" for i in range(len(d["x"]))], cache_dir=tmp_path)


PARAMS = {"leaf_size": 10, "leaves_per_parent": 4, "parents_per_region": 3}


@pytest.mark.parametrize("cls", [HarpCSelector, HarpESelector, HarpExhaustiveSelector])
def test_selection_contract(cls: type, tmp_path: Path) -> None:
    d = data()
    sel = cls(30, **PARAMS).fit(d["x"], d["q"], probe=runner(d, tmp_path)).selection_
    assert len(sel) == 30 and sel.weights.sum() == 30
    info = sel.manifest["harp"]
    leaves = info["hierarchy"]["leaves"]
    if cls is HarpExhaustiveSelector:
        assert info["probes"] == leaves
    else:
        assert info["probes"] == info["hierarchy"]["parents"] < leaves
    assert set(sel.reasons[0]) == {"leaf", "parent", "region", "effect", "measured", "estimate", "leaf_rank",
                                   "in_prefix"}
    table = sel.tables["leaves"].to_pandas()
    assert int(table["measured"].sum()) == info["probes"]
    hier = sel.tables["hierarchy"].to_pandas()
    assert len(hier) == 240
    assert all(hier["leaf"][i] == r["leaf"] for i, r in zip(sel.indices, sel.reasons, strict=True))
    # the selection comes from the topics the target is about (the surrogate learns them)
    assert np.isin(d["topic"][sel.indices], [0, 1]).mean() >= 0.8


def test_reruns_reuse_every_probe_and_give_the_same_selection(tmp_path: Path) -> None:
    d = data()
    first = HarpExhaustiveSelector(30, **PARAMS).fit(d["x"], d["q"], probe=runner(d, tmp_path)).selection_
    assert first.manifest["harp"]["probes_trained_now"] == first.manifest["harp"]["probes"]
    again = HarpExhaustiveSelector(30, **PARAMS).fit(d["x"], d["q"], probe=runner(d, tmp_path)).selection_
    assert again.manifest["harp"]["probes_trained_now"] == 0
    assert np.array_equal(first.indices, again.indices)
    # HARP-C on the same hierarchy finds its representative leaves in the cache too
    c = HarpCSelector(30, **PARAMS).fit(d["x"], d["q"], probe=runner(d, tmp_path)).selection_
    assert c.manifest["harp"]["probes_trained_now"] == 0


def test_fill_false_keeps_only_the_best_prefix(tmp_path: Path) -> None:
    d = data()
    sel = HarpCSelector(200, fill=False, **PARAMS).fit(d["x"], d["q"], probe=runner(d, tmp_path)).selection_
    assert all(r["in_prefix"] for r in sel.reasons)
    assert len(sel) == sum(1 for r in sel.reasons if r["in_prefix"]) <= 200
    filled = HarpCSelector(200, **PARAMS).fit(d["x"], d["q"], probe=runner(d, tmp_path)).selection_
    assert len(filled) == 200


def test_domains_of_the_proxy_set(tmp_path: Path) -> None:
    d = data()
    domains = ["x" if a == "a0" else "y" for a in d["target_answers"]]
    sel = HarpESelector(30, **PARAMS).fit(d["x"], d["q"], probe=runner(d, tmp_path, domains)).selection_
    assert sel.manifest["harp"]["domains"] == ["x", "y"]
    assert set(sel.reasons[0]["effect"]) == {"x", "y"}


def test_needs_a_probe_and_good_parameters(tmp_path: Path) -> None:
    d = data()
    with pytest.raises(InputError, match="needs a probe"):
        HarpCSelector(10).fit(d["x"], d["q"])
    with pytest.raises(InputError, match="leaf_size"):
        HarpCSelector(10, leaf_size=0).fit(d["x"], d["q"], probe=runner(d, tmp_path))
    with pytest.raises(InputError, match="harp-e"):
        HarpCSelector(10, envelope="e").fit(d["x"], d["q"], probe=runner(d, tmp_path))
    assert get("harp-exhaustive") is HarpExhaustiveSelector


def test_select_end_to_end_with_the_surrogate(tmp_path: Path) -> None:
    d = data()
    pool = [{"text": f"pool {i}", "output": a} for i, a in enumerate(d["pool_answers"])]
    target = [{"text": f"target {i}", "output": a} for i, a in enumerate(d["target_answers"])]
    out = tmp_path / "run"
    sel = tasksift.select(pool, target, pool_vectors=d["x"], target_vectors=d["q"], method="harp-c", budget=25,
                          out=out, cache_dir=tmp_path / "cache", probe="embedding-classifier", probes="3",
                          leaf_size="10")
    assert len(sel) == 25
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["harp"]["probes"] == 3
    assert manifest["params"]["probes"] == 3
    hier = pq.read_table(out / "hierarchy.parquet").to_pandas()
    assert list(hier.columns[:2]) == ["id", "row"] and len(hier) == 240
    assert (out / "leaves.parquet").is_file()
    with pytest.raises(InputError, match="records"):
        tasksift.select(pool_vectors=d["x"], target_vectors=d["q"], method="harp-e", budget=5,
                        probe="embedding-classifier")


def test_cli_select_and_methods(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from tasksift.cli.app import app

    d = data()
    pool = tmp_path / "pool.jsonl"
    target = tmp_path / "target.jsonl"
    pool.write_text("".join(json.dumps({"text": f"pool {i}", "output": a}) + "\n"
                            for i, a in enumerate(d["pool_answers"])))
    target.write_text("".join(json.dumps({"text": f"target {i}", "output": a}) + "\n"
                              for i, a in enumerate(d["target_answers"])))
    np.save(tmp_path / "x.npy", d["x"])
    np.save(tmp_path / "q.npy", d["q"])
    out = tmp_path / "run"
    result = CliRunner().invoke(app, [
        "select", "--pool", str(pool), "--target", str(target), "--pool-vectors", str(tmp_path / "x.npy"),
        "--target-vectors", str(tmp_path / "q.npy"), "--method", "harp-e", "--budget", "20", "--out", str(out),
        "--cache-dir", str(tmp_path / "cache"), "--param", "probe=embedding-classifier",
        "--param", "leaf_size=10", "--param", "probe_seed=1"])
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["method"] == "harp-e" and manifest["params"]["probe_seed"] == 1
    assert manifest["counts"]["selected"] == 20
    bad = CliRunner().invoke(app, [
        "select", "--pool", str(pool), "--target", str(target), "--pool-vectors", str(tmp_path / "x.npy"),
        "--target-vectors", str(tmp_path / "q.npy"), "--method", "harp-c", "--budget", "20",
        "--out", str(tmp_path / "bad"), "--param", "probe=oracle"])
    assert bad.exit_code == 2 and "probe='oracle' is not allowed (probe takes one of lm, embedding-classifier)" \
        in bad.output
    listed = CliRunner().invoke(app, ["methods"])
    assert "harp-exhaustive" in listed.output
