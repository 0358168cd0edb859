"""Exact searches by torch (``--device``): the same neighbours, ties and range hits as the CPU's faiss searches,
blocks merged in any size, and the same knn and tsds selections. They run with torch on the CPU here; the CUDA
case runs only where torch sees a GPU."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tasksift.index.device import DeviceIndex, DeviceSearch
from tasksift.index.searcher import LocalSearch
from tasksift.selectors.base import Context
from tasksift.selectors.knn import KNNSelector
from tasksift.selectors.tsds import TSDSSelector

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(),
                                                                  reason="needs a CUDA GPU"))]


def _data(n: int = 300, m: int = 20, d: int = 16, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, d)).astype(np.float32), rng.standard_normal((m, d)).astype(np.float32)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("metric", ["l2", "ip", "cosine"])
@pytest.mark.parametrize("block_rows", [7, 64, 1 << 18])
def test_knn_equals_the_cpu_exact_search(device: str, metric: str, block_rows: int) -> None:
    x, q = _data()
    want_v, want_r = LocalSearch().build(x, metric=metric, kind="flat").search(q, 10)
    got_v, got_r = DeviceSearch(device, block_rows=block_rows).build(x, metric=metric).search(q, 10)
    np.testing.assert_array_equal(got_r, want_r)
    np.testing.assert_allclose(got_v, want_v, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("device", DEVICES)
def test_ties_are_cut_by_increasing_row_as_on_the_cpu(device: str) -> None:
    x, q = _data(40, 3)
    x = np.repeat(x, 5, axis=0)  # every row five times: every cut falls inside a group of ties
    want = LocalSearch().exact(x).search(q, 7)
    got = DeviceIndex(x, "l2", torch.device(device), block_rows=9).search(q, 7)
    np.testing.assert_array_equal(got[1], want[1])
    assert all(list(r) == sorted(r) for r in got[1].reshape(-1, 7)[:, :5])  # a tied group in row order


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("among", [None, np.arange(3, 300, 4)])
def test_range_search_equals_the_cpu_range_search(device: str, among: np.ndarray | None) -> None:
    x, q = _data()
    cpu_stats: dict[str, int] = {}
    dev_stats: dict[str, int] = {}
    want = LocalSearch().range_search(x, 5.0, cpu_stats, among)(q)
    got = DeviceSearch(device, block_rows=50).range_search(x, 5.0, dev_stats, among)(q)
    np.testing.assert_array_equal(got[0], want[0])
    assert int(want[0][-1]) > 50  # the radius finds something
    for i in range(len(q)):  # each query's hits in increasing row order
        lo, hi = want[0][i], want[0][i + 1]
        np.testing.assert_array_equal(got[2][lo:hi], np.sort(want[2][lo:hi]))
        np.testing.assert_allclose(got[1][lo:hi], want[1][lo:hi][np.argsort(want[2][lo:hi])], rtol=1e-4, atol=1e-4)
    assert dev_stats == cpu_stats


def test_an_ivf_index_asked_for_by_name_is_faiss_on_the_cpu() -> None:
    x, _ = _data(2000)
    index = DeviceSearch("cpu").build(x, kind="ivf", nlist=8, seed=0)
    assert index.info()["kind"] == "ivf" and index.info()["exact"] is False


def test_knn_and_tsds_select_the_same_rows_with_the_device_search() -> None:
    x, q = _data(400, 12, 8, seed=3)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    for make in (lambda: KNNSelector(30, index="flat"), lambda: TSDSSelector(40, sigma=0.5, C=2.0, seed=1)):
        cpu = make().fit(x, q, ctx=Context(search=LocalSearch())).selection_
        dev = make().fit(x, q, ctx=Context(search=DeviceSearch("cpu", block_rows=37))).selection_
        np.testing.assert_array_equal(dev.indices, cpu.indices)
        np.testing.assert_allclose(dev.weights, cpu.weights)
