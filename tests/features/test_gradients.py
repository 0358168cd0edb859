"""Per-example gradient features: batched hooks against a one-backward-per-example loop, the implicit random
projection against its explicit matrix, Adam preconditioning, the cache and the CLI."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
import typer
from typer.testing import CliRunner

from tasksift.util.errors import InputError
from tasksift.features.cache import default_cache_root
from tasksift.features.gradients import (
    TILE_ROWS,
    ProxyModel,
    ProxyTrainer,
    RandomProjection,
    WarmupSettings,
    cached_warmup,
    gradient_features,
    load_proxy,
    per_example_gradients,
    per_example_gradients_loop,
    proxy_spec,
    trainable_slots,
)
from tests.train.helpers import tiny_llama

# The user's model cache, read before the autouse fixture points TASKSIFT_CACHE at a temporary directory.
USER_MODELS = default_cache_root() / "models"

LLAMA_TEXTS = ["What colour is the fruit ? apple red", "Name the animal .", "It says moo . cow",
               "What colour is the fruit ? lime green What colour is the fruit ? plum blue", "banana"]
ENCODER_TEXTS = ["A short sentence.", "Another sentence that is a good deal longer than the first one, with commas.",
                 "ok", "Data selection picks the training examples that serve the target task best."]


def max_relative_error(batched: torch.Tensor, loop: torch.Tensor) -> float:
    """Largest ``||b - l|| / ||l||`` over the rows whose loop gradient is not zero (zero rows must match)."""
    norms = loop.norm(dim=1)
    assert torch.equal(batched[norms == 0], loop[norms == 0])
    return float(((batched - loop).norm(dim=1)[norms > 0] / norms[norms > 0]).max())


def randomise_lora_b(proxy: ProxyModel, std: float, seed: int = 0) -> None:
    """peft starts lora_B at zero, which zeroes lora_A's gradient; a random lora_B makes every block count."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in proxy.module.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * std)


