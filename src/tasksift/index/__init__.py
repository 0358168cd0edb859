"""Nearest-neighbour search (faiss): exact, IVF or HNSW, top-k and radius search."""

from tasksift.index.search import (
    FLAT_MAX_ROWS,
    KINDS,
    METRICS,
    NeighbourIndex,
    build_index,
    has_unit_rows,
    normalize_rows,
)

__all__ = ["FLAT_MAX_ROWS", "KINDS", "METRICS", "NeighbourIndex", "build_index", "has_unit_rows", "normalize_rows"]
