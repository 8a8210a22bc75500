"""The cache's operations as sans-I/O generators.

Each flow yields ``StoreCall`` and ``EmbedCall`` requests and receives their results;
``SemanticCache`` runs them with plain calls and ``AsyncSemanticCache`` with awaits,
so both caches follow one implementation of every rule. Index and counter work is
in-process and happens inside the flows.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Generator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt

from mneme._errors import EmbedderDimensionError
from mneme._policy import TOP_K, check_namespace, eviction_batch, from_bytes, unit_vector
from mneme._types import (
    Candidates,
    Health,
    Hit,
    Progress,
    ProgressFn,
    ReplicaStatus,
    Stats,
    StoredEntry,
)
from mneme.cache.core import (
    Counters,
    PreparedPut,
    build_entry,
    decide_semantic,
    embedder_vector,
    emit,
    exact_hit,
    prepare_put,
    prepare_put_items,
)
from mneme.cache.options import CacheOptions
from mneme.index import Index, make_index
from mneme.stores.common import dedupe_batch
from mneme.stores.protocol import (
    COUNTER_NAMES,
    BatchStore,
    ChangeTrackingStore,
    ChunkedInsertStore,
    CounterBatchStore,
    LookupStore,
    Store,
    VectorSearchStore,
)

log = logging.getLogger("mneme")

_INDEX_LOAD_BATCH = 8192
# Texts per embedder call of a large put_many: bounds the embedder's working memory
# and lets progress be reported between calls.
_EMBED_CHUNK = 1024
# Items per chunk of a put_many whose chunks are checked while the store writes (see
# chunked_put_flow); a batch of at most this many is checked whole first.
_CHECK_CHUNK = 1_000
_DTYPE_BYTES = {"float32": 4, "float16": 2, "int8": 1}
_COUNTERS_META_KEY = "counters"  # where mneme 1.0 kept a store's counters, as JSON
_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class StoreCall:
    """Apply ``fn`` to the store and send back the result. On a native async store
    the result is a coroutine (or an async iterator), which the async shell awaits."""

    fn: Callable[[Any], Any]


@dataclass(frozen=True, slots=True)
class EmbedCall:
    """Embed ``texts`` (one call to ``embed_many`` when ``batch`` and the embedder has
    it, else one ``embed`` per text) and send back the raw vectors, or the exception
    the embedder raised when ``capture`` is set."""

    texts: tuple[str, ...]
    batch: bool = False
    capture: bool = False


@dataclass(frozen=True, slots=True)
class NextChunk:
    """Take up to ``n`` more items from an iterator a store call returned (sync or
    async), and send them back as a list (empty when it is exhausted)."""

    source: Any
    n: int


Call = StoreCall | EmbedCall | NextChunk
Flow = Generator[Call, Any, _T]
"""A cache operation: yields calls, receives their results, returns a ``_T``."""


def store(fn: Callable[[Store], _T]) -> Flow[_T]:
    """One store call, typed against the ``Store`` protocol: ``yield from store(...)``."""
    result: _T = yield StoreCall(fn)
    return result


def batch(fn: Callable[[BatchStore], _T]) -> Flow[_T]:
    """One call to a store with the batch methods (``BatchStore``)."""
    result: _T = yield StoreCall(fn)
    return result


def as_iterator(result: Any) -> Any:
    """Rows a store returned, as an iterator to take ``NextChunk``s from. A store
    written to 1.0's protocol may return a list: each chunk must continue where the
    last one stopped, not start again."""
    if hasattr(result, "__next__") or hasattr(result, "__anext__"):
        return result
    if hasattr(result, "__aiter__"):
        return result.__aiter__()
    return iter(result)


def chunked(fn: Callable[[ChunkedInsertStore], _T]) -> Flow[_T]:
    """One call to a store that writes a batch as its chunks are made."""
    result: _T = yield StoreCall(fn)
    return result


def tracker(fn: Callable[[ChangeTrackingStore], _T]) -> Flow[_T]:
    """One call to a store that lists changed rows (``ChangeTrackingStore``)."""
    result: _T = yield StoreCall(fn)
    return result


def counter_batch(fn: Callable[[CounterBatchStore], _T]) -> Flow[_T]:
    """One call to a store that writes many namespaces' counters at once."""
    result: _T = yield StoreCall(fn)
    return result


