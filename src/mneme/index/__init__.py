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


# mneme 1.0's names for the hnsw options; its starting capacities are not needed here
# (every index grows on demand).
_V1_OPTION_NAMES = {"M": "m", "ef": "ef_search"}
_V1_CAPACITY_OPTIONS = ("initial_max_elements", "initial_capacity")


def _hnsw_options(options: dict[str, int]) -> dict[str, int]:
    return {
        _V1_OPTION_NAMES.get(name, name): value
        for name, value in options.items()
        if name not in _V1_CAPACITY_OPTIONS
    }


def make_index(backend: str, dim: int, dtype: str, entries: int, options: dict[str, int]) -> Index:
    """Choose and build an index: 'auto' means hnsw from HNSW_AUTO_THRESHOLD entries
    when hnswlib is installed, numpy otherwise. ``options`` are HnswIndex's keywords
    (m, ef_construction, ef_search), or mneme 1.0's names for them (M, ef)."""
    check_dtype(dtype)
    options = _hnsw_options(options)
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
