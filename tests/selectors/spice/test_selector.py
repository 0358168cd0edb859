"""SPICE and FisherSFT against brute-force log-det differences, the penalty's effect, windows and the proxy."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tasksift.features.gradients.recipe import GradientRecipe
from tasksift.records import records_from_dicts
from tasksift.selectors import available
from tasksift.selectors.base import Context, Inputs
from tasksift.selectors.spice import FisherSFTSelector, ProxyRows, SpiceSelector
from tasksift.util.errors import InputError
from tests.selectors.spice.helpers import logdet_gain


def brute_force_spice(g: np.ndarray, budget: int, alpha: float, lam: float) -> tuple[list[int], list[float]]:
    """Greedy SPICE with every gain a log-det difference and the penalty from the mean of the chosen rows."""
    chosen: list[int] = []
    gains: list[float] = []
    for _ in range(budget):
        best, best_score, best_gain = -1, -np.inf, 0.0
        for x in range(len(g)):
            if x in chosen:
                continue
            gain = logdet_gain(g, chosen, x, alpha)
            penalty = 0.0
            if chosen and lam > 0:
                mean = g[chosen].astype(np.float64).mean(0)
                cos = float(g[x] @ mean / (np.linalg.norm(g[x]) * np.linalg.norm(mean)))
                penalty = lam * max(0.0, -cos)
            if gain - penalty > best_score + 1e-12:
                best, best_score, best_gain = x, gain - penalty, gain
        chosen.append(best)
        gains.append(best_gain)
    return chosen, gains


@pytest.mark.parametrize(("n", "d", "budget"), [(30, 5, 12), (25, 40, 8)])  # dense inverse, then product form
@pytest.mark.parametrize("lam", [0.0, 0.3])
def test_exact_gains_equal_brute_force_log_det_differences(n: int, d: int, budget: int, lam: float) -> None:
    g = np.random.default_rng(n + d).normal(size=(n, d)).astype(np.float32) * 0.7
    sel = SpiceSelector(budget, lam=lam, alpha=1.5).fit(g).selection_
    order, gains = brute_force_spice(g, budget, 1.5, lam)
    assert sel.indices.tolist() == order
    np.testing.assert_allclose([r["gain"] for r in sel.reasons], gains, rtol=1e-4, atol=1e-6)
    assert sel.manifest["spice"]["factor"] == ("dense" if d <= budget else "product")


@pytest.mark.parametrize("fisher", ["exact", "diag"])
def test_gains_never_increase_along_the_greedy_order_without_penalty(fisher: str) -> None:
    g = np.random.default_rng(7).normal(size=(400, 24)).astype(np.float32)
    sel = FisherSFTSelector(120, fisher=fisher).fit(g).selection_
    gains = np.array([r["gain"] for r in sel.reasons])
    assert np.all(np.diff(gains) <= 1e-9 * gains[:-1])
    assert gains[-1] < 0.5 * gains[0]  # diminishing returns are real: the 24-dim space fills up
    assert all(r["conflict"] == 0 and r["cosine"] is None for r in sel.reasons)


def test_penalty_leaves_the_order_alone_when_no_gradient_opposes_the_mean() -> None:
    g = np.abs(np.random.default_rng(3).normal(size=(200, 16))).astype(np.float32)  # all cosines >= 0
    plain = FisherSFTSelector(60).fit(g).selection_
    penalised = SpiceSelector(60, lam=5.0).fit(g).selection_
    assert penalised.indices.tolist() == plain.indices.tolist()
    assert all(r["cosine"] is None or r["cosine"] >= 0 for r in penalised.reasons)
    assert all(r["conflict"] == 0 for r in penalised.reasons)


def test_penalty_defers_a_gradient_that_opposes_the_mean() -> None:
    g = np.array([[3.0, 0.0, 0.0],    # largest gain: taken first
                  [-1.0, 2.2, 0.0],   # more informative than row 2, but opposes row 0
                  [0.0, 0.0, 2.0]], dtype=np.float32)
    assert FisherSFTSelector(3).fit(g).selection_.indices.tolist() == [0, 1, 2]
    sel = SpiceSelector(3, lam=0.5).fit(g).selection_
    assert sel.indices.tolist() == [0, 2, 1]
    second, third = sel.reasons[1], sel.reasons[2]
    assert second["conflict"] == 0 and second["cosine"] == pytest.approx(0.0)
    cos = -3.0 / (np.linalg.norm(g[1]) * np.sqrt(13.0))  # against the mean of rows 0 and 2
    assert third["cosine"] == pytest.approx(cos, rel=1e-5)
    assert third["conflict"] == pytest.approx(-0.5 * cos, rel=1e-5)
    np.testing.assert_allclose(sel.scores, [r["gain"] - r["conflict"] for r in sel.reasons])
    assert [r["step"] for r in sel.reasons] == [1, 2, 3]


def test_diag_mode_is_greedy_on_the_diagonal_of_the_fisher_term() -> None:
    g = np.random.default_rng(11).normal(size=(60, 10)).astype(np.float32)
    sel = FisherSFTSelector(15, fisher="diag", alpha=0.5).fit(g).selection_
    den = np.ones(10)
    chosen: list[int] = []
    for step in range(15):
        q = (g.astype(np.float64) ** 2) @ (1 / den)
        q[chosen] = -np.inf
        x = int(np.argmax(q))
        assert sel.reasons[step]["gain"] == pytest.approx(np.log1p(0.5 * q[x]), rel=1e-5)
        chosen.append(x)
        den += 0.5 * g[x].astype(np.float64) ** 2  # g^2, not the reference's g^4
    assert sel.indices.tolist() == chosen


class FakeProxy:
    """Records the calls; after any step its gradients make the window's last row the clear favourite."""

    def __init__(self, g: np.ndarray) -> None:
        self.g = g
        self.steps: list[list[int]] = []
        self.asked: list[list[int]] = []

    def gradients(self, rows: np.ndarray) -> np.ndarray:
        self.asked.append(rows.tolist())
        out = self.g[rows] * 0.01
        out[-1] = 10.0
        return out

    def step(self, rows: np.ndarray) -> float:
        self.steps.append(rows.tolist())
        return 1.0 / len(self.steps)

    def describe(self) -> dict:
        return {"kind": "fake"}


