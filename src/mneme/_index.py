"""In-process vector indexes for stores that cannot search themselves.

An index holds (id, namespace, vector) and nothing else. Search is scoped to one
namespace, so tenants never see each other's neighbours. Vectors may be kept in
memory as float32, float16 or int8 (symmetric, scale 127); stores keep float32.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from ._errors import IndexBackendUnavailableError, QuantizationError

__all__ = ["HnswIndex", "Index", "NumpyIndex", "make_index"]

HNSW_AUTO_THRESHOLD = 500_000
_DTYPES = {"float32": np.float32, "float16": np.float16, "int8": np.int8}
_INT8_SCALE = 127.0
_CHUNK = 65_536


@runtime_checkable
class Index(Protocol):
    """Nearest-neighbour index over unit vectors, scoped by namespace."""

    backend_label: str
    vector_dtype: str

    def add(
        self, ids: Sequence[int], namespaces: Sequence[str], vectors: npt.NDArray[np.float32]
    ) -> None:
        """Add rows (an id already present is replaced). Zero vectors are not indexed."""

    def remove(self, id: int) -> bool: ...

    def remove_namespace(self, namespace: str) -> int: ...

    def search(
        self, namespace: str, vector: npt.NDArray[np.float32], k: int
    ) -> list[tuple[int, float]]:
        """Up to ``k`` (id, cosine similarity) pairs, best first."""

    def compact(self) -> int:
        """Drop tombstones; returns how many were dropped."""

    def __len__(self) -> int: ...

    def __contains__(self, id: object) -> bool: ...

    @property
    def memory_bytes(self) -> int: ...

    @property
    def tombstone_count(self) -> int: ...


def check_dtype(dtype: str) -> str:
    if dtype not in _DTYPES:
        raise QuantizationError(
            f"unknown vector_dtype {dtype!r}; choose one of {', '.join(_DTYPES)}"
        )
    return dtype


def quantize(vectors: npt.NDArray[np.float32], dtype: str) -> npt.NDArray[np.generic]:
    out: npt.NDArray[np.generic]
    if dtype == "int8":
        out = np.clip(np.rint(vectors * _INT8_SCALE), -127, 127).astype(np.int8)
    else:
        out = vectors.astype(_DTYPES[dtype])
    return out


def _dot(
    block: npt.NDArray[np.generic], query: npt.NDArray[np.float32], dtype: str
) -> npt.NDArray[np.float32]:
    """block @ query in float32, converting low-precision rows a chunk at a time."""
    if dtype == "float32":
        return np.asarray(block.astype(np.float32, copy=False) @ query, dtype=np.float32)
    out = np.empty(block.shape[0], dtype=np.float32)
    for start in range(0, block.shape[0], _CHUNK):
        out[start : start + _CHUNK] = block[start : start + _CHUNK].astype(np.float32) @ query
    if dtype == "int8":
        out /= _INT8_SCALE
    return out


def _rows_by_namespace(
    namespaces: Sequence[str], vectors: npt.NDArray[np.float32]
) -> dict[str, list[int]]:
    """Row numbers of each namespace, leaving out zero vectors (never indexed: cosine
    is undefined for them)."""
    keep = np.linalg.norm(vectors, axis=1) > 0
    by_ns: dict[str, list[int]] = {}
    for row, ns in enumerate(namespaces):
        if keep[row]:
            by_ns.setdefault(ns, []).append(row)
    return by_ns


class _Block:
    """One namespace's vectors: an append-only matrix with a live mask."""

    __slots__ = ("ids", "live", "matrix", "size")

    def __init__(self, dim: int, dtype: str) -> None:
        self.matrix: npt.NDArray[np.generic] = np.empty((16, dim), dtype=_DTYPES[dtype])
        self.ids = np.empty(16, dtype=np.int64)
        self.live = np.zeros(16, dtype=bool)
        self.size = 0

    def append(self, ids: npt.NDArray[np.int64], rows: npt.NDArray[np.generic]) -> int:
        need = self.size + len(ids)
        if need > len(self.ids):
            cap = max(need, 2 * len(self.ids))
            self.matrix = np.resize(self.matrix, (cap, self.matrix.shape[1]))
            self.ids = np.resize(self.ids, cap)
            live = np.zeros(cap, dtype=bool)
            live[: self.size] = self.live[: self.size]
            self.live = live
        start = self.size
        self.matrix[start:need] = rows
        self.ids[start:need] = ids
        self.live[start:need] = True
        self.size = need
        return start