def looker(fn: Callable[[LookupStore], _T]) -> Flow[_T]:
    """One call to a store that answers both layers at once (``LookupStore``)."""
    result: _T = yield StoreCall(fn)
    return result


def searcher(fn: Callable[[VectorSearchStore], _T]) -> Flow[_T]:
    """One call to a store that searches itself (``VectorSearchStore``)."""
    result: _T = yield StoreCall(fn)
    return result


@dataclass(slots=True)
class CacheState:
    """What a cache knows between calls, shared by both shells."""

    options: CacheOptions
    dim: int
    fingerprint: str
    threshold: float
    search_store: bool
    index_label: str
    counters: Counters = field(default_factory=Counters)
    index: Index | None = None
    quotas: dict[str, int | None] = field(default_factory=dict)
    seen_version: int = 0
    change_tracking: bool = False
    """The store can list rows changed since a version (ChangeTrackingStore)."""
    lookup_store: bool = False
    """The store answers an exact lookup and a search in one call (LookupStore)."""
    batch: bool = False
    """The store has the batch methods (BatchStore); else the flows use 1.0's."""
    counters_at_once: bool = False
    """The store writes every namespace's counters in one call (CounterBatchStore)."""
    chunked_insert: bool = False
    """The store writes a batch as its chunks are made (ChunkedInsertStore)."""
    last_stale_check: float = 0.0


# -- opening ---------------------------------------------------------------------


def open_flow(st: CacheState) -> Flow[None]:
    for ns, quota in st.options.namespace_quotas.items():
        yield from store(lambda s: s.set_namespace_quota(ns, quota))
        st.quotas[ns] = quota
    if not st.search_store:
        yield from rebuild_index(st)


def rebuild_index(st: CacheState) -> Flow[Any]:
    """Build the in-process index from id, namespace and embedding only."""
    st.seen_version = yield from store(lambda s: s.read_version_counter())
    entries = yield from store(lambda s: s.count())
    index = make_index(
        st.options.index_backend, st.dim, st.options.vector_dtype, entries, st.options.index_options
    )
    if st.batch:
        vectors = as_iterator((yield from batch(lambda s: s.iter_vectors(0))))
    else:
        vectors = as_iterator((yield from store(lambda s: s.iter_all())))
    while chunk := (yield NextChunk(vectors, _INDEX_LOAD_BATCH)):
        if not st.batch:
            chunk = [(e.id, e.namespace, e.embedding) for e in chunk]
        _fill(index, chunk, st.dim)
    st.index = index


def _fill(index: Index, rows: Sequence[tuple[int, str, bytes]], dim: int) -> None:
    good = [r for r in rows if len(r[2]) == 4 * dim]
    if len(good) < len(rows):
        log.warning(
            "mneme: skipped %d entries whose embedding has the wrong size", len(rows) - len(good)
        )
    if good:
        matrix = np.frombuffer(b"".join(r[2] for r in good), dtype="<f4").reshape(-1, dim)
        index.add([r[0] for r in good], [r[1] for r in good], matrix.astype(np.float32))