def test_windows_and_interleaved_proxy_steps() -> None:
    g = np.random.default_rng(5).normal(size=(40, 6)).astype(np.float32)
    proxy = FakeProxy(g)
    sel = SpiceSelector(12, window=10, T=5, seed=2).fit(g, proxy=proxy).selection_
    order = np.random.default_rng(2).permutation(40)
    windows = [order[i:i + 10].tolist() for i in range(0, 40, 10)]
    rows = sel.indices.tolist()
    assert [r["window"] for r in sel.reasons] == [0] * 3 + [1] * 3 + [2] * 3 + [3] * 3
    assert all(row in windows[r["window"]] for row, r in zip(rows, sel.reasons, strict=True))
    # one step after every 5 selections, on exactly those rows
    assert proxy.steps == [rows[0:5], rows[5:10]]
    # from the step during window 1 on, every window reads fresh gradients (window 3 too, although no step
    # came between its start and window 2's), whose favourite is the window's last row
    assert proxy.asked == [windows[2], windows[3]]
    assert rows[6] == windows[2][-1] and rows[9] == windows[3][-1]
    # window 0 and 1 used the given vectors: the same picks as without a proxy
    fixed = SpiceSelector(12, window=10, T=5, seed=2).fit(g).selection_.indices.tolist()
    assert rows[:6] == fixed[:6]
    assert sel.manifest["proxy"]["steps"] == 2 and sel.manifest["proxy"]["refreshed_windows"] == 2
    assert sel.manifest["proxy"]["helper"] == {"kind": "fake"}


class StepAwareProxy(FakeProxy):
    """Gives the vectors' own rows until its first step, the FakeProxy's favourites after."""

    def gradients(self, rows: np.ndarray) -> np.ndarray:
        if not self.steps:
            self.asked.append(rows.tolist())
            return self.g[rows]
        return super().gradients(rows)


