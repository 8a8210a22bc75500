"""A deterministic workload that looks like an LLM response cache.

* 50 namespaces (tenants) by default whose sizes follow a zipf-like law: weight of the
  k-th namespace is ``1 / (k + 1) ** NAMESPACE_SKEW``, so the largest holds about a
  quarter of the rows and the smallest about 0.35%. ``namespaces=1000`` is the
  many-tenants case under the same law: the largest holds about 18%, and most of the
  tenants hold well under 0.1% each.
* Structured vectors: ``TOPICS`` topic centres (unit, i.i.d. Gaussian); a stored entry is
  ``normalise(centre + ENTRY_SPREAD * g)`` with ``g`` a random unit direction, its topic
  drawn with a zipf-like popularity. Two entries of one topic have cosine ~0.7, below
  the cache's 0.85 threshold, so each stored question is its own answer. (Real
  embeddings cluster by topic; i.i.d. random vectors do not, and they flatter exact
  search and misreport HNSW recall.)
* Responses of realistic size: lognormal, median ~700 bytes, clipped to 150 B - 8 kB.
* Queries: ``exact`` repeats the stored text; ``near`` is a paraphrase (new text) whose
  vector is the stored one plus noise of norm ``NEAR_NOISE`` (cosine ~0.97, a semantic
  hit); ``topic`` is a fresh question on an existing topic (cosine ~0.7 to its nearest
  neighbour, a miss, and the hard case for approximate search); ``miss`` is unrelated
  (a fresh random centre).

Rows are made in fixed chunks of ``CHUNK`` entries, each from its own seeded generator
``default_rng([seed, dim, chunk_index])``: any chunk can be regenerated alone, the data
does not depend on N beyond its length, and loading 1M rows never holds more than one
chunk in Python.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import numpy.typing as npt

N_NAMESPACES = 50
NAMESPACE_SKEW = 1.1
TOPICS = 4_000
TOPIC_SKEW = 0.8
ENTRY_SPREAD = 0.65
NEAR_NOISE = 0.25
CHUNK = 10_000
RESPONSE_MEDIAN = 700.0
RESPONSE_SIGMA = 0.8

QUERY_KINDS = ("exact", "near", "topic", "miss")

_WORDS = [
    "cache",
    "latency",
    "vector",
    "index",
    "tenant",
    "query",
    "answer",
    "model",
    "token",
    "prompt",
    "embedding",
    "similarity",
    "recall",
    "shard",
    "replica",
    "commit",
    "schema",
    "table",
    "column",
    "batch",
    "stream",
    "window",
    "request",
    "response",
    "retry",
    "budget",
    "quota",
    "policy",
    "region",
    "cluster",
    "memory",
    "storage",
    "network",
]

F32 = npt.NDArray[np.float32]


def _unit(rows: npt.NDArray[np.floating[Any]]) -> F32:
    rows = rows.astype(np.float32, copy=False)
    norms = np.linalg.norm(rows, axis=-1, keepdims=True)
    return np.asarray(rows / np.maximum(norms, 1e-12), dtype=np.float32)


def _directions(rng: np.random.Generator, count: int, dim: int) -> F32:
    return _unit(rng.standard_normal((count, dim), dtype=np.float32))


def _zipf_weights(count: int, skew: float) -> npt.NDArray[np.float64]:
    w = 1.0 / np.arange(1, count + 1, dtype=np.float64) ** skew
    return np.asarray(w / w.sum(), dtype=np.float64)


def namespace_name(k: int) -> str:
    return f"tenant_{k:02d}"


def entry_text(i: int, topic: int) -> str:
    words = " ".join(_WORDS[(i * 7 + j * 13 + topic) % len(_WORDS)] for j in range(6))
    return f"q{i} t{topic}: how do I {words}?"


def entry_index(text: str) -> int:
    """The entry index encoded in a stored response ("a<i> ...")."""
    return int(text[1 : text.index(" ")])


@dataclass(frozen=True)
class Chunk:
    start: int
    namespaces: npt.NDArray[np.int64]
    topics: npt.NDArray[np.int64]
    vectors: F32
    response_sizes: npt.NDArray[np.int64]

    def __len__(self) -> int:
        return len(self.namespaces)


@dataclass(frozen=True)
class Query:
    kind: str
    text: str
    namespace: str
    vector: F32
    source: int | None
    """Entry index the query was made from (exact/near/topic), else None."""


@dataclass(frozen=True)
class Workload:
    n: int
    dim: int
    seed: int = 42
    namespaces: int = N_NAMESPACES

    @cached_property
    def _namespace_weights(self) -> npt.NDArray[np.float64]:
        return _zipf_weights(self.namespaces, NAMESPACE_SKEW)

    @cached_property
    def centres(self) -> F32:
        return _directions(np.random.default_rng([self.seed, self.dim, 10**9]), TOPICS, self.dim)

    @cached_property
    def _filler(self) -> str:
        rng = np.random.default_rng([self.seed, 7])
        words = rng.choice(np.array(_WORDS), size=3_000)
        return " ".join(str(w) for w in words)

    @property
    def chunk_count(self) -> int:
        return (self.n + CHUNK - 1) // CHUNK

    def _chunk_start(self, k: int) -> tuple[np.random.Generator, npt.NDArray[np.int64]]:
        """The chunk's generator, after drawing its namespaces (the first draw)."""
        count = min(CHUNK, self.n - k * CHUNK)
        rng = np.random.default_rng([self.seed, self.dim, k])
        namespaces = rng.choice(self.namespaces, size=count, p=self._namespace_weights)
        return rng, namespaces.astype(np.int64)

    def chunk_namespaces(self, k: int) -> npt.NDArray[np.int64]:
        """The namespace of each row of chunk ``k``, without making its vectors."""
        return self._chunk_start(k)[1]

    def namespace_rows(self) -> npt.NDArray[np.int64]:
        """Rows per namespace id."""
        rows = np.zeros(self.namespaces, dtype=np.int64)
        for k in range(self.chunk_count):
            rows += np.bincount(self.chunk_namespaces(k), minlength=self.namespaces)
        return rows

    def chunk(self, k: int) -> Chunk:
        start = k * CHUNK
        count = min(CHUNK, self.n - start)
        rng, namespaces = self._chunk_start(k)
        topics = rng.choice(TOPICS, size=count, p=_zipf_weights(TOPICS, TOPIC_SKEW))
        noise = _directions(rng, count, self.dim) * np.float32(ENTRY_SPREAD)
        vectors = _unit(self.centres[topics] + noise)
        sizes = rng.lognormal(np.log(RESPONSE_MEDIAN), RESPONSE_SIGMA, size=count)
        sizes = np.clip(sizes, 150, 8_000).astype(np.int64)
        return Chunk(start, namespaces, topics.astype(np.int64), vectors, sizes)

    def chunks(self) -> Iterator[Chunk]:
        for k in range(self.chunk_count):
            yield self.chunk(k)

    def items(self, chunk: Chunk) -> list[dict[str, Any]]:
        """put_many items for a chunk, with explicit embeddings."""
        filler = self._filler
        out: list[dict[str, Any]] = []
        for j in range(len(chunk)):
            i = chunk.start + j
            topic = int(chunk.topics[j])
            size = int(chunk.response_sizes[j])
            offset = (i * 31) % (len(filler) - size - 1)
            out.append(
                {
                    "query": entry_text(i, topic),
                    "response": f"a{i} " + filler[offset : offset + size],
                    "embedding": chunk.vectors[j],
                    "namespace": namespace_name(int(chunk.namespaces[j])),
                    "metadata": {"topic": topic, "model": "bench"},
                }
            )
        return out

    def queries(
        self, kind: str, count: int, salt: int = 0, among: npt.ArrayLike | None = None
    ) -> list[Query]:
        """``count`` queries of one kind; sources are stored entries drawn uniformly, so
        namespaces are queried in proportion to their size. ``among`` (namespace ids)
        draws only from the entries of those namespaces (fewer queries when they hold
        fewer than ``count`` entries)."""
        rng = np.random.default_rng([self.seed, self.dim, 10**6 + QUERY_KINDS.index(kind), salt])
        if kind == "miss":
            if among is None:
                namespaces = rng.choice(self.namespaces, size=count, p=self._namespace_weights)
            else:
                ids = np.asarray(among, dtype=np.int64)
                w = self._namespace_weights[ids]
                namespaces = ids[rng.choice(len(ids), size=count, p=w / w.sum())]
            vectors = _directions(rng, count, self.dim)
            return [
                Query(
                    kind,
                    f"unrelated {salt}-{q}: tell me about {_WORDS[q % len(_WORDS)]}",
                    namespace_name(int(namespaces[q])),
                    vectors[q],
                    None,
                )
                for q in range(count)
            ]
        if among is None:
            sources = np.sort(rng.choice(self.n, size=min(count, self.n), replace=False))
        else:
            pool = self._entries_of(np.asarray(among, dtype=np.int64))
            sources = np.sort(rng.choice(pool, size=min(count, len(pool)), replace=False))
        noise = _directions(rng, len(sources), self.dim)
        out: list[Query] = []
        for k in np.unique(sources // CHUNK):
            chunk = self.chunk(int(k))
            for q in np.flatnonzero(sources // CHUNK == k):
                i = int(sources[q])
                j = i - chunk.start
                topic = int(chunk.topics[j])
                ns = namespace_name(int(chunk.namespaces[j]))
                if kind == "exact":
                    out.append(Query(kind, entry_text(i, topic), ns, chunk.vectors[j], i))
                elif kind == "near":
                    vec = _unit(chunk.vectors[j] + np.float32(NEAR_NOISE) * noise[q])
                    out.append(Query(kind, f"paraphrase {salt} of {i}", ns, vec, i))
                else:
                    vec = _unit(self.centres[topic] + np.float32(ENTRY_SPREAD) * noise[q])
                    out.append(Query(kind, f"another question {salt} on topic {topic}", ns, vec, i))
        order = rng.permutation(len(out))
        return [out[int(o)] for o in order]

    def _entries_of(self, ids: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        """Indices of every entry in the namespaces ``ids``."""
        parts = [
            k * CHUNK + np.flatnonzero(np.isin(self.chunk_namespaces(k), ids))
            for k in range(self.chunk_count)
        ]
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)

    def nearest(self, queries: list[Query]) -> list[int]:
        """Exact top-1 entry index for each query within its namespace: one streaming
        pass over every chunk, NumPy inner products (vectors are unit, so cosine)."""
        best = np.full(len(queries), -np.inf, dtype=np.float64)
        arg = np.full(len(queries), -1, dtype=np.int64)
        by_ns: dict[str, list[int]] = {}
        for q, query in enumerate(queries):
            by_ns.setdefault(query.namespace, []).append(q)
        ns_ids = {name: int(name.split("_")[1]) for name in by_ns}
        matrices = {name: np.stack([queries[q].vector for q in qs]) for name, qs in by_ns.items()}
        for chunk in self.chunks():
            for name, qs in by_ns.items():
                rows = np.flatnonzero(chunk.namespaces == ns_ids[name])
                if not len(rows):
                    continue
                sims = chunk.vectors[rows] @ matrices[name].T  # (rows, queries)
                top = np.argmax(sims, axis=0)
                vals = sims[top, np.arange(len(qs))]
                idx = np.asarray(qs)
                better = vals > best[idx]
                best[idx[better]] = vals[better]
                arg[idx[better]] = chunk.start + rows[top[better]]
        return [int(a) for a in arg]
