"""Golden tests: the exact selections and cache keys of the current code, pinned before a refactor.

Every selector the registry offers runs through ``tasksift.select`` on small inputs built here from seeded numpy
generators; its ids (in rank order), weights and scores must equal the values stored in ``expected.json``
(ids and weights exactly, scores to ``rtol=1e-6``). The feature-cache, training-store and evaluation keys must
equal their stored strings exactly, and so must the file layout a run leaves in its cache directory.

Methods that need a model run on the models that load in seconds: sentence embeddings and gradient features
on the bundled all-MiniLM-L6-v2 (the default model), HARP's LM probe on the tiny random Llama of the train
tests (SmolLM2, its default, needs a download). HARP also runs with its surrogate probe, which needs none.

``expected.json`` was written once from the code at commit 0e3225c; a failure here means a selection or a key
changed. Do not regenerate it to make a failure go away: find out what changed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import tasksift

# ---------------------------------------------------------------------------------------------------------------
# Every import below the top-level package, in one place, to re-point when modules move.
# ---------------------------------------------------------------------------------------------------------------
from tasksift.eval import (
    load_task,  # a task directory; Task.fingerprint() keys eval.json results
    make_settings,  # the evaluation harness's training settings (run_key's input)
)
from tasksift.features.cache import (
    DEFAULT_SHARD_SIZE,  # rows per embedding shard (part of the cache key)
    FeatureCache,  # the feature cache; .key / .dir name a cache folder
    canonical_json,  # the JSON that settings_key hashes
    settings_key,  # sha256 of canonical settings: a cache folder's name
    shard_key,  # sha256 of a shard's texts: a shard file's name
)
from tasksift.features.embed import (
    Embedder,  # embedding model wrapper; cache_settings() without loading
    default_model_path,  # folder of the bundled all-MiniLM-L6-v2
    model_fingerprint,  # content hash of a model folder
)
from tasksift.features.gradients import (
    RandomProjection,  # projection; settings() enters the gradient key
    gradient_settings,  # the cache settings of gradient features
    key_identity,  # proxy identity without name and path
    proxy_spec,  # the gradient proxy, resolved without loading it
    texts_digest,  # digest of the warm-up texts (in the warm-up key)
    warmup_sample,  # the seeded warm-up sample of the pool texts
)
from tasksift.features.gradients.recipe import GradientRecipe  # feature settings of a gradient selector
from tasksift.selectors import available  # the selector registry: name -> class
from tasksift.train.store import (
    eval_set_key,  # key of a test set in the training store
    run_key,  # key of a finetuning run in the training store
)
from tests.train.helpers import (
    COLOURS,  # the tiny tasks' colour words (the tiny Llama knows them)
    FRUITS,  # fruit -> colour, the tiny tasks' words
    instruction_task,  # a hand-written instruction task directory
    tiny_llama,  # a seeded random 2-layer Llama saved to a folder
)

EXPECTED: dict[str, Any] = json.loads((Path(__file__).with_name("expected.json")).read_text(encoding="utf-8"))
#: relative tolerance of scores (ids and weights are compared exactly)
RTOL = 1e-6
#: for scores computed from a model's float32 features: a different torch thread count moved them by up to 9.4e-7
#: relative (1 thread against 2), too close to RTOL
RTOL_MODEL = 1e-5

# ---------------------------------------------------------------------------------------------------------------
# inputs
# ---------------------------------------------------------------------------------------------------------------
WORDS = ["apple", "river", "stone", "cloud", "green", "swift", "metal", "paper", "light", "ocean", "tiger", "bread"]


def vectors() -> tuple[np.ndarray, np.ndarray]:
    """Pool: 150 rows of 8 dims around 5 centres (tight enough that TSDS's densities exceed 1); target: 8 rows
    near centres 0, 1 and 2."""
    rng = np.random.default_rng(20240601)
    centres = rng.normal(size=(5, 8)) * 2.0
    topic = rng.integers(0, 5, size=150)
    x = (centres[topic] + 0.3 * rng.normal(size=(150, 8))).astype(np.float32)
    q = (centres[[0, 0, 1, 1, 2, 0, 1, 0]] + 0.3 * rng.normal(size=(8, 8))).astype(np.float32)
    return x, q


def sentences(rng: np.random.Generator, n: int, words: list[str]) -> list[str]:
    """``n`` texts of 4 to 8 words drawn from ``words``."""
    return [" ".join(rng.choice(words, size=int(rng.integers(4, 9)))) for _ in range(n)]


def text_records(n_pool: int, n_target: int) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """Pool texts over all of WORDS, target texts over its first five words (ids: content hashes)."""
    rng = np.random.default_rng(7)
    pool = [{"text": t} for t in sentences(rng, n_pool, WORDS)]
    target = [{"text": t} for t in sentences(rng, n_target, WORDS[:5])]
    return pool, target


def write_pairs(path: Path) -> Path:
    """A jsonl file of 12 retrieval pairs: 6 queries with 2 documents each."""
    rng = np.random.default_rng(5)
    rows = [{"query_id": f"q{qi}", "query": f"what is {WORDS[qi]}", "document": " ".join(rng.choice(WORDS, size=6))}
            for qi in range(6) for _ in range(2)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def harp_data() -> dict[str, Any]:
    """HARP inputs: 60 pool rows in 4 topics (topic t answers COLOURS[t] about a fruit of that colour), 6 target
    rows of topics 0 and 1, with vectors around one centre per topic."""
    rng = np.random.default_rng(11)
    centres = rng.normal(size=(4, 8)) * 3
    topic = np.repeat(np.arange(4), 15)
    x = (centres[topic] + rng.normal(size=(60, 8))).astype(np.float32)
    t_topic = np.array([0, 1] * 3)
    q = (centres[t_topic] + rng.normal(size=(6, 8))).astype(np.float32)
    fruits = {c: [f for f, colour in FRUITS.items() if colour == c] for c in COLOURS}

    def record(i: int, t: int, what: str) -> dict[str, str]:
        colour = COLOURS[t]
        return {"instruction": "What colour is the fruit?", "input": fruits[colour][i % 2], "output": colour,
                "text": f"{what} {i}"}

    pool = [record(i, int(t), "pool") for i, t in enumerate(topic)]
    target = [record(i, int(t), "target") for i, t in enumerate(t_topic)]
    return {"x": x, "q": q, "pool": pool, "target": target}


HARP_PARAMS: dict[str, Any] = {"leaf_size": 5, "leaves_per_parent": 3, "parents_per_region": 2}

# ---------------------------------------------------------------------------------------------------------------
# checks
# ---------------------------------------------------------------------------------------------------------------


def snapshot(sel: tasksift.Selection) -> dict[str, Any]:
    """What is pinned of a selection: ids in rank order, weights, scores (full float precision) and every side
    table (TSDS's probabilities, HARP's hierarchy and leaves) column by column, NaN written as None."""
    tables = {}
    for name, table in sorted(sel.tables.items()):
        tables[name] = {col: [None if isinstance(v, float) and np.isnan(v) else v for v in values]
                        for col, values in table.to_pydict().items()}
    return {"ids": list(sel.ids), "weights": [float(w) for w in sel.weights],
            "scores": [float(s) for s in sel.scores], "tables": tables}


def floats(values: list[Any]) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in values], dtype=np.float64)


def check(sel: tasksift.Selection, name: str, rtol: float = RTOL) -> None:
    """``sel`` equals the stored selection ``name``: ids, weights and the side tables' whole-number, boolean and
    text columns exactly; scores and float columns to ``rtol``."""
    want = EXPECTED["selections"][name]
    got = snapshot(sel)
    assert got["ids"] == want["ids"], f"{name}: the selected ids changed"
    assert got["weights"] == want["weights"], f"{name}: the weights changed"
    np.testing.assert_allclose(got["scores"], want["scores"], rtol=rtol, atol=0, err_msg=f"{name}: scores")
    assert sorted(got["tables"]) == sorted(want["tables"]), f"{name}: the side tables changed"
    for table, columns in want["tables"].items():
        assert list(got["tables"][table]) == list(columns), f"{name}: the columns of {table} changed"
        for col, values in columns.items():
            mine = got["tables"][table][col]
            if any(isinstance(v, float) for v in values):
                np.testing.assert_allclose(floats(mine), floats(values), rtol=rtol, atol=0,
                                           err_msg=f"{name}: {table}.{col}")
            else:
                assert mine == values, f"{name}: {table}.{col} changed"


def cache_files(root: Path) -> list[str]:
    """Every file under a cache root, relative and sorted: the folder and file names are the cache keys."""
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


@pytest.fixture(scope="module")
def isolated_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A fresh cache root in $TASKSIFT_CACHE for this module's shared fixtures (each run also gets its own
    cache_dir, so nothing is reused from another test module)."""
    root = tmp_path_factory.mktemp("golden-cache-env")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TASKSIFT_CACHE", str(root))
        yield root


# ---------------------------------------------------------------------------------------------------------------
# the registry
# ---------------------------------------------------------------------------------------------------------------


def test_the_registry_offers_the_pinned_methods() -> None:
    """Every registered selector is pinned below; a new or renamed method must be added here."""
    methods = available()
    assert sorted(methods) == EXPECTED["methods"]
    got = {name: {"needs": cls.needs, "features": cls.features, "needs_target": cls.needs_target,
                  "feature_defaults": dict(cls.feature_defaults)} for name, cls in methods.items()}
    assert got == EXPECTED["method_kinds"]


# ---------------------------------------------------------------------------------------------------------------
# selections on vectors (no model)
# ---------------------------------------------------------------------------------------------------------------
VECTOR_CASES: dict[str, tuple[str, dict[str, Any]]] = {
    "random/vectors": ("random", {}),
    "knn/vectors": ("knn", {}),
    "knn/vectors-l2": ("knn", {"metric": "l2"}),
    "tsds/vectors": ("tsds", {}),
    "tsds/vectors-reference-without-replacement": ("tsds", {"density": "reference",
                                                            "sampling": "without_replacement"}),
    "tsds/vectors-ivf": ("tsds", {"density": "ivf"}),
    "tsds/vectors-cosine-alpha": ("tsds", {"metric": "cosine", "alpha": 0.9, "sigma": 0.2}),
    "less/vectors": ("less", {}),
    "less/vectors-domains": ("less", {"domains": ["a", "a", "b", "b", "c", "a", "b", "a"]}),
    "spice/vectors": ("spice", {}),
    "spice/vectors-diag-window": ("spice", {"fisher": "diag", "window": 40, "lam": 0.5}),
    "spice/vectors-omega": ("spice", {"omega": 0.5, "window": 75}),
    "fishersft/vectors": ("fishersft", {}),
}


@pytest.mark.parametrize("name", list(VECTOR_CASES))
def test_selection_on_vectors(name: str) -> None:
    """Vector selectors on bare arrays (ids are row numbers): budget 20, seed 3."""
    method, params = VECTOR_CASES[name]
    x, q = vectors()
    sel = tasksift.select(pool_vectors=x, target_vectors=q, method=method, budget=20, seed=3, **params)
    check(sel, name)


@pytest.mark.parametrize("method", ["harp-c", "harp-e", "harp-exhaustive"])
def test_harp_with_the_surrogate_probe(method: str, tmp_path: Path) -> None:
    """HARP on records with vectors and the embedding-classifier probe (no model): budget 12, seed 0; pins the
    selection, the number of probes and the probe cache's files."""
    d = harp_data()
    sel = tasksift.select(d["pool"], d["target"], pool_vectors=d["x"], target_vectors=d["q"], method=method,
                          budget=12, seed=0, cache_dir=tmp_path, probe="embedding-classifier", **HARP_PARAMS)
    check(sel, f"{method}/records+vectors-embedding-classifier")
    assert sel.manifest["harp"]["probes"] == EXPECTED["harp_probes"][method]
    assert cache_files(tmp_path) == EXPECTED["harp_surrogate_cache_files"][method]


# ---------------------------------------------------------------------------------------------------------------
# selections on text records (no model)
# ---------------------------------------------------------------------------------------------------------------
TEXT_CASES: dict[str, tuple[str, dict[str, Any]]] = {
    "random/records": ("random", {}),
    "dsir/records": ("dsir", {}),
    "dsir/records-topk": ("dsir", {"sampling": "topk"}),
    "dsir/records-unigrams-64-buckets": ("dsir", {"num_buckets": 64, "ngrams": 1, "seed": 4}),
}


@pytest.mark.parametrize("name", list(TEXT_CASES))
def test_selection_on_text_records(name: str) -> None:
    """Text selectors on lists of dicts (ids are content hashes): 60 pool texts, 8 targets, budget 10."""
    method, params = TEXT_CASES[name]
    pool, target = text_records(60, 8)
    sel = tasksift.select(pool, target, method=method, budget=10, **{"seed": 1, **params})
    check(sel, name)


# ---------------------------------------------------------------------------------------------------------------
# selections through the bundled embedding model
# ---------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def embedding_runs(tmp_path_factory: pytest.TempPathFactory, isolated_env: Path) -> dict[str, Any]:
    """OPERA's static pruning in three modes on a pairs file and kNN on text records, all embedded by the
    default model into one fresh cache; with the cache's files and the manifests' feature records."""
    tmp = tmp_path_factory.mktemp("golden-embeddings")
    cache = tmp / "cache"
    pairs = write_pairs(tmp / "pairs.jsonl")
    runs: dict[str, Any] = {}
    for mode in ("easy", "hard", "random"):
        runs[f"opera-sp/pairs-{mode}"] = tasksift.select(pairs, method="opera-sp", budget=6, seed=2, mode=mode,
                                                         cache_dir=cache)
    pool, target = text_records(24, 4)
    runs["knn/records-embedded"] = tasksift.select(pool, target, method="knn", budget=6, seed=0, cache_dir=cache)
    return {"selections": runs, "files": cache_files(cache)}


@pytest.mark.parametrize("name", ["opera-sp/pairs-easy", "opera-sp/pairs-hard", "opera-sp/pairs-random",
                                  "knn/records-embedded"])
def test_selection_through_embeddings(name: str, embedding_runs: dict[str, Any]) -> None:
    """Selections on all-MiniLM-L6-v2 embeddings of the records."""
    check(embedding_runs["selections"][name], name, RTOL_MODEL)


def test_embedding_cache_keys_of_the_runs(embedding_runs: dict[str, Any]) -> None:
    """The embedding cache's folder key in the manifests and every file the runs left in the cache."""
    sels = embedding_runs["selections"]
    opera = sels["opera-sp/pairs-easy"].manifest["features"]
    knn = sels["knn/records-embedded"].manifest["features"]
    keys = {"queries": opera["queries"]["settings_key"], "documents": opera["documents"]["settings_key"],
            "pool": knn["pool"]["settings_key"], "target": knn["target"]["settings_key"]}
    assert keys == EXPECTED["embedding_run_keys"]
    assert embedding_runs["files"] == EXPECTED["embedding_cache_files"]


# ---------------------------------------------------------------------------------------------------------------
# selections through gradient features of the bundled model
# ---------------------------------------------------------------------------------------------------------------
GRADIENT_CASES: dict[str, tuple[str, dict[str, Any]]] = {
    "less/records-gradients": ("less", {}),
    "spice/records-gradients": ("spice", {}),
    "fishersft/records-gradients": ("fishersft", {}),
    # records and a window: SPICE steps the proxy every T selections and re-reads later windows' gradients
    "spice/records-gradients-interleaved": ("spice", {"window": 8, "T": 2}),
}


@pytest.fixture(scope="module")
def gradient_runs(tmp_path_factory: pytest.TempPathFactory, isolated_env: Path) -> dict[str, Any]:
    """The gradient selectors on 16 pool and 4 target texts with their default feature recipes (MiniLM proxy,
    LoRA, 1024-dim projection; LESS with its 8-step warm-up), all in one fresh cache."""
    cache = tmp_path_factory.mktemp("golden-gradients") / "cache"
    pool, target = text_records(16, 4)
    # model="minilm": the pinned rows are MiniLM's (the gradient selectors' default proxy is now SmolLM2, a
    # deliberate change; SmolLM2's rows are checked against a per-example loop in tests/features/gradients)
    runs = {name: tasksift.select(pool, target, method=method, budget=5, seed=1, cache_dir=cache, model="minilm",
                                  **params)
            for name, (method, params) in GRADIENT_CASES.items()}
    return {"selections": runs, "files": cache_files(cache)}


@pytest.mark.parametrize("name", list(GRADIENT_CASES))
def test_selection_through_gradients(name: str, gradient_runs: dict[str, Any]) -> None:
    """Gradient selectors on per-example gradient features computed from the records."""
    check(gradient_runs["selections"][name], name, RTOL_MODEL)


def test_gradient_cache_keys_of_the_runs(gradient_runs: dict[str, Any]) -> None:
    """The gradient cache's folder keys in the manifests and every file the runs left in the cache (feature
    shards, the warm-up state)."""
    keys = {name: {side: sel.manifest["features"][side]["settings_key"]
                   for side in ("pool", "target") if "settings_key" in sel.manifest["features"].get(side, {})}
            for name, sel in gradient_runs["selections"].items()}
    # changed after the pin, deliberately: with windows, spice's proxy computes every window's rows (no pool pass)
    assert gradient_runs["selections"]["spice/records-gradients-interleaved"].manifest["features"]["pool"] == {
        "computed": "by the selector, as it reads them"}
    assert keys == EXPECTED["gradient_run_keys"]
    files = gradient_runs["files"]
    proxy = [f for f in files if f.startswith("proxy-gradients/")]
    assert [f for f in files if f not in proxy] == EXPECTED["gradient_cache_files"]
    # added after the pin, deliberately: spice's two windows, each kept under a key of the proxy's weights as the
    # window starts (the second after its steps: training arithmetic, whose last bits may differ from one CPU to
    # another, so the names are not pinned)
    assert len(proxy) == 2 and all(re.fullmatch(r"proxy-gradients/[0-9a-f]{64}\.npy", f) for f in proxy)


# ---------------------------------------------------------------------------------------------------------------
# HARP's LM probe on a tiny random Llama
# ---------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_llama_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_llama(tmp_path_factory.mktemp("golden-tiny-llama"))


@pytest.mark.parametrize("method", ["harp-c", "harp-exhaustive"])
def test_harp_with_the_lm_probe(method: str, tiny_llama_dir: Path, tmp_path: Path, isolated_env: Path) -> None:
    """HARP with its default probe kind (LoRA finetuning of a causal LM, option likelihood on the target) on
    the tiny Llama, 2 steps per leaf; pins the selection and the probe cache's files."""
    d = harp_data()
    sel = tasksift.select(d["pool"], d["target"], pool_vectors=d["x"], target_vectors=d["q"], method=method,
                          budget=12, seed=0, cache_dir=tmp_path / "cache", probe="lm",
                          probe_model=str(tiny_llama_dir), probe_steps=2, probe_batch_size=4, probe_max_length=16,
                          bootstrap=20, **HARP_PARAMS)
    check(sel, f"{method}/records+vectors-lm-tiny-llama")
    assert cache_files(tmp_path / "cache") == EXPECTED["harp_lm_cache_files"][method]


# ---------------------------------------------------------------------------------------------------------------
# cache keys as pure functions
# ---------------------------------------------------------------------------------------------------------------
SETTINGS = {"model": "m", "dim": 384, "normalize": True, "nested": {"b": [1, 2.5, None], "a": "é"}, "shard_size": 7}
TEXTS = ["first text", "", "ünïcödé ✓", "a\nb\tc", "first text"]


def test_feature_cache_keys() -> None:
    """settings_key, canonical_json, shard_key and the folder FeatureCache makes of them."""
    want = EXPECTED["keys"]
    assert canonical_json(SETTINGS) == want["canonical_json"]
    assert settings_key(SETTINGS) == want["settings_key"]
    assert settings_key({}) == want["settings_key_empty"]
    assert shard_key(TEXTS) == want["shard_key"]
    assert shard_key(TEXTS[:1]) == want["shard_key_one"]
    assert shard_key([]) == want["shard_key_empty"]
    cache = FeatureCache(Path("/root-of-cache"), "embeddings", {"model": "m"})
    assert cache.key == want["feature_cache_default_shard_key"]
    assert cache.dir.as_posix() == f"/root-of-cache/embeddings/{want['feature_cache_default_shard_key']}"
    assert [key for _, _, key in FeatureCache(None, "k", {"shard_size": 2}).plan(TEXTS)] == want["plan_keys"]


def test_embedding_cache_key_of_the_default_model() -> None:
    """The default model's fingerprint, its cache settings (without loading it) and the folder they name."""
    want = EXPECTED["keys"]
    assert model_fingerprint(default_model_path()) == want["minilm_fingerprint"]
    settings = Embedder().cache_settings()
    assert settings == want["embedding_settings"]
    cache = FeatureCache(Path("/c"), "embeddings", {**settings, "shard_size": DEFAULT_SHARD_SIZE})
    assert cache.dir.relative_to("/c").as_posix() == want["embedding_cache_folder"]


@pytest.mark.parametrize("method", ["less", "spice", "fishersft"])
def test_gradient_cache_key_from_the_recipe(method: str) -> None:
    """A gradient selector's default recipe -> gradient_settings -> the cache folder key, built the way
    gradient_features builds it (no model is loaded); the same keys as the runs above."""
    pool, _ = text_records(16, 4)
    texts = [r["text"] for r in pool]
    recipe = GradientRecipe.of(available()[method].feature_defaults, None)
    v = recipe.values
    assert v == EXPECTED["keys"]["gradient_recipes"][method]
    spec = proxy_spec(None, **recipe.spec_kwargs())
    identity = spec.identity()
    assert key_identity(identity) == EXPECTED["keys"]["gradient_proxy_identity"]
    projection = RandomProjection(1, v["proj_dim"], seed=v["seed"], kind=v["projection"]).settings()
    warmup = recipe.warmup
    warm_key = None if warmup is None else {**asdict(warmup), "texts": texts_digest(warmup_sample(texts, warmup))}
    pool_settings = gradient_settings(identity, projection, warm_key, recipe.precondition)
    target_settings = gradient_settings(identity, projection, warm_key, None)
    got = {"pool": FeatureCache(None, "gradients", {**pool_settings, "shard_size": v["shard_size"]}).key,
           "target": FeatureCache(None, "gradients", {**target_settings, "shard_size": v["shard_size"]}).key}
    assert got == EXPECTED["keys"]["gradient_recipe_keys"][method]
    ran = EXPECTED["gradient_run_keys"][f"{method}/records-gradients"]  # spice and fishersft read no target
    assert {side: got[side] for side in ran} == ran
    assert texts_digest(texts) == EXPECTED["keys"]["texts_digest"]


def test_training_store_and_evaluation_keys(tmp_path: Path) -> None:
    """run_key (with the harness's default instruction settings and a fixed dict), eval_set_key and the
    fingerprint of a hand-written task directory."""
    want = EXPECTED["keys"]
    prompts = ["What colour is the fruit?\napple\n", "What colour is the fruit?\nlime\n"]
    answers = ["red", "green"]
    settings = make_settings("instruction").to_dict()
    assert json.loads(json.dumps(settings)) == want["instruction_settings"]
    assert run_key("f" * 64, settings, 0, [prompts, answers]) == want["run_key_instruction_defaults"]
    assert run_key("abc", {"lr": 0.1, "steps": 3}, 7, [prompts, answers]) == want["run_key_fixed"]
    assert run_key("abc", {"lr": 0.1, "steps": 3}, 8, [prompts, answers]) == want["run_key_fixed_seed8"]
    options = [["red", "green", "blue"], ["green", "yellow"]]
    assert eval_set_key(prompts, options, [0, 0]) == want["eval_set_key"]
    assert eval_set_key() == want["eval_set_key_empty"]
    assert load_task(instruction_task(tmp_path)).fingerprint() == want["instruction_task_fingerprint"]