def test_a_proxy_rows_pool_reads_every_window_from_the_proxy() -> None:
    g = np.random.default_rng(5).normal(size=(40, 6)).astype(np.float32)
    given, lazy = StepAwareProxy(g), StepAwareProxy(g)
    eager = SpiceSelector(12, window=10, T=5, seed=2).fit(g, proxy=given).selection_
    sel = SpiceSelector(12, window=10, T=5, seed=2).fit(ProxyRows(40, 6), proxy=lazy).selection_
    order = np.random.default_rng(2).permutation(40)
    windows = [order[i:i + 10].tolist() for i in range(0, 40, 10)]
    # the same picks, scores and steps as from the unstepped proxy's vectors given up front
    assert sel.indices.tolist() == eager.indices.tolist() and np.allclose(sel.scores, eager.scores)
    assert lazy.steps == given.steps
    # windows 0 and 1 (before the first step) come from the proxy too, instead of from given vectors
    assert lazy.asked == windows and given.asked == windows[2:]
    assert sel.manifest["proxy"]["computed_windows"] == 4 and sel.manifest["proxy"]["refreshed_windows"] == 2
    assert eager.manifest["proxy"]["computed_windows"] == 2
    with pytest.raises(InputError, match="computed by a proxy, and none was given"):
        SpiceSelector(12, window=10).fit(ProxyRows(40, 6))
    with pytest.raises(InputError, match=r"expected \(10, 7\)"):
        SpiceSelector(12, window=10).fit(ProxyRows(40, 7), proxy=StepAwareProxy(g))


def test_omega_stops_when_the_gain_halves() -> None:
    g = np.diag(np.array([3.0, 2.5, 2.0, 1.2, 0.5, 0.3], dtype=np.float32))
    sel = SpiceSelector(6, omega=0.5, lam=0.0).fit(g).selection_
    gains = [r["gain"] for r in sel.reasons]
    assert sel.indices.tolist() == [0, 1, 2]  # log(1+1.44) = 0.89 <= 0.5 * log(10) = 1.15: stop there
    assert all(gain > 0.5 * gains[0] for gain in gains)
    assert sel.manifest["spice"]["stopped_early_windows"] == [0]
    # omega from --param arrives as text; log(1.25) = 0.223 <= 0.1 * log(10) = 0.230 stops before row 4
    assert SpiceSelector(6, omega="0.1").fit(g).selection_.indices.tolist() == [0, 1, 2, 3]


def test_selection_contract_and_registry() -> None:
    g = np.random.default_rng(0).normal(size=(50, 8)).astype(np.float32)
    sel = SpiceSelector(10).fit(g, g[:3]).selection_
    assert len(sel) == 10 and np.all(sel.weights == 1) and len(set(sel.indices.tolist())) == 10
    assert set(sel.reasons[0]) == {"gain", "conflict", "cosine", "step", "window"}
    assert available()["spice"] is SpiceSelector and available()["fishersft"] is FisherSFTSelector
    assert "lam" not in FisherSFTSelector.param_defaults()
    assert SpiceSelector.param_defaults()["lam"] == 0.1 and SpiceSelector.param_defaults()["T"] == 10
    assert FisherSFTSelector(10).fit(g).selection_.indices.tolist() == \
        SpiceSelector(10, lam=0.0).fit(g, ctx=Context(progress=True)).selection_.indices.tolist()


@pytest.mark.parametrize(("params", "message"), [({"fisher": "full"}, "fisher"), ({"alpha": 0}, "alpha"),
                                                 ({"lam": -1}, "lam"), ({"omega": 2}, "omega"),
                                                 ({"window": "big"}, "window"), ({"T": 0}, "T")])
def test_bad_parameters_are_input_errors(params: dict, message: str) -> None:
    g = np.ones((5, 2), dtype=np.float32)
    with pytest.raises(InputError, match=message):
        SpiceSelector(2, **params).fit(g)


def test_spice_through_the_python_api(tmp_path) -> None:
    from tasksift.api import select

    g = np.random.default_rng(4).normal(size=(60, 8)).astype(np.float32)
    sel = select(pool_vectors=g, target_vectors=g[:2], method="spice", budget=7, out=tmp_path / "run",
                 window="20", omega=None)
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert len(sel) == 7 and manifest["method"] == "spice" and manifest["params"]["window"] == 20