class NumpyIndex:
    """Exact brute-force search; removals leave tombstones until ``compact()``."""

    backend_label = "numpy"

    def __init__(self, dim: int, vector_dtype: str = "float32") -> None:
        self.dim = dim
        self.vector_dtype = check_dtype(vector_dtype)
        self._blocks: dict[str, _Block] = {}
        self._where: dict[int, tuple[str, int]] = {}
        self._tombstones = 0

    def add(
        self, ids: Sequence[int], namespaces: Sequence[str], vectors: npt.NDArray[np.float32]
    ) -> None:
        vectors = np.asarray(vectors, dtype=np.float32).reshape(len(ids), self.dim)
        for id_ in ids:
            self.remove(id_)
        for ns, rows in _rows_by_namespace(namespaces, vectors).items():
            block = self._blocks.get(ns)
            if block is None:
                block = self._blocks[ns] = _Block(self.dim, self.vector_dtype)
            row_ids = np.asarray([ids[r] for r in rows], dtype=np.int64)
            start = block.append(row_ids, quantize(vectors[rows], self.vector_dtype))
            for offset, id_ in enumerate(row_ids.tolist()):
                self._where[id_] = (ns, start + offset)

    def remove(self, id: int) -> bool:
        where = self._where.pop(id, None)
        if where is None:
            return False
        self._blocks[where[0]].live[where[1]] = False
        self._tombstones += 1
        return True

    def remove_namespace(self, namespace: str) -> int:
        block = self._blocks.pop(namespace, None)
        if block is None:
            return 0
        removed = 0
        for id_ in block.ids[: block.size][block.live[: block.size]].tolist():
            del self._where[id_]
            removed += 1
        self._tombstones -= int(block.size - removed)
        return removed

    def search(
        self, namespace: str, vector: npt.NDArray[np.float32], k: int
    ) -> list[tuple[int, float]]:
        block = self._blocks.get(namespace)
        if block is None or k <= 0:
            return []
        n = block.size
        scores = _dot(block.matrix[:n], np.asarray(vector, dtype=np.float32), self.vector_dtype)
        scores[~block.live[:n]] = -np.inf
        k = min(k, n)
        top = np.argpartition(-scores, k - 1)[:k] if k < n else np.arange(n)
        top = top[np.argsort(-scores[top], kind="stable")]
        return [
            (int(block.ids[i]), float(min(scores[i], 1.0))) for i in top if np.isfinite(scores[i])
        ]

    def compact(self) -> int:
        dropped = self._tombstones
        if not dropped:
            return 0
        old, self._blocks, self._where = self._blocks, {}, {}
        for ns, block in old.items():
            alive = block.live[: block.size]
            if not alive.any():
                continue
            fresh = self._blocks[ns] = _Block(self.dim, self.vector_dtype)
            ids = block.ids[: block.size][alive]
            fresh.append(ids, block.matrix[: block.size][alive])
            for row, id_ in enumerate(ids.tolist()):
                self._where[id_] = (ns, row)
        self._tombstones = 0
        return dropped

    def __len__(self) -> int:
        return len(self._where)

    def __contains__(self, id: object) -> bool:
        return id in self._where

    @property
    def memory_bytes(self) -> int:
        return sum(b.matrix.nbytes + b.ids.nbytes + b.live.nbytes for b in self._blocks.values())

    @property
    def tombstone_count(self) -> int:
        return self._tombstones


