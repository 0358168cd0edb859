"""Gradient features as `tasksift.select` builds them for LESS and SPICE (MiniLM proxy, tiny texts)."""

import numpy as np
import pytest

import tasksift
from tasksift.features.gradients import WarmupSettings, gradient_features
from tasksift.features.gradients.recipe import (
    GRADIENT_FEATURE_DEFAULTS,
    GradientRecipe,
    proxy_trainer,
    selection_gradients,
)
from tasksift.util.errors import InputError

POOL = [f"example {i} about cats and their owners" if i % 2 else f"stock report number {i} for the day"
        for i in range(20)]
TARGET = ["my cat sleeps all day", "quarterly stock report"]


def test_recipe_checks_and_types_its_settings() -> None:
    recipe = GradientRecipe.of({"warmup_steps": 8, "precondition": "less"}, {"proj_dim": "32", "warmup_lr": "1e-3"})
    assert recipe.values["proj_dim"] == 32 and recipe.values["warmup_lr"] == 1e-3
    assert recipe.precondition == "less"
    assert recipe.warmup == WarmupSettings(steps=8, lr=1e-3, batch_size=8, sample=256, seed=0)
    with pytest.raises(InputError, match="gradient features has no parameter 'depth'"):
        GradientRecipe.of({}, {"depth": 3})
    with pytest.raises(InputError, match="needs Adam moments from a warm-up"):
        GradientRecipe.of({}, {"precondition": "adam"})
    with pytest.raises(InputError, match="whole number"):
        GradientRecipe.of({}, {"proj_dim": "1.5"})


@pytest.mark.parametrize(("given", "named"), [
    ({"lora_r": 0}, "lora_r=0"), ({"max_length": "1"}, "max_length='1'"), ({"warmup_steps": -1}, "warmup_steps=-1"),
    ({"warmup_lr": "0"}, "warmup_lr='0'"), ({"precondition": "sgd"}, "none, adam, less"),
    ({"projection": "sparse"}, "rademacher, gaussian"), ({"kind": "seq2seq"}, "auto, causal-lm, encoder"),
    ({"params": "all"}, "lora, linear"), ({"seed": True}, "seed=True"), ({"proxy_lr": "fast"}, "proxy_lr='fast'"),
])
def test_a_bad_feature_value_names_the_setting_and_what_it_takes(given: dict, named: str) -> None:
    with pytest.raises(InputError, match="gradient features") as err:
        GradientRecipe.of({}, given)
    assert named in str(err.value) and next(iter(given)) in str(err.value)


def test_settings_from_text_are_typed_like_python_values() -> None:
    text = GradientRecipe.of({}, {"proj_dim": "none", "warmup_sample": "none", "warmup_steps": "2",
                                  "lora_alpha": "32", "warmup_lr": "1e-3"})
    typed = GradientRecipe.of({}, {"proj_dim": None, "warmup_sample": None, "warmup_steps": 2, "lora_alpha": 32,
                                   "warmup_lr": 0.001})
    assert text == typed and text.chain_kwargs()["proj_dim"] is None
    assert text.spec_kwargs()["lora_alpha"] == 32 and text.warmup.sample is None
    assert GradientRecipe.of({}, {}).values == GRADIENT_FEATURE_DEFAULTS


