"""In-process vector indexes for stores that cannot search themselves.

An index holds (id, namespace, vector) and nothing else. Search is scoped to one
namespace, so tenants never see each other's neighbours. Vectors may be kept in
memory as float32, float16 or int8 (symmetric, scale 127); stores keep float32.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from mneme._errors import QuantizationError

__all__ = ["DTYPES", "INT8_SCALE", "Index", "check_dtype", "quantize", "rows_by_namespace"]

DTYPES = {"float32": np.float32, "float16": np.float16, "int8": np.int8}
INT8_SCALE = 127.0


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

    def ids(self) -> list[int]:
        """Every id the index holds (tombstones not included)."""

    @property
    def memory_bytes(self) -> int: ...

    @property
    def tombstone_count(self) -> int: ...


def check_dtype(dtype: str) -> str:
    if dtype not in DTYPES:
        raise QuantizationError(
            f"unknown vector_dtype {dtype!r}; choose one of {', '.join(DTYPES)}"
        )
    return dtype


def quantize(vectors: npt.NDArray[np.float32], dtype: str) -> npt.NDArray[np.generic]:
    out: npt.NDArray[np.generic]
    if dtype == "int8":
        out = np.clip(np.rint(vectors * INT8_SCALE), -127, 127).astype(np.int8)
    else:
        out = vectors.astype(DTYPES[dtype])
    return out


def rows_by_namespace(
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
