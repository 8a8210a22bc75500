"""Exact search: one NumPy matrix per namespace, scanned with a dot product."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from mneme.index.base import DTYPES, INT8_SCALE, check_dtype, quantize, rows_by_namespace

__all__ = ["NumpyIndex"]

_CHUNK = 65_536


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
        out /= INT8_SCALE
    return out


class _Block:
    """One namespace's vectors: an append-only matrix with a live mask."""

    __slots__ = ("ids", "live", "matrix", "size")

    def __init__(self, dim: int, dtype: str) -> None:
        self.matrix: npt.NDArray[np.generic] = np.empty((16, dim), dtype=DTYPES[dtype])
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
        for ns, rows in rows_by_namespace(namespaces, vectors).items():
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

    def ids(self) -> list[int]:
        return list(self._where)

    @property
    def memory_bytes(self) -> int:
        return sum(b.matrix.nbytes + b.ids.nbytes + b.live.nbytes for b in self._blocks.values())

    @property
    def tombstone_count(self) -> int:
        return self._tombstones