def test_pool_is_preconditioned_and_targets_plain_in_one_warmed_up_space(tmp_path) -> None:
    recipe = GradientRecipe.of({"warmup_steps": 2, "precondition": "less"}, {"proj_dim": 32})
    pool, target = selection_gradients(POOL, TARGET, recipe, model="minilm", cache_dir=tmp_path, progress=False)
    warm = WarmupSettings(steps=2)
    direct_pool = gradient_features(POOL, proj_dim=32, warmup=warm, precondition="less", cache_dir=tmp_path / "b",
                                    progress=False).matrix()
    direct_target = gradient_features(TARGET, proj_dim=32, warmup=warm, warmup_texts=POOL, cache_dir=tmp_path / "b",
                                      progress=False).matrix()
    np.testing.assert_allclose(pool.matrix(), direct_pool, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(target.matrix(), direct_target, rtol=1e-4, atol=1e-6)
    assert pool.info()["settings"]["warmup"] == target.info()["settings"]["warmup"] is not None
    assert pool.info()["settings"]["precondition"] == "less" and target.info()["settings"]["precondition"] is None


@pytest.mark.parametrize("settings", [{"proj_dim": 32}, {"proj_dim": 32, "warmup_steps": 2, "precondition": "adam"}])
def test_spice_trainer_reads_the_space_of_the_cached_features(tmp_path, settings: dict) -> None:
    recipe = GradientRecipe.of({}, settings)
    pool, _ = selection_gradients(POOL, None, recipe, model=None, cache_dir=tmp_path, progress=False)
    trainer = proxy_trainer(POOL, recipe, model=None, cache_dir=tmp_path, progress=False)
    rows = np.array([3, 0, 7])
    fresh, cached = trainer.gradients(rows), pool.matrix()[rows]
    # equal up to float32 noise of the batch's padding, measured against each row's scale
    assert np.all(np.abs(fresh - cached).max(axis=1) <= 1e-4 * np.abs(cached).max(axis=1))
    assert trainer.featurizer.settings == {k: v for k, v in pool.info()["settings"].items() if k != "shard_size"}
    trainer.step(rows)  # the weights move, so the rows' gradients do too
    moved = trainer.gradients(rows)
    assert np.all(np.abs(moved - cached).max(axis=1) > 1e-2 * np.abs(cached).max(axis=1))


def test_select_wires_less_recipe_and_spice_proxy(tmp_path) -> None:
    pool = [{"text": t} for t in POOL]
    less = tasksift.select(pool, [{"text": t} for t in TARGET], method="less", budget=3, cache_dir=tmp_path,
                           features={"warmup_steps": 2, "proj_dim": 32})
    info = less.manifest["features"]
    assert info["pool"]["settings"]["precondition"] == "less" and info["target"]["settings"]["precondition"] is None
    assert less.manifest["call"]["features"] == {"warmup_steps": 2, "proj_dim": 32}
    shards = sorted(tmp_path.glob("gradients/*/*.npy"))
    spice = tasksift.select(pool, None, method="spice", budget=6, window=8, T=2, cache_dir=tmp_path,
                            features={"proj_dim": 32})
    proxy = spice.manifest["proxy"]
    # the proxy computes all three windows' rows (the first from its unstepped weights), the last two after a step;
    # no pass over the whole pool came first
    assert proxy["steps"] == 3 and proxy["computed_windows"] == 3 and proxy["refreshed_windows"] == 2
    assert proxy["helper"]["gradients_reused"] == 0 and sorted(tmp_path.glob("gradients/*/*.npy")) == shards
    assert spice.manifest["features"]["pool"] == {"computed": "by the selector, as it reads them"}
    assert spice.manifest["features"]["proxy"] == "smollm2" and spice.manifest["features"]["loss"] == "text"
    # run again (as after a kill): the proxy's steps are replayed and every window's rows come from the cache
    again = tasksift.select(pool, None, method="spice", budget=6, window=8, T=2, cache_dir=tmp_path,
                            features={"proj_dim": 32})
    assert again.manifest["proxy"]["helper"]["gradients_reused"] == 3
    assert again.indices.tolist() == spice.indices.tolist() and again.manifest["proxy"]["losses"] == \
        spice.manifest["proxy"]["losses"]
    one_window = tasksift.select(pool, None, method="spice", budget=6, T=2, cache_dir=tmp_path,
                                 features={"proj_dim": 32})
    assert "proxy" not in one_window.manifest or one_window.manifest["proxy"]["steps"] == 0
    # a window as large as the pool is one window: its rows are computed up front, cached, as without windows
    whole = tasksift.select(pool, None, method="spice", budget=6, window=20, T=2, cache_dir=tmp_path,
                            features={"proj_dim": 32})
    assert whole.indices.tolist() == one_window.indices.tolist() and "proxy" not in whole.manifest
    assert whole.manifest["features"]["pool"]["settings_key"] == one_window.manifest["features"]["pool"][
        "settings_key"]
    with pytest.raises(InputError, match="takes no feature settings"):
        tasksift.select(pool, [{"text": "cat"}], method="knn", budget=2, cache_dir=tmp_path,
                        features={"proj_dim": 32})
