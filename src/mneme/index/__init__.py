"""In-process vector indexes for stores that cannot search themselves: exact NumPy
scans and hnswlib graphs, both scoped by namespace."""

from __future__ import annotations

from mneme._errors import IndexBackendUnavailableError
from mneme.index.base import Index, check_dtype, quantize
from mneme.index.exact import NumpyIndex
from mneme.index.hnsw import HnswIndex

__all__ = [
    "HNSW_AUTO_THRESHOLD",
    "HnswIndex",
    "Index",
    "NumpyIndex",
    "check_dtype",
    "make_index",
    "quantize",
]

HNSW_AUTO_THRESHOLD = 500_000


def make_index(backend: str, dim: int, dtype: str, entries: int, options: dict[str, int]) -> Index:
    """Choose and build an index: 'auto' means hnsw from HNSW_AUTO_THRESHOLD entries
    when hnswlib is installed, numpy otherwise."""
    check_dtype(dtype)
    if backend == "numpy":
        return NumpyIndex(dim, dtype)
    if backend == "hnsw":
        return HnswIndex(dim, dtype, **options)
    if backend == "auto":
        if entries >= HNSW_AUTO_THRESHOLD:
            try:
                return HnswIndex(dim, dtype, **options)
            except IndexBackendUnavailableError:
                pass
        return NumpyIndex(dim, dtype)
    raise ValueError(f"index_backend must be 'auto', 'numpy' or 'hnsw', got {backend!r}")
