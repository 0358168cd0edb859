"""The implicit random projection against its explicit matrix: tiles, seeds, norms, shapes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tasksift.features.gradients.projection import TILE_ROWS, RandomProjection


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