class HnswIndex:
    """Approximate search with hnswlib, one graph per namespace (cosine space).

    Vectors are held as float32 inside hnswlib whatever ``vector_dtype`` says; the
    dtype only decides how vectors are rounded before they go in.
    """

    backend_label = "hnsw"

    def __init__(
        self,
        dim: int,
        vector_dtype: str = "float32",
        *,
        m: int = 16,
        ef_construction: int = 200,
        ef_search: int = 64,
    ) -> None:
        try:
            import hnswlib
        except ImportError as exc:
            raise IndexBackendUnavailableError(
                "index_backend='hnsw' needs hnswlib: pip install 'mneme[hnsw]'"
            ) from exc
        self._hnswlib = hnswlib
        self.dim = dim
        self.vector_dtype = check_dtype(vector_dtype)
        self._m, self._efc, self._ef = m, ef_construction, ef_search
        self._graphs: dict[str, object] = {}
        self._where: dict[int, str] = {}
        self._live: dict[str, int] = {}
        # Labels marked deleted, per namespace graph; re-adding one revives it.
        self._dead: dict[str, set[int]] = {}

    def _graph(self, namespace: str, extra: int) -> object:
        graph = self._graphs.get(namespace)
        if graph is None:
            graph = self._hnswlib.Index(space="cosine", dim=self.dim)
            graph.init_index(
                max_elements=max(1024, extra),
                M=self._m,
                ef_construction=self._efc,
                allow_replace_deleted=False,
            )
            graph.set_ef(self._ef)
            self._graphs[namespace] = graph
        need = graph.get_current_count() + extra  # type: ignore[attr-defined]
        if need > graph.get_max_elements():  # type: ignore[attr-defined]
            graph.resize_index(max(need, 2 * graph.get_max_elements()))  # type: ignore[attr-defined]
        return graph

    def add(
        self, ids: Sequence[int], namespaces: Sequence[str], vectors: npt.NDArray[np.float32]
    ) -> None:
        vectors = np.asarray(vectors, dtype=np.float32).reshape(len(ids), self.dim)
        if self.vector_dtype != "float32":
            q = quantize(vectors, self.vector_dtype).astype(np.float32)
            vectors = q / _INT8_SCALE if self.vector_dtype == "int8" else q
        for id_ in ids:
            self.remove(id_)
        for ns, rows in _rows_by_namespace(namespaces, vectors).items():
            graph = self._graph(ns, len(rows))
            row_ids = [int(ids[r]) for r in rows]
            graph.add_items(vectors[rows], row_ids)  # type: ignore[attr-defined]
            self._dead.get(ns, set()).difference_update(row_ids)
            for id_ in row_ids:
                self._where[id_] = ns
            self._live[ns] = self._live.get(ns, 0) + len(row_ids)

    def remove(self, id: int) -> bool:
        ns = self._where.pop(id, None)
        if ns is None:
            return False
        self._graphs[ns].mark_deleted(id)  # type: ignore[attr-defined]
        self._live[ns] -= 1
        self._dead.setdefault(ns, set()).add(id)
        return True

    def remove_namespace(self, namespace: str) -> int:
        self._live.pop(namespace, None)
        self._dead.pop(namespace, None)  # its graph goes, tombstones and all
        if self._graphs.pop(namespace, None) is None:
            return 0
        gone = [i for i, ns in self._where.items() if ns == namespace]
        for id_ in gone:
            del self._where[id_]
        return len(gone)

    def search(
        self, namespace: str, vector: npt.NDArray[np.float32], k: int
    ) -> list[tuple[int, float]]:
        graph = self._graphs.get(namespace)
        live = self._live.get(namespace, 0)
        if graph is None or k <= 0 or live == 0:
            return []
        labels, dists = graph.knn_query(np.asarray(vector, dtype=np.float32), k=min(k, live))  # type: ignore[attr-defined]
        return [(int(i), float(1.0 - d)) for i, d in zip(labels[0], dists[0], strict=True)]

    def compact(self) -> int:
        # hnswlib reuses nothing by itself here; rebuilding would need the vectors,
        # which only the store has. Tombstones stay until the cache rebuilds.
        return 0

    def __len__(self) -> int:
        return len(self._where)

    def __contains__(self, id: object) -> bool:
        return id in self._where

    @property
    def memory_bytes(self) -> int:
        per = self.dim * 4 + self._m * 2 * 4 + 16
        graphs: list[Any] = list(self._graphs.values())
        return sum(g.get_max_elements() * per for g in graphs)

    @property
    def tombstone_count(self) -> int:
        return sum(len(dead) for dead in self._dead.values())


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
