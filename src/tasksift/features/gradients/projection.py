"""Random projection of gradient rows by a matrix that is never stored.

``x -> x @ P`` for an implicit ``(in_dim, out_dim)`` matrix whose row tiles of :data:`TILE_ROWS` rows are
regenerated from ``(seed, tile)`` whenever they are needed, so ``P`` (15 GB dense for LoRA gradients at 8,192
dimensions) never exists in memory. Entries are ``+-1/sqrt(k)`` (Rademacher, default) or ``N(0, 1/k)``: squared
norms are preserved in expectation, which SPICE's ``log det(I + alpha F)`` needs (LESS's cosine does not care).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

#: rows of the implicit projection matrix generated together from one ``(seed, tile)`` seed
TILE_ROWS = 1024
#: default width of projected gradient features on a CPU (the papers use 8,192)
DEFAULT_PROJ_DIM = 1024
PROJECTION_KINDS = ("rademacher", "gaussian")

# Bit b of a byte (most significant first) -> +1 or -1: a Rademacher tile is a lookup of random bytes.
_SIGNS = np.array([[1.0 if (byte >> (7 - bit)) & 1 else -1.0 for bit in range(8)] for byte in range(256)],
                  dtype=np.float32)


class RandomProjection:
    """``project(x) == x @ P`` for an implicit random ``(in_dim, out_dim)`` matrix ``P`` that is never stored.

    Rows ``[TILE_ROWS * t, TILE_ROWS * (t + 1))`` of ``P`` (tile ``t``) come from
    ``numpy.random.default_rng([seed, t])``: Rademacher tiles are random bytes whose bits give the signs,
    Gaussian tiles standard normals; both are scaled by ``1 / sqrt(out_dim)``. A tile does not depend on
    ``in_dim``, so a wider input keeps the same leading rows. :meth:`project` regenerates each tile once per
    call and multiplies it in, so it holds one tile (``TILE_ROWS x out_dim`` floats) beside its input and
    output; callers project many rows per call to spread the cost of the tiles.
    """

    def __init__(self, in_dim: int, out_dim: int = DEFAULT_PROJ_DIM, *, seed: int = 0,
                 kind: str = "rademacher") -> None:
        for name, value in (("in_dim", in_dim), ("out_dim", out_dim)):
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
            raise ValueError(f"the projection seed must be a non-negative integer, got {seed!r}")
        if kind not in PROJECTION_KINDS:
            raise ValueError(f"unknown projection kind {kind!r}; choose one of {', '.join(PROJECTION_KINDS)}")
        self.in_dim = int(in_dim)
        self.out_dim = int(out_dim)
        self.seed = int(seed)
        self.kind = kind
        self.scale = np.float32(1.0 / math.sqrt(self.out_dim))

    def __repr__(self) -> str:
        return f"RandomProjection({self.in_dim} -> {self.out_dim}, seed={self.seed}, kind={self.kind!r})"

    @property
    def n_tiles(self) -> int:
        return -(-self.in_dim // TILE_ROWS)

    def settings(self) -> dict[str, Any]:
        """What defines ``P`` (for a cache key): kind, output width, seed and the tile height."""
        return {"kind": self.kind, "dim": self.out_dim, "seed": self.seed, "tile_rows": TILE_ROWS}

    def tile(self, t: int) -> np.ndarray:
        """Rows ``[TILE_ROWS * t, min(TILE_ROWS * (t + 1), in_dim))`` of ``P`` as float32."""
        if not 0 <= t < self.n_tiles:
            raise IndexError(f"tile {t} is outside 0..{self.n_tiles - 1}")
        rng = np.random.default_rng([self.seed, t])
        if self.kind == "rademacher":
            signs = _SIGNS * self.scale
            block = signs[np.frombuffer(rng.bytes(TILE_ROWS * self.out_dim // 8), dtype=np.uint8)]
            block = block.reshape(TILE_ROWS, self.out_dim)
        else:
            block = rng.standard_normal((TILE_ROWS, self.out_dim), dtype=np.float32)
            block *= self.scale
        rows = min(TILE_ROWS, self.in_dim - t * TILE_ROWS)
        return block[:rows]

    def matrix(self) -> np.ndarray:
        """The explicit ``P`` (``in_dim x out_dim`` floats: only for small cases and tests)."""
        return np.concatenate([self.tile(t) for t in range(self.n_tiles)])

    def project(self, x: np.ndarray | torch.Tensor) -> np.ndarray:
        """``x @ P`` for ``x`` of shape ``(n, in_dim)`` (numpy or torch, any float type) as float32 ``(n, k)``."""
        xt = torch.as_tensor(x)
        if xt.ndim != 2 or xt.shape[1] != self.in_dim:
            raise ValueError(f"expected rows of {self.in_dim} values, got shape {tuple(xt.shape)}")
        xt = xt.detach().to(torch.float32)
        out = torch.zeros((xt.shape[0], self.out_dim), dtype=torch.float32)
        if xt.shape[0] == 0:
            return out.numpy()
        for t in range(self.n_tiles):
            start = t * TILE_ROWS
            block = torch.from_numpy(self.tile(t))
            out.addmm_(xt[:, start:start + block.shape[0]], block)
        return out.numpy()
