import numpy as np
import pytest

from tasksift.index import build_index, has_unit_rows, normalize_rows
from tasksift.index.search import ROW_BLOCK
from tasksift.util.errors import InputError


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.normal(size=(2000, 16)).astype(np.float32), rng.normal(size=(5, 16)).astype(np.float32)


def test_flat_l2_is_exact_squared_distance(data) -> None:
    x, q = data
    values, idx = build_index(x, metric="l2", kind="flat").search(q, 10)
    d2 = ((q[:, None, :] - x[None]) ** 2).sum(-1)
    assert idx.tolist() == np.argsort(d2, axis=1)[:, :10].tolist()
    assert values == pytest.approx(np.take_along_axis(d2, idx, 1), rel=1e-4)


def test_cosine_equals_normalised_inner_product(data) -> None:
    x, q = data
    values, idx = build_index(x, metric="cosine", kind="flat").search(q, 5)
    sims = (q / np.linalg.norm(q, axis=1, keepdims=True)) @ (x / np.linalg.norm(x, axis=1, keepdims=True)).T
    assert idx.tolist() == np.argsort(-sims, axis=1)[:, :5].tolist()
    assert values == pytest.approx(np.take_along_axis(sims, idx, 1), abs=1e-5)


def test_range_search_finds_every_point_within_radius(data) -> None:
    x, q = data
    lims, values, idx = build_index(x, metric="l2", kind="flat").range_search(q, 12.0)
    d2 = ((q[:, None, :] - x[None]) ** 2).sum(-1)
    for i in range(len(q)):
        assert sorted(idx[lims[i]:lims[i + 1]].tolist()) == np.flatnonzero(d2[i] < 12.0).tolist()


@pytest.mark.parametrize("kind", ["ivf", "hnsw"])
def test_approximate_indexes_recall_most_neighbours(data, kind: str) -> None:
    x, q = data
    exact = build_index(x, metric="l2", kind="flat").search(q, 10)[1]
    index = build_index(x, metric="l2", kind=kind)
    approx = index.search(q, 10)[1]
    recall = np.mean([len(set(a) & set(e)) / 10 for a, e in zip(approx.tolist(), exact.tolist(), strict=True)])
    assert recall >= 0.8
    info = index.info()
    assert info["kind"] == kind and info["exact"] is False


def test_auto_is_flat_below_threshold_and_ivf_above(data) -> None:
    x, _ = data
    assert build_index(x, kind="auto").kind == "flat"
    big = build_index(x, kind="auto", flat_max_rows=1000)
    assert big.kind == "ivf" and big.info()["nlist"] == round(2000 ** 0.5)


def test_bad_arguments_are_input_errors(data) -> None:
    x, q = data
    with pytest.raises(InputError, match="unknown metric"):
        build_index(x, metric="manhattan")
    with pytest.raises(InputError, match="unknown index kind"):
        build_index(x, kind="lsh")
    with pytest.raises(InputError, match="16-dimensional"):
        build_index(x).search(q[:, :3], 2)


@pytest.mark.parametrize("float64", [False, True])
def test_normalize_rows_gives_unit_rows_and_keeps_zero_rows(data, float64: bool) -> None:
    x, _ = data
    x = x.copy()
    x[3] = 0.0
    unit = normalize_rows(x, float64=float64)
    assert unit.dtype == np.float32 and unit is not x and np.all(unit[3] == 0.0)
    expected = x.astype(np.float64) / np.maximum(np.linalg.norm(x.astype(np.float64), axis=1, keepdims=True), 1e-300)
    np.testing.assert_allclose(unit, expected, rtol=1e-6, atol=1e-7)
    if float64:  # each row rounded to float32 once, from its float64 quotient: blocks do not change it
        np.testing.assert_array_equal(unit, expected.astype(np.float32))
    assert not has_unit_rows(x) and not has_unit_rows(unit)  # the zero row
    assert has_unit_rows(np.delete(unit, 3, axis=0))


def test_has_unit_rows_checks_every_block() -> None:
    x = np.tile(np.eye(4, dtype=np.float32), (ROW_BLOCK // 4 + 1, 1))
    assert has_unit_rows(x)
    x[-1] *= 1.01
    assert not has_unit_rows(x)