@pytest.fixture(autouse=True)
def _one_thread(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """One torch thread: these small models gain nothing from two, and a busy shared machine punishes spinning."""
    before = torch.get_num_threads()
    monkeypatch.setattr("tasksift.train.common.default_threads", lambda: 1)
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_llama(tmp_path_factory.mktemp("grad-llama") / "tiny")


@pytest.fixture(scope="module")
def minilm() -> ProxyModel:
    proxy = load_proxy("minilm")
    randomise_lora_b(proxy, 0.02)
    return proxy


# -- projection ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["rademacher", "gaussian"])
def test_projection_equals_the_product_with_the_explicit_matrix(kind: str) -> None:
    in_dim = 2 * TILE_ROWS + 357  # three tiles, the last one partial
    proj = RandomProjection(in_dim, 24, seed=5, kind=kind)
    p = proj.matrix()
    assert p.shape == (in_dim, 24) and p.dtype == np.float32
    x = np.random.default_rng(0).normal(size=(7, in_dim)).astype(np.float32)
    expected = x.astype(np.float64) @ p.astype(np.float64)
    np.testing.assert_allclose(proj.project(x), expected, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(proj.project(torch.from_numpy(x)), expected, rtol=1e-4, atol=1e-4)
    if kind == "rademacher":
        assert set(np.unique(np.abs(p))) == {np.float32(1 / np.sqrt(24))}
        assert 0.45 < (p > 0).mean() < 0.55


def test_projection_tiles_depend_on_seed_and_tile_only() -> None:
    wide = RandomProjection(3 * TILE_ROWS, 16, seed=1)
    narrow = RandomProjection(TILE_ROWS + 10, 16, seed=1)
    np.testing.assert_array_equal(narrow.matrix(), wide.matrix()[: TILE_ROWS + 10])
    np.testing.assert_array_equal(RandomProjection(50, 16, seed=1).matrix(), wide.tile(0)[:50])
    assert not np.array_equal(RandomProjection(50, 16, seed=2).matrix(), wide.tile(0)[:50])
    assert not np.array_equal(wide.tile(0), wide.tile(1))


def test_projection_keeps_squared_norms_in_expectation() -> None:
    proj = RandomProjection(5000, 512, seed=0)
    x = np.random.default_rng(1).normal(size=(64, 5000)).astype(np.float32)
    ratio = (proj.project(x) ** 2).sum(1) / (x**2).sum(1)
    assert abs(ratio.mean() - 1) < 0.03 and ratio.min() > 0.75 and ratio.max() < 1.25


def test_projection_rejects_bad_shapes() -> None:
    with pytest.raises(ValueError, match="rows of 10 values"):
        RandomProjection(10, 4).project(np.zeros((2, 11), dtype=np.float32))
    with pytest.raises(ValueError, match="kind"):
        RandomProjection(10, 4, kind="sparse")
    assert RandomProjection(10, 4).project(np.zeros((0, 10))).shape == (0, 4)


# -- per-example gradients -----------------------------------------------------------------------------------
def test_tiny_llama_lora_batched_equals_loop(llama_dir: Path) -> None:
    proxy = load_proxy(llama_dir)
    randomise_lora_b(proxy, 0.1)
    assert proxy.kind == "causal-lm" and proxy.identity["target_modules"] == ["q_proj", "v_proj"]
    batched = proxy.gradients(LLAMA_TEXTS)
    loop = per_example_gradients_loop(proxy, LLAMA_TEXTS)
    assert batched.shape == (len(LLAMA_TEXTS), proxy.dim)
    assert max_relative_error(batched, loop) <= 1e-4
    a_cols = [s for s in proxy.slots if "lora_A" in s.module_name]
    assert all(batched[:, s.offset:s.offset + s.size].abs().sum() > 0 for s in a_cols)
    assert batched[-1].abs().sum() == 0  # "banana" is one token: nothing to predict, no gradient


def test_causal_lm_loss_is_the_models_own_loss(llama_dir: Path) -> None:
    """The per-example loss is Hugging Face's ``labels=input_ids`` loss, so the gradients are its gradients."""
    proxy = load_proxy(llama_dir)
    randomise_lora_b(proxy, 0.1)
    params = proxy.trainable_parameters()
    batched = proxy.gradients(LLAMA_TEXTS[:4])
    for row, text in enumerate(LLAMA_TEXTS[:4]):
        ids = torch.tensor([proxy.tokenizer(text)["input_ids"]])
        proxy.module.zero_grad(set_to_none=True)
        proxy.module(input_ids=ids, labels=ids).loss.backward()
        hf = torch.cat([p.grad.reshape(-1) for p in params])
        assert float((batched[row] - hf).norm() / hf.norm()) <= 1e-4


def test_minilm_lora_batched_equals_loop(minilm: ProxyModel) -> None:
    assert minilm.kind == "encoder" and minilm.dim == 6 * 2 * (8 * 384 + 384 * 8)
    batched = minilm.gradients(ENCODER_TEXTS + [""])
    loop = per_example_gradients_loop(minilm, ENCODER_TEXTS + [""])
    assert max_relative_error(batched, loop) <= 1e-4
    assert batched[-1].abs().sum() == 0  # no content token: loss 0


def test_a_proxy_on_an_unknown_or_missing_device_is_an_input_error(llama_dir: Path) -> None:
    proxy = load_proxy(llama_dir)
    with pytest.raises(InputError, match="cannot run the proxy model on 'warp-drive'"):
        proxy.to("warp-drive")
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="torch sees no CUDA device"):
            proxy.to("cuda")
    assert proxy.device == torch.device("cpu")
    assert proxy.gradients(LLAMA_TEXTS[:2]).device.type == "cpu"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("model", ["llama", "minilm"])
def test_gradients_on_a_gpu_equal_the_cpu_loop(model: str, llama_dir: Path) -> None:
    proxy = load_proxy(llama_dir) if model == "llama" else load_proxy("minilm")
    randomise_lora_b(proxy, 0.1)
    texts = LLAMA_TEXTS if model == "llama" else ENCODER_TEXTS
    on_cpu = per_example_gradients_loop(proxy, texts)
    proxy.to("cuda")
    batched = proxy.gradients(texts)
    assert batched.device.type == "cpu" and proxy.batch(texts).input_ids.device.type == "cuda"
    assert max_relative_error(batched, on_cpu) <= 1e-4


def test_minilm_named_linear_layers_with_bias_batched_equals_loop() -> None:
    proxy = load_proxy("minilm", params="linear",
                       target_modules=["layer.5.output.dense", "layer.0.attention.self.query"])
    slots = trainable_slots(proxy.module)
    assert [s.is_bias for s in slots] == [False, True, False, True]
    assert [s.module_name for s in slots][::2] == ["backbone.encoder.layer.0.attention.self.query",
                                                  "backbone.encoder.layer.5.output.dense"]
    assert proxy.dim == (384 * 384 + 384) + (384 * 1536 + 384)
    batched = proxy.gradients(ENCODER_TEXTS)
    assert max_relative_error(batched, per_example_gradients_loop(proxy, ENCODER_TEXTS)) <= 1e-4


def test_a_layer_called_twice_gets_the_sum_of_its_calls() -> None:
    torch.manual_seed(0)
    shared = torch.nn.Linear(5, 5)
    head = torch.nn.Linear(5, 1, bias=False)
    model = torch.nn.ModuleDict({"shared": shared, "head": head})
    x = torch.randn(6, 3, 5)

    def losses(inputs: torch.Tensor) -> torch.Tensor:
        h = torch.tanh(shared(torch.tanh(shared(inputs))))
        return (head(h) ** 2).mean(dim=(1, 2))

    batched = per_example_gradients(model, lambda: losses(x))
    params = [p for p in model.parameters() if p.requires_grad]
    loop = []
    for i in range(len(x)):
        grads = torch.autograd.grad(losses(x[i:i + 1])[0], params)
        loop.append(torch.cat([g.reshape(-1) for g in grads]))
    assert max_relative_error(batched, torch.stack(loop)) <= 1e-5


def test_a_trainable_parameter_outside_linear_layers_is_an_error() -> None:
    model = torch.nn.Sequential(torch.nn.Embedding(4, 3), torch.nn.Linear(3, 2))
    with pytest.raises(InputError, match="does not belong to a linear layer"):
        trainable_slots(model)


@pytest.mark.slow
def test_smollm2_lora_batched_equals_loop() -> None:
    from tasksift.train.models import smollm2_path

    proxy = load_proxy(smollm2_path(USER_MODELS, progress=False))
    assert proxy.dim == 460_800
    randomise_lora_b(proxy, 0.01)
    texts = ["The quick brown fox jumps over the lazy dog.", "Select the data that serves the task.",
             "A much longer example: per-example gradients from one batched pass equal the loop's, row by row."]
    assert max_relative_error(proxy.gradients(texts), per_example_gradients_loop(proxy, texts)) <= 1e-4


# -- warm-up, preconditioning, cache -------------------------------------------------------------------------
def test_gradient_features_are_projected_gradients_and_cached(llama_dir: Path, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    texts = LLAMA_TEXTS * 3
    first = gradient_features(texts, model=llama_dir, proj_dim=64, shard_size=4, batch_size=3, cache_dir=tmp_path,
                              progress=False)
    assert first.shape == (15, 64) and first.n_computed == 4 and first.kind == "gradients"
    proxy = load_proxy(llama_dir)
    expected = RandomProjection(proxy.dim, 64, seed=0).project(proxy.gradients(texts))
    np.testing.assert_allclose(first.matrix(), expected, rtol=1e-4, atol=1e-6)

    def no_loading(self: object) -> None:
        raise AssertionError("a fully cached run must not load the model")

    monkeypatch.setattr("tasksift.features.gradients.ProxySpec.load", no_loading)
    again = gradient_features(texts, model=llama_dir, proj_dim=64, shard_size=4, cache_dir=tmp_path, progress=False)
    assert again.n_computed == 0 and again.n_reused == 4
    np.testing.assert_array_equal(again.matrix(), first.matrix())


def test_an_interrupted_run_resumes_at_the_shard_it_was_computing(llama_dir: Path, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from tasksift.features.gradients import GradientFeaturizer

    texts = [f"{t} {i}" for i, t in enumerate(LLAMA_TEXTS * 2)]
    original = GradientFeaturizer.__call__
    calls: list[int] = []

    def dies_on_the_second_shard(self: GradientFeaturizer, chunk: list[str], advance: object = None) -> np.ndarray:
        calls.append(len(chunk))
        if len(calls) == 2:
            raise KeyboardInterrupt
        return original(self, chunk, advance)

    monkeypatch.setattr(GradientFeaturizer, "__call__", dies_on_the_second_shard)
    with pytest.raises(KeyboardInterrupt):
        gradient_features(texts, model=llama_dir, proj_dim=8, shard_size=3, cache_dir=tmp_path, progress=False)
    monkeypatch.setattr(GradientFeaturizer, "__call__", original)
    resumed = gradient_features(texts, model=llama_dir, proj_dim=8, shard_size=3, cache_dir=tmp_path,
                                progress=False)
    assert resumed.n_reused == 1 and resumed.n_computed == 3
    fresh = gradient_features(texts, model=llama_dir, proj_dim=8, shard_size=3, cache_dir=tmp_path / "fresh",
                              progress=False)
    np.testing.assert_allclose(resumed.matrix(), fresh.matrix(), rtol=1e-5, atol=1e-7)


def test_preconditioning_rules_use_the_warmups_adam_moments(llama_dir: Path, tmp_path: Path) -> None:
    warm = WarmupSettings(steps=3, lr=1e-2, batch_size=2, seed=0)
    spec = proxy_spec(llama_dir)
    plain = gradient_features(LLAMA_TEXTS, model=spec, proj_dim=0, warmup=warm, cache_dir=tmp_path, progress=False)
    adam = gradient_features(LLAMA_TEXTS, model=spec, proj_dim=0, warmup=warm, precondition=True,
                             cache_dir=tmp_path, progress=False)
    less = gradient_features(LLAMA_TEXTS, model=spec, proj_dim=0, warmup=warm, precondition="less",
                             cache_dir=tmp_path, progress=False)
    assert len({plain.cache_dir, adam.cache_dir, less.cache_dir}) == 3
    proxy = spec.load()
    state = cached_warmup(proxy, LLAMA_TEXTS, warm, cache_dir=tmp_path, progress=False)
    assert state.step == 3 and state.v.shape == (proxy.dim,) and float(state.v.min()) >= 0
    assert state.betas == (0.9, 0.999) and float(state.m.abs().max()) > 0
    # the warm-up trained lora_B away from zero, so lora_A's gradients are no longer zero
    assert any(float(p.abs().sum()) > 0 for p in state.params[1::2])
    g, m, v = plain.matrix().astype(np.float64), state.m.double().numpy(), state.v.double().numpy()
    v_hat = v / (1 - 0.999**3)
    np.testing.assert_allclose(adam.matrix(), g / (np.sqrt(v_hat) + 1e-8), rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(less.matrix(), (0.9 * m + 0.1 * g) / np.sqrt(0.999 * v + 0.001 * g**2 + 1e-8),
                               rtol=1e-4, atol=1e-6)
    # the warmed-up weights were restored from the cache: same gradients as the cached plain features
    np.testing.assert_allclose(proxy.gradients(LLAMA_TEXTS).numpy(), plain.matrix(), rtol=1e-4, atol=1e-7)


def test_a_warmup_is_run_once_and_then_read_back(llama_dir: Path, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    warm = WarmupSettings(steps=2, lr=1e-2, batch_size=2)
    first = cached_warmup(load_proxy(llama_dir), LLAMA_TEXTS, warm, cache_dir=tmp_path, progress=False)

    def no_training(*args: object, **kwargs: object) -> None:
        raise AssertionError("the saved warm-up must be reused")

    monkeypatch.setattr("tasksift.features.gradients.adam_warmup", no_training)
    again = cached_warmup(load_proxy(llama_dir), LLAMA_TEXTS, warm, cache_dir=tmp_path, progress=False)
    torch.testing.assert_close(again.v, first.v)
    torch.testing.assert_close(again.m, first.m)
    assert again.losses == first.losses and len(first.losses) == 2


def test_a_proxy_whose_adapters_changed_cannot_fill_another_cache_entry(llama_dir: Path, tmp_path: Path) -> None:
    proxy = load_proxy(llama_dir)
    warm = WarmupSettings(steps=1, batch_size=2)
    gradient_features(LLAMA_TEXTS, model=proxy, proj_dim=8, warmup=warm, cache_dir=tmp_path, progress=False)
    with pytest.raises(InputError, match="changed by a warm-up"):
        gradient_features(LLAMA_TEXTS, model=proxy, proj_dim=8, cache_dir=tmp_path, progress=False)
    with pytest.raises(InputError, match="already changed"):
        cached_warmup(proxy, LLAMA_TEXTS, WarmupSettings(steps=2, batch_size=2), cache_dir=tmp_path, progress=False)
    # the same warm-up again is fine: its saved weights are read back
    again = gradient_features(LLAMA_TEXTS, model=proxy, proj_dim=8, warmup=warm, precondition="less",
                              cache_dir=tmp_path, progress=False)
    assert again.shape == (len(LLAMA_TEXTS), 8)


def test_preconditioning_without_a_warmup_is_refused(llama_dir: Path) -> None:
    with pytest.raises(InputError, match="warm-up"):
        gradient_features(LLAMA_TEXTS, model=llama_dir, precondition=True, progress=False)
    with pytest.raises(InputError, match="preconditioning rule"):
        gradient_features(LLAMA_TEXTS, model=llama_dir, precondition="sgd", progress=False)
    with pytest.raises(InputError, match="target_modules"):
        proxy_spec(llama_dir, params="linear")
    with pytest.raises(InputError, match="not found"):
        proxy_spec("/no/such/model")


def test_proxy_trainer_steps_change_the_gradients(llama_dir: Path) -> None:
    from tasksift.features.gradients import GradientFeaturizer

    proxy = load_proxy(llama_dir)
    trainer = ProxyTrainer(GradientFeaturizer(proxy, projection=RandomProjection(proxy.dim, 32)), LLAMA_TEXTS,
                           lr=1e-2)
    before = trainer.gradients(np.array([0, 3]))
    loss = trainer.step(np.array([0, 1, 3]))
    after = trainer.gradients(np.array([0, 3]))
    assert before.shape == (2, 32) and np.isfinite(loss) and trainer.steps == 1
    assert not np.allclose(before, after)
    assert trainer.describe()["steps"] == 1


# -- CLI -----------------------------------------------------------------------------------------------------
def cli_app() -> typer.Typer:
    from tasksift.cli.gradients import gradients_command

    app = typer.Typer()
    app.command(name="gradients")(gradients_command)
    app.command(name="noop")(lambda: None)  # two commands, so "gradients" is addressed by name as in cli.py
    return app


def test_cli_fills_the_cache_and_resumes(llama_dir: Path, tmp_path: Path) -> None:
    records = tmp_path / "pool.jsonl"
    records.write_text("".join(json.dumps({"text": t}) + "\n" for t in LLAMA_TEXTS), encoding="utf-8")
    out = tmp_path / "g.npy"
    args = ["gradients", "--in", str(records), "--model", str(llama_dir), "--dim", "16", "--shard-size", "2",
            "--cache-dir", str(tmp_path / "cache"), "--out", str(out)]
    runner = CliRunner()
    first = runner.invoke(cli_app(), args)
    assert first.exit_code == 0, first.output
    assert "3 shards computed, 0 reused" in first.output
    assert np.load(out).shape == (5, 16)
    again = runner.invoke(cli_app(), args)
    assert again.exit_code == 0 and "0 shards computed, 3 reused" in again.output
    bad = runner.invoke(cli_app(), [*args[:5], "--precondition", "adam"])
    assert bad.exit_code == 2 and "warm-up" in bad.output
