import numpy as np
import pytest

from tasksift.index.two_level import TwoLevelIVF
from tasksift.util.errors import InputError


@pytest.fixture(scope="module")
def blobs() -> np.ndarray:
    rng = np.random.default_rng(0)
    centres = 3.0 * rng.normal(size=(20, 8))
    return (centres[rng.integers(0, 20, 3000)] + rng.normal(size=(3000, 8))).astype(np.float32)


def hit_pairs(lims: np.ndarray, d2: np.ndarray, ids: np.ndarray) -> dict[tuple[int, int], float]:
    who = np.repeat(np.arange(len(lims) - 1), np.diff(lims))
    return {(int(i), int(j)): float(d) for i, j, d in zip(who, ids, d2, strict=True)}


def exact_pairs(x: np.ndarray, y: np.ndarray, radius2: float) -> dict[tuple[int, int], float]:
    d2 = ((y[:, None, :].astype(np.float64) - x[None]) ** 2).sum(-1)
    i, j = np.nonzero(d2 < radius2)
    return {(int(a), int(b)): float(d2[a, b]) for a, b in zip(i, j, strict=True)}


def test_probing_every_cell_is_the_exact_range_search(blobs: np.ndarray) -> None:
    y = blobs[::50]
    ivf = TwoLevelIVF(blobs, coarse_cells=6, cell_rows=40, nprobe=10**6, coarse_probe=6, seed=1)
    found = hit_pairs(*ivf.range_search(y, 4.0))
    expected = exact_pairs(blobs, y, 4.0)
    # pairs whose float64 distance is within float32 rounding of the radius may fall either way
    borderline = {k for k, v in expected.items() if v > 4.0 - 1e-4}
    assert set(expected) - borderline <= set(found) <= set(expected) | borderline
    assert len(found) > 3 * len(y)
    assert np.allclose([found[k] for k in found if k in expected], [expected[k] for k in found if k in expected],
                       rtol=1e-4, atol=1e-4)
    assert ivf.info()["coarse_cells_refined"] == 6 and ivf.info()["fine_cells"] > 6


def test_few_probes_find_a_subset_at_exact_distances(blobs: np.ndarray) -> None:
    y = blobs[::50]
    ivf = TwoLevelIVF(blobs, coarse_cells=6, cell_rows=40, nprobe=2, coarse_probe=1, seed=1)
    found = hit_pairs(*ivf.range_search(y, 9.0))
    expected = exact_pairs(blobs, y, 9.0 + 1e-3)
    assert set(found) <= set(expected)
    assert 0.3 * len(expected) < len(found) < len(expected)
    assert np.allclose([found[k] for k in found], [expected[k] for k in found], rtol=1e-4, atol=1e-4)
    # every vector is a pool row and finds itself: its own fine cell is the nearest
    assert all((i, 50 * i) in found for i in range(len(y)))


def test_fine_cells_are_built_only_where_searches_go(blobs: np.ndarray) -> None:
    ivf = TwoLevelIVF(blobs, coarse_cells=10, cell_rows=50, nprobe=4, coarse_probe=1, seed=0)
    assert ivf.info()["coarse_cells_refined"] == 0
    ivf.range_search(blobs[:3], 1.0)
    refined = ivf.info()["coarse_cells_refined"]
    assert 1 <= refined <= 3
    assert ivf.stats["fine_assigned"] < len(blobs) * 60 / 50 * refined


def test_kernel_sums_equal_the_sums_over_the_range_search_hits(blobs: np.ndarray) -> None:
    rows = np.arange(0, len(blobs), 37)
    for nprobe, coarse_probe in ((2, 1), (10**6, 6)):
        ivf = TwoLevelIVF(blobs, coarse_cells=6, cell_rows=40, nprobe=nprobe, coarse_probe=coarse_probe, seed=1)
        lims, d2, ids = ivf.range_search(blobs[rows], 4.0)
        who = np.repeat(np.arange(len(rows)), np.diff(lims))
        other = ids != rows[who]
        expected = np.bincount(who[other], weights=np.maximum(1.0 - d2[other] / np.float32(4.0), 0.0),
                               minlength=len(rows))
        assert np.allclose(ivf.kernel_sums(rows, 4.0), expected, rtol=1e-6, atol=1e-6)
        assert expected.min() >= 0 and expected.max() > 1


@pytest.mark.parametrize("params", [{"coarse_cells": 0}, {"coarse_cells": 4, "nprobe": 0},
                                    {"coarse_cells": 4, "cell_rows": 0}, {"coarse_cells": 4, "coarse_probe": 0}])
def test_bad_settings_are_input_errors(blobs: np.ndarray, params: dict) -> None:
    with pytest.raises(InputError):
        TwoLevelIVF(blobs, **params)


def test_widen_doubles_the_probes_until_every_cell_is_visited() -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(size=(400, 8)).astype(np.float32)
    ivf = TwoLevelIVF(x, coarse_cells=3, cell_rows=50, nprobe=1, coarse_probe=1, seed=0)
    seen = [(ivf.nprobe, ivf.coarse_probe)]
    while ivf.widen():
        ivf.probes(x[:5])  # refines the coarse cells the wider setting reaches
        seen.append((ivf.nprobe, ivf.coarse_probe))
    assert seen[:3] == [(1, 1), (2, 2), (4, 3)]
    assert ivf.exhaustive() and ivf.nprobe >= len(ivf.owner) and len(ivf.fine) == 3
    assert not ivf.widen() and (ivf.nprobe, ivf.coarse_probe) == seen[-1]
    lims, _, ids = ivf.range_search(x[:5], 4.0)
    d2 = ((x[:5, None, :] - x[None, :, :]) ** 2).sum(-1)
    for i in range(5):
        assert sorted(ids[lims[i]:lims[i + 1]].tolist()) == np.flatnonzero(d2[i] < 4.0).tolist()