def test_spice_needs_no_target(tmp_path) -> None:
    from tasksift.api import select

    g = np.random.default_rng(4).normal(size=(60, 8)).astype(np.float32)
    assert SpiceSelector.needs_target is False
    alone = select(pool_vectors=g, method="spice", budget=7, out=tmp_path / "alone")
    with_target = select(pool_vectors=g, target_vectors=g[:2], method="spice", budget=7)
    assert alone.indices.tolist() == with_target.indices.tolist()
    assert json.loads((tmp_path / "alone" / "manifest.json").read_text())["counts"]["target"] == 0
    with pytest.raises(InputError, match="target"):  # a selector that reads a target still demands one
        select(pool_vectors=g, method="less", budget=7)


@pytest.mark.parametrize(("window", "featurized_here", "records", "built"), [
    (8, True, True, True), (None, True, True, False), (8, False, True, False), (8, True, False, False),
])
def test_prepare_builds_the_proxy_trainer_only_for_windows_over_features_computed_here(
        monkeypatch: pytest.MonkeyPatch, window: int | None, featurized_here: bool, records: bool,
        built: bool) -> None:
    calls: list[dict] = []

    def fake_trainer(texts: list[str], recipe: GradientRecipe, **kwargs: object) -> str:
        calls.append({"texts": texts, "recipe": recipe, **kwargs})
        return "trainer"

    monkeypatch.setattr("tasksift.selectors.spice.selector.proxy_trainer", fake_trainer)
    pool = records_from_dicts([{"text": f"t{i}"} for i in range(4)])
    inputs = Inputs(pool=np.ones((4, 2), dtype=np.float32), pool_records=pool if records else None,
                    featurized_here=featurized_here, helpers={"other": 1})
    ctx = Context(model="m", cache_dir="c", features={"proj_dim": "32"}, progress=True)
    prepared = SpiceSelector(2, window="8" if window else "none").prepare(inputs, ctx)
    if not built:
        assert prepared.helpers == {"other": 1} and calls == []
        return
    assert prepared.helpers == {"other": 1, "proxy": "trainer"}
    (call,) = calls
    assert call["texts"] == pool.texts and call["recipe"] == GradientRecipe.of({}, {"proj_dim": 32})
    assert (call["model"], call["cache_dir"], call["progress"]) == ("m", "c", True)


def test_prepare_turns_deferred_records_into_proxy_rows(monkeypatch: pytest.MonkeyPatch) -> None:
    class Trainer:
        featurizer = type("F", (), {"dim": 32})()

    computed: list[list[str]] = []

    class Cached:
        def array(self) -> np.ndarray:
            return np.ones((4, 3), dtype=np.float32)

        def info(self) -> dict:
            return {"settings_key": "k"}

    def fake_gradients(texts: list[str], target: None, recipe: GradientRecipe, **kwargs: object) -> tuple:
        computed.append(list(texts))
        return Cached(), None

    monkeypatch.setattr("tasksift.selectors.spice.selector.proxy_trainer", lambda *a, **k: Trainer())
    monkeypatch.setattr("tasksift.selectors.spice.selector.selection_gradients", fake_gradients)
    pool = records_from_dicts([{"text": f"t{i}"} for i in range(4)])
    assert SpiceSelector.defers_pool_features({"window": 2}) and not SpiceSelector.defers_pool_features({})
    inputs = Inputs(pool=pool, pool_records=pool, deferred=True, info={"kind": "gradients"})
    windows = SpiceSelector(2, window=2).prepare(inputs, Context(model="minilm"))
    assert windows.pool == ProxyRows(4, 32) and len(windows.pool) == 4 and not windows.deferred
    assert isinstance(windows.helpers["proxy"], Trainer) and computed == []
    assert windows.info == {"kind": "gradients", "proxy": "minilm", "loss": "text"}
    # one window as large as the pool: nothing to re-read, the rows are computed up front and no proxy is built
    one = SpiceSelector(2, window=4).prepare(inputs, Context(model="minilm"))
    assert one.pool.shape == (4, 3) and one.featurized_here and "proxy" not in one.helpers
    assert computed == [pool.texts] and one.info["pool"] == {"settings_key": "k"}