def catch_up(st: CacheState) -> Flow[Any]:
    """stale-tolerant mode: when the store's version counter moved, bring the index up
    to date with other processes' writes, at most every ``stale_check_interval``.

    A change-tracking store hands over just the rows inserted or replaced since the
    version last seen; deleted rows are dropped when a lookup meets them (they are never
    served), and the index is rebuilt once such leftovers outnumber 10% of the store.
    Other stores are reloaded whole.
    """
    if st.options.multi_process_mode != "stale-tolerant" or st.index is None:
        return
    now = time.monotonic()
    if now - st.last_stale_check < st.options.stale_check_interval:
        return
    st.last_stale_check = now
    version = yield from store(lambda s: s.read_version_counter())
    if version == st.seen_version:
        return
    if not st.change_tracking:
        yield from rebuild_index(st)
        return
    changed = yield from tracker(lambda s: s.iter_changed_vectors(st.seen_version))
    while chunk := (yield NextChunk(changed, _INDEX_LOAD_BATCH)):
        _fill(st.index, chunk, st.dim)
    st.seen_version = version
    count: int = yield from store(lambda s: s.count())
    if len(st.index) > count + max(1000, count // 10):
        yield from rebuild_index(st)


# -- lookups ---------------------------------------------------------------------


def get_flow(
    st: CacheState, ns: str, query: str, text: str, qhash: str, embedding: Any, now: int
) -> Flow[Hit | None]:
    yield from catch_up(st)
    if st.lookup_store and embedding is not None:
        # The vector is known before the exact lookup: both layers in one round trip.
        vector, _ = _checked(embedding, st.dim, user=True)
        if vector is not None and np.any(vector):
            q, floor = vector, st.threshold
            entry, found = yield from looker(
                lambda s: s.lookup(ns, qhash, q, k=TOP_K, now=now, min_similarity=floor)
            )
            hit = yield from _exact(st, ns, entry, now)
            if hit is not None:
                return hit
            return (yield from _semantic(st, ns, query, vector, None, now, found=found))
    entry = yield from store(lambda s: s.get_by_hash(ns, qhash))
    hit = yield from _exact(st, ns, entry, now)
    if hit is not None:
        return hit
    vectors, reasons = yield from _query_vectors(st, [text], embedding)
    return (yield from _semantic(st, ns, query, vectors[0], reasons[0], now))


def get_many_flow(
    st: CacheState, ns: str, queries: Sequence[str], keys: Sequence[tuple[str, str]], now: int
) -> Flow[list[Hit | None]]:
    """Same results as a loop of ``get``: one exact lookup for all, one embedder call
    for the queries the exact layer cannot answer, then the queries in order, since a
    semantic step may delete (invalid or expired) an entry a later query would hit.
    ``queries`` are the caller's texts (the near-miss checks read them), ``keys`` their
    (embedder text, hash)."""
    yield from catch_up(st)
    hashes = list(dict.fromkeys(h for _, h in keys))
    found = yield from _get_many_by_hash(st, ns, hashes)
    todo = [i for i, (_, h) in enumerate(keys) if h not in found or found[h].is_expired(now)]
    vectors, reasons = yield from _query_vectors(st, [keys[i][0] for i in todo], None)
    embedded = dict(zip(todo, zip(vectors, reasons, strict=True), strict=True))
    gone: set[int] = set()  # ids deleted during this batch
    results: list[Hit | None] = []
    for i, (text, qhash) in enumerate(keys):
        entry = found.get(qhash)
        if entry is not None and entry.id in gone:
            entry = None
        hit = yield from _exact(st, ns, entry, now)
        if hit is None:
            if entry is not None:
                gone.add(entry.id)  # expired: _exact deleted it
            if i in embedded:
                vector, reason = embedded[i]
            else:  # its exact entry went earlier in the batch: embed it now
                one, why = yield from _query_vectors(st, [text], None)
                vector, reason = one[0], why[0]
            hit = yield from _semantic(st, ns, queries[i], vector, reason, now, gone)
        results.append(hit)
    return results


def _exact(st: CacheState, ns: str, entry: StoredEntry | None, now: int) -> Flow[Hit | None]:
    if entry is None:
        return None
    if entry.is_expired(now):
        yield from _delete_ids(st, [entry.id], expired=True)
        return None
    yield from store(lambda s: s.update_access(entry.id, now))
    hit = exact_hit(entry, now)
    yield from _record_hit(st, hit)
    return hit


def _query_vectors(st: CacheState, texts: list[str], embedding: Any) -> Flow[Any]:
    """Vectors (or None) with a miss reason for each text; never raises."""
    if not texts:
        return [], []
    if embedding is not None:
        vec, reason = _checked(embedding, st.dim, user=True)
        return [vec], [reason]
    raw = yield EmbedCall(tuple(texts), batch=len(texts) > 1, capture=True)
    if isinstance(raw, BaseException):
        log.warning("mneme: embedder failed on get; counting a miss", exc_info=raw)
        return [None] * len(texts), ["embedder_failure"] * len(texts)
    pairs = [_checked(r, st.dim, user=False) for r in raw]
    return [p[0] for p in pairs], [p[1] for p in pairs]


def _checked(
    raw: Any, dim: int, *, user: bool
) -> tuple[npt.NDArray[np.float32] | None, str | None]:
    if isinstance(raw, BaseException):
        log.warning("mneme: embedder failed on get; counting a miss", exc_info=raw)
        return None, "embedder_failure"
    try:
        return unit_vector(raw, dim), None
    except EmbedderDimensionError:
        return None, "dim_mismatch"
    except ValueError:
        return None, "invalid_embedding" if user else "embedder_failure"


def _semantic(
    st: CacheState,
    ns: str,
    query: str,
    vector: npt.NDArray[np.float32] | None,
    reason: str | None,
    now: int,
    gone: set[int] | None = None,
    found: Candidates | None = None,
) -> Flow[Hit | None]:
    """Layer 2; adds the ids it deletes to ``gone`` when given. ``found``: the
    candidates, when the store already returned them with the exact lookup."""
    if vector is None or not np.any(vector):
        yield from _record_miss(st, ns, reason or "no_match")
        return None
    threshold = st.threshold
    if found is not None:
        candidates, below = found, found.below
    else:
        candidates, below = yield from _candidates(st, ns, vector, now, threshold)
    decision = decide_semantic(
        st.options, candidates, now, threshold, below_follows=below, query=query
    )
    _record_refusals(st, ns, decision.refused)
    if decision.expired:
        yield from _delete_ids(st, decision.expired, expired=True)
    if decision.invalid:
        yield from _delete_ids(st, decision.invalid, expired=False)
    if gone is not None:
        gone.update(decision.expired, decision.invalid)
    if decision.hit is None or decision.hit_id is None:
        yield from _record_miss(st, ns, decision.miss_reason or "no_match")
        return None
    hit_id = decision.hit_id
    yield from store(lambda s: s.update_access(hit_id, now))
    yield from _record_hit(st, decision.hit)
    return decision.hit


def _candidates(
    st: CacheState, ns: str, vector: npt.NDArray[np.float32], now: int, threshold: float
) -> Flow[Any]:
    """The ranked candidates with their entries, and whether a neighbour below the
    threshold was left unfetched (in-process index: such a neighbour can never be
    served, so fetching it would be a wasted round trip)."""
    if st.lookup_store:  # reads only the entries at or above the threshold
        usable = yield from looker(
            lambda s: s.search(ns, vector, k=TOP_K, now=now, min_similarity=threshold)
        )
        return usable, usable.below
    if st.search_store:
        found = yield from searcher(lambda s: s.search(ns, vector, k=TOP_K, now=now))
        return found, False
    assert st.index is not None
    out: list[tuple[StoredEntry, float]] = []
    below = False
    for _ in range(TOP_K):
        out, below, stale = [], False, False
        for id_, similarity in st.index.search(ns, vector, TOP_K):
            if similarity < threshold:
                below = True
                break
            entry = yield from store(lambda s: s.get_by_id(id_))
            if entry is None or entry.namespace != ns:
                st.index.remove(id_)  # deleted by another process or by vacuum
                stale = True
                continue
            out.append((entry, similarity))
        if not stale or below or len(out) == TOP_K:
            break  # else search again so the dropped rows' places are filled
    return out, below


# -- writes ----------------------------------------------------------------------


def report(progress: ProgressFn | None, task: str, done: int, total: int | None) -> None:
    if progress is not None:
        progress(Progress(task, done, total))


def put_flow(
    st: CacheState,
    prepared: Sequence[PreparedPut],
    now: int,
    *,
    batch: bool,
    progress: ProgressFn | None = None,
) -> Flow[None]:
    """Embed what has no embedding (a large batch in chunks), write in one store call,
    index, evict. ``progress`` hears of the tasks "embed" and "write"."""
    todo = [p for p in prepared if p.embedding is None]
    vectors: dict[int, npt.NDArray[np.float32]] = {}
    step = _EMBED_CHUNK if batch else 1
    if todo:
        report(progress, "embed", 0, len(todo))
    for start in range(0, len(todo), step):
        chunk = todo[start : start + step]
        raw = yield EmbedCall(tuple(p.text for p in chunk), batch=batch)
        if len(raw) != len(chunk):
            raise EmbedderDimensionError(
                f"the embedder returned {len(raw)} vectors for {len(chunk)} texts (dim mismatch)"
            )
        vectors.update((id(p), embedder_vector(r, st.dim)) for p, r in zip(chunk, raw, strict=True))
        report(progress, "embed", start + len(chunk), len(todo))
    entries = dedupe_batch(
        [
            build_entry(p, p.embedding if p.embedding is not None else vectors[id(p)], now)
            for p in prepared
        ]
    )
    report(progress, "write", 0, len(entries))
    if batch:
        ids = yield from _insert_many(st, entries)
    else:
        ids = [(yield from store(lambda s: s.insert(entries[0])))]
    report(progress, "write", len(entries), len(entries))
    _index_written(st, ids, entries)
    yield from _after_write(st, {e.namespace for e in entries})


def chunked_put_flow(
    st: CacheState,
    items: Sequence[Mapping[str, Any]],
    namespace: str,
    now: int,
    progress: ProgressFn | None,
) -> Flow[None]:
    """``put_many`` of items that all carry their embedding, on a store that writes a
    batch as its chunks are made (``ChunkedInsertStore``): each chunk is checked and
    built while the store's server writes the one before. A bad item raises from
    inside the store's transaction, which then stores nothing, as if every item had
    been checked first. ``progress`` hears of the task "write" chunk by chunk."""
    total = len(items)
    built: list[StoredEntry] = []

    def chunks() -> Iterable[list[StoredEntry]]:
        for start in range(0, total, _CHECK_CHUNK):
            report(progress, "write", start, total)
            part = items[start : start + _CHECK_CHUNK]
            prepared = prepare_put_items(st.options, part, namespace, st.dim, first=start)
            chunk = [build_entry(p, _given(p), now) for p in prepared]
            built.extend(chunk)
            yield chunk

    ids = yield from chunked(lambda s: s.insert_chunks(chunks()))
    report(progress, "write", total, total)
    _index_written(st, ids, built)
    yield from _after_write(st, {e.namespace for e in built})


def _index_written(st: CacheState, ids: Sequence[int], entries: Sequence[StoredEntry]) -> None:
    """Add what a write stored to the in-process index, if the cache keeps one.
    Entries of one key share an id; the last one's vector is the stored one."""
    if st.index is None or not entries:
        return
    last = {id_: e for id_, e in zip(ids, entries, strict=True)}
    st.index.add(
        list(last),
        [e.namespace for e in last.values()],
        np.stack([from_bytes(e.embedding) for e in last.values()]),
    )


def _given(p: PreparedPut) -> npt.NDArray[np.float32]:
    if p.embedding is None:  # chunked_put_flow takes only items that carry one
        raise AssertionError("an item without its embedding reached chunked_put_flow")
    return p.embedding


def load_flow(st: CacheState, entries: Sequence[StoredEntry]) -> Flow[Any]:
    """Insert entries as they are (a dump being loaded)."""
    if not entries:
        return
    ids = yield from _insert_many(st, entries)
    _index_written(st, ids, entries)


def delete_flow(st: CacheState, ns: str, qhash: str) -> Flow[bool]:
    entry = yield from store(lambda s: s.get_by_hash(ns, qhash))
    if entry is None:
        return False
    deleted: bool = yield from store(lambda s: s.delete_by_id(entry.id))
    if st.index is not None:
        st.index.remove(entry.id)
    return deleted


def _delete_ids(st: CacheState, ids: Sequence[int], *, expired: bool) -> Flow[Any]:
    counts = yield from _delete_many(st, ids)
    if st.index is not None:
        for id_ in ids:
            st.index.remove(id_)
    if expired:
        for ns, n in counts.items():
            st.counters.add(ns, "expirations", n)
            emit(st.options.metrics_hook, "expired", {"namespace": ns, "count": n})


def _after_write(st: CacheState, namespaces: set[str]) -> Flow[Any]:
    """Evict what quotas and max_entries demand, then flush counters."""
    over_quota = False
    for ns in sorted(namespaces):
        if ns not in st.quotas:
            st.quotas[ns] = yield from store(lambda s: s.get_namespace_quota(ns))
        quota = st.quotas[ns]
        if quota is not None:
            over_quota |= yield from _evict(st, ns, quota)
    if not over_quota and st.options.max_entries is not None:
        yield from _evict(st, None, st.options.max_entries)
    yield from flush_counters(st)


def _evict(st: CacheState, ns: str | None, cap: int) -> Flow[Any]:
    n = eviction_batch((yield from store(lambda s: s.count(ns))), cap)
    if not n:
        return False
    ids = list((yield from store(lambda s: s.iter_lru_ids(n, ns))))
    counts = yield from _delete_many(st, ids)
    if st.index is not None:
        for id_ in ids:
            st.index.remove(id_)
    for evicted_ns, n in counts.items():
        st.counters.add(evicted_ns, "evictions", n)
        emit(st.options.metrics_hook, "eviction", {"namespace": evicted_ns, "count": n})
    return True


# -- counters --------------------------------------------------------------------


def _record_hit(st: CacheState, hit: Hit) -> Flow[Any]:
    st.counters.add(hit.namespace, "hits_exact" if hit.layer == "exact" else "hits_semantic")
    emit(
        st.options.metrics_hook,
        "hit",
        {
            "namespace": hit.namespace,
            "layer": hit.layer,
            "similarity": hit.similarity,
            "confidence": hit.confidence,
            "age_seconds": hit.age_seconds,
        },
    )
    if st.counters.should_flush():
        yield from flush_counters(st)


REFUSED_PREFIX = "refused_"
"""Store counters of near-miss refusals are named ``refused_<check>``."""


def _record_refusals(st: CacheState, ns: str, refused: Sequence[tuple[str, float]]) -> None:
    for check, similarity in refused:
        st.counters.add(ns, REFUSED_PREFIX + check)
        emit(
            st.options.metrics_hook,
            "refused",
            {"namespace": ns, "check": check, "similarity": similarity},
        )


def _record_miss(st: CacheState, ns: str, reason: str) -> Flow[Any]:
    st.counters.add(ns, "misses")
    emit(st.options.metrics_hook, "miss", {"namespace": ns, "reason": reason})
    if st.counters.should_flush():
        yield from flush_counters(st)


def flush_counters(st: CacheState) -> Flow[None]:
    pending = st.counters.take()
    if not pending:
        return
    try:
        if st.counters_at_once:
            yield from counter_batch(lambda s: s.add_counters_many(pending))
        elif st.batch:
            for ns, deltas in pending.items():
                yield from batch(lambda s: s.add_counters(ns, deltas))
        else:
            saved = yield from _meta_counters()
            for ns, deltas in pending.items():
                for name, n in deltas.items():
                    saved[f"{ns}:{name}"] = saved.get(f"{ns}:{name}", 0) + n
            text = json.dumps(saved, sort_keys=True)
            yield from store(lambda s: s.write_meta(_COUNTERS_META_KEY, text))
    except BaseException:
        st.counters.restore(pending)
        raise


def _read_counters(st: CacheState, ns: str | None) -> Flow[dict[str, int]]:
    if st.batch:
        return (yield from batch(lambda s: s.read_counters(ns)))
    totals = dict.fromkeys(COUNTER_NAMES, 0)
    for key, n in (yield from _meta_counters()).items():
        key_ns, _, name = key.rpartition(":")
        if name in totals and (ns is None or key_ns == ns):
            totals[name] += n
    return totals


def _meta_counters() -> Flow[dict[str, int]]:
    """Counters as mneme 1.0 kept them: JSON {"namespace:name": total} in the meta."""
    text = yield from store(lambda s: s.read_meta(_COUNTERS_META_KEY))
    try:
        saved = json.loads(text) if text else {}
        return {str(k): int(v) for k, v in saved.items()}
    except (ValueError, TypeError, AttributeError):
        log.warning("mneme: the store's counters are unreadable; counting from zero")
        return {}


# -- the batch methods, or the base methods in a loop for a store without them ----


def _insert_many(st: CacheState, entries: Sequence[StoredEntry]) -> Flow[list[int]]:
    if st.batch:
        return (yield from batch(lambda s: s.insert_many(list(entries))))
    ids: list[int] = []
    for entry in entries:
        ids.append((yield from store(lambda s: s.insert(entry))))
    return ids


def _get_many_by_hash(
    st: CacheState, ns: str, hashes: Sequence[str]
) -> Flow[dict[str, StoredEntry]]:
    if st.batch:
        return (yield from batch(lambda s: s.get_many_by_hash(ns, hashes)))
    found: dict[str, StoredEntry] = {}
    for h in hashes:
        entry = yield from store(lambda s: s.get_by_hash(ns, h))
        if entry is not None:
            found[h] = entry
    return found


def _delete_many(st: CacheState, ids: Sequence[int]) -> Flow[dict[str, int]]:
    if st.batch:
        return (yield from batch(lambda s: s.delete_many(list(ids))))
    counts: dict[str, int] = {}
    for id_ in dict.fromkeys(ids):
        entry = yield from store(lambda s: s.get_by_id(id_))
        if entry is not None and (yield from store(lambda s: s.delete_by_id(id_))):
            counts[entry.namespace] = counts.get(entry.namespace, 0) + 1
    return counts


def _oldest_created_at(st: CacheState) -> Flow[int | None]:
    if st.batch:
        return (yield from batch(lambda s: s.oldest_created_at()))
    oldest: int | None = None
    entries = as_iterator((yield from store(lambda s: s.iter_all())))
    while chunk := (yield NextChunk(entries, _INDEX_LOAD_BATCH)):
        first = min(e.created_at for e in chunk)
        oldest = first if oldest is None else min(oldest, first)
    return oldest


# -- maintenance and introspection ----------------------------------------------


def vacuum_flow(st: CacheState, namespace: str | None, compact: bool, now: int) -> Flow[int]:
    if namespace is not None:
        namespaces = [namespace]
    else:
        namespaces = yield from store(lambda s: s.list_namespaces())
    total = 0
    for ns in namespaces:
        n: int = yield from store(lambda s: s.delete_expired(now, ns))
        if n:
            total += n
            st.counters.add(ns, "expirations", n)
            emit(st.options.metrics_hook, "expired", {"namespace": ns, "count": n})
    if total and st.index is not None:
        yield from _forget_deleted(st)
    if compact and st.index is not None:
        st.index.compact()
    yield from flush_counters(st)
    return total


def _forget_deleted(st: CacheState) -> Flow[None]:
    """Remove from the index the rows the store no longer has. They become tombstones,
    whose memory ``compact()`` gives back (``vacuum(compact=False)`` leaves them)."""
    assert st.index is not None
    count: int = yield from store(lambda s: s.count())
    # Ids only, no vectors; the margin covers rows other processes add meanwhile.
    live = set((yield from store(lambda s: s.iter_lru_ids(2 * count + 1000))))
    for id_ in st.index.ids():
        if id_ not in live:
            st.index.remove(id_)


def clear_namespace_flow(st: CacheState, ns: str) -> Flow[int]:
    n: int = yield from store(lambda s: s.clear_namespace(ns))
    if st.index is not None:
        st.index.remove_namespace(ns)
    return n


def clear_flow(st: CacheState) -> Flow[int]:
    total = 0
    for ns in (yield from store(lambda s: s.list_namespaces())):
        total += yield from clear_namespace_flow(st, ns)
    return total


def stats_flow(st: CacheState, ns: str | None) -> Flow[Stats]:
    counters = yield from _read_counters(st, ns)
    for name, n in st.counters.peek(ns).items():
        counters[name] = counters.get(name, 0) + n
    entries: int = yield from store(lambda s: s.count(ns))
    index_bytes = None if st.index is None else st.index.memory_bytes
    # As in 1.0: what the live vectors need at the in-memory dtype. The index's real
    # size (capacity, graph links, tombstones until compact()) is index_memory_bytes.
    estimate = 0 if st.index is None else entries * st.dim * _DTYPE_BYTES[st.options.vector_dtype]
    return Stats(
        namespace=ns,
        entries=entries,
        hits_exact=counters.get("hits_exact", 0),
        hits_semantic=counters.get("hits_semantic", 0),
        misses=counters.get("misses", 0),
        evictions=counters.get("evictions", 0),
        expirations=counters.get("expirations", 0),
        embedder_fingerprint=st.fingerprint,
        vector_dtype=st.options.vector_dtype,  # type: ignore[arg-type]
        memory_bytes_estimate=estimate,
        index_memory_bytes=index_bytes,
        index_tombstone_count=None if st.index is None else st.index.tombstone_count,
        refusals={
            name[len(REFUSED_PREFIX) :]: n
            for name, n in sorted(counters.items())
            if name.startswith(REFUSED_PREFIX) and n
        },
    )


def health_flow(
    st: CacheState,
    now: int,
    store_backend: str,
    schema_version: int | None,
    replicated: bool = False,
) -> Flow[Health]:
    """``schema_version`` None: the store does not say (1.0's protocol), so read it
    from its meta as 1.0 did. ``replicated``: the store reports read replicas
    (``ReportsReplicas``)."""
    if schema_version is None:
        stamped = yield from store(lambda s: s.read_meta("schema_version"))
        schema_version = int(stamped) if stamped and stamped.isdigit() else 1
    try:
        integrity: bool = yield from store(lambda s: s.integrity_check())
    except Exception:
        log.exception("mneme: integrity check failed")
        integrity = False
    fingerprint_ok = (
        yield from store(lambda s: s.read_meta("embedder_fingerprint"))
    ) == st.fingerprint
    oldest = yield from _oldest_created_at(st)
    entries: int = yield from store(lambda s: s.count())
    namespaces: list[str] = yield from store(lambda s: s.list_namespaces())
    replicas: tuple[ReplicaStatus, ...] = ()
    if replicated:
        replicas = yield StoreCall(lambda s: s.replica_status())
    return Health(
        healthy=integrity and fingerprint_ok,
        schema_version=schema_version,
        integrity_ok=integrity,
        embedder_fingerprint_match=fingerprint_ok,
        entries=entries,
        namespaces=len(namespaces),
        oldest_entry_age_seconds=None if oldest is None else float(max(now - oldest, 0)),
        index_backend=st.index_label if st.index is None else st.index.backend_label,
        store_backend=store_backend,
        vector_dtype=st.options.vector_dtype,  # type: ignore[arg-type]
        multi_process_mode=st.options.multi_process_mode,  # type: ignore[arg-type]
        replicas=replicas,
    )


# -- requests: a public method's arguments checked, as the flow that answers it -------
# Each is an ordinary function, so bad arguments raise before anything runs.


def _done(value: _T) -> Flow[_T]:
    return value
    yield  # a flow that needs no I/O


def get_request(
    st: CacheState, query: Any, embedding: Any, namespace: Any, bypass: bool, now: int
) -> Flow[Hit | None]:
    ns = check_namespace(namespace)
    text, qhash = st.options.key(query)
    if bypass:
        return bypass_flow(st, ns)
    return get_flow(st, ns, query, text, qhash, embedding, now)


def bypass_flow(st: CacheState, ns: str) -> Flow[None]:
    """A forced miss: no lookup, counted and reported as a miss, reason "bypass"."""
    yield from _record_miss(st, ns, "bypass")


def get_many_request(
    st: CacheState, queries: Sequence[Any], namespace: Any, now: int
) -> Flow[list[Hit | None]]:
    ns = check_namespace(namespace)
    keys = [st.options.key(q) for q in queries]
    return get_many_flow(st, ns, list(queries), keys, now) if keys else _done([])


def put_request(
    st: CacheState,
    query: Any,
    response: Any,
    *,
    embedding: Any,
    namespace: Any,
    metadata: Any,
    ttl: Any,
    now: int,
) -> Flow[None]:
    p = prepare_put(
        st.options,
        query,
        response,
        namespace=namespace,
        metadata=metadata,
        ttl=ttl,
        embedding=embedding,
        dim=st.dim,
    )
    return put_flow(st, [p], now, batch=False)


def put_many_request(
    st: CacheState,
    items: Iterable[Mapping[str, Any]],
    namespace: Any,
    now: int,
    progress: ProgressFn | None = None,
) -> Flow[None]:
    if st.chunked_insert:
        items = list(items)
        if len(items) > _CHECK_CHUNK and all(_carries_embedding(item) for item in items):
            return chunked_put_flow(st, items, namespace, now, progress)
    prepared = prepare_put_items(st.options, items, namespace, st.dim)
    if not prepared:
        return _done(None)
    return put_flow(st, prepared, now, batch=True, progress=progress)


def _carries_embedding(item: object) -> bool:
    return isinstance(item, Mapping) and item.get("embedding") is not None


def delete_request(st: CacheState, query: Any, namespace: Any) -> Flow[bool]:
    ns = check_namespace(namespace)
    _, qhash = st.options.key(query)
    return delete_flow(st, ns, qhash)


def vacuum_request(st: CacheState, namespace: Any, compact: bool, now: int) -> Flow[int]:
    ns = None if namespace is None else check_namespace(namespace)
    return vacuum_flow(st, ns, compact, now)


def stats_request(st: CacheState, namespace: Any) -> Flow[Stats]:
    return stats_flow(st, None if namespace is None else check_namespace(namespace))


def clear_namespace_request(st: CacheState, namespace: Any) -> Flow[int]:
    return clear_namespace_flow(st, check_namespace(namespace))


def compact_flow(st: CacheState) -> Flow[int]:
    return 0 if st.index is None else st.index.compact()
    yield  # no I/O: the index lives in process


def requantize_flow(st: CacheState, dtype: str) -> Flow[None]:
    st.options = replace(st.options, vector_dtype=dtype)
    if st.index is not None:
        yield from rebuild_index(st)


def list_namespaces_flow() -> Flow[list[str]]:
    namespaces: list[str] = yield from store(lambda s: s.list_namespaces())
    return namespaces
