"""The Store contract, run unchanged against every backend in ``STORE_BACKENDS``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from itertools import pairwise
from typing import Any

import numpy as np
import pytest

from conftest import EMBEDDER, StoreFactory
from mneme import (
    CacheClosedError,
    EmbedderDimensionError,
    EmbedderMismatchError,
    Store,
    StoredEntry,
)
from mneme._policy import to_bytes
from mneme.stores.protocol import COUNTER_NAMES, BatchStore, CounterBatchStore
from store_entries import T0, make_entry, vector_bytes


def insert_all(store: BatchStore, *entries: StoredEntry) -> list[int]:
    return [store.insert(e) for e in entries]


# -- shape and a fresh store ------------------------------------------------------------


def test_store_satisfies_the_protocol(store: BatchStore) -> None:
    assert isinstance(store, Store)
    assert isinstance(store, BatchStore)
    assert store.backend_label == store.backend_label.lower()
    assert store.backend_label
    assert isinstance(store.schema_version, int)
    assert store.schema_version >= 1


def test_fresh_store_is_empty(store: BatchStore) -> None:
    assert store.count() == 0
    assert store.count("default") == 0
    assert store.list_namespaces() == []
    assert list(store.iter_all()) == []
    assert list(store.iter_since(0)) == []
    assert list(store.iter_vectors()) == []
    assert store.iter_lru_ids(10) == []
    assert store.read_version_counter() == 0
    assert store.oldest_created_at() is None
    assert store.get_by_hash("default", "h1") is None
    assert store.get_by_id(1) is None
    assert store.read_counters() == dict.fromkeys(COUNTER_NAMES, 0)


# -- insert and read back ---------------------------------------------------------------

METADATA_CASES: dict[str, dict[str, Any] | None] = {
    "none": None,
    "empty": {},
    "flat": {"model": "gpt-x", "tokens": 123},
    "nested": {"a": {"b": {"c": [1, 2, {"d": None}]}}, "list": [[], {}, ""]},
    "unicode": {"clé": "värde", "名前": "キャッシュ", "emoji": "🧠✓", "quote": 'say "hi"\n\t\\'},
    "numbers": {
        "zero": 0,
        "negative": -7,
        "big": 2**53 + 1,
        "float": 3.25,
        "tenth": 0.1,
        "small": 1e-7,
        "true": True,
        "false": False,
        "null": None,
    },
}


@pytest.mark.parametrize("metadata", list(METADATA_CASES.values()), ids=list(METADATA_CASES))
def test_insert_round_trips_every_field(store: BatchStore, metadata: dict[str, Any] | None) -> None:
    entry = make_entry(
        "hash-round-trip",
        namespace="tenant_a",
        query="Wie spät ist es? 🕰️ 'quotes' \"double\" \n newline",
        response="Es ist 12 Uhr.\n\nZweite Zeile — mit Gedankenstrich ✓",
        seed=42,
        metadata=metadata,
        created_at=T0,
        last_accessed_at=T0 + 5,
        ttl=3600,
        access_count=3,
    )
    id_ = store.insert(entry)
    expected = replace(entry, id=id_)
    assert id_ > 0
    assert store.get_by_hash("tenant_a", "hash-round-trip") == expected
    assert store.get_by_id(id_) == expected
    got = store.get_by_id(id_)
    assert got is not None
    assert got.embedding == vector_bytes(42)
    assert type(got.embedding) is bytes
    assert got.metadata == metadata


def test_embedding_bytes_are_kept_exactly(store: BatchStore) -> None:
    # Edge values of float32: negative zero, denormals, extremes; a zero vector too.
    special = np.array([-0.0, 1e-45, -3.4e38, 3.4e38, 0.5, -1.0], dtype="<f4")
    raw = to_bytes(np.resize(special, EMBEDDER.dim).astype(np.float32))
    zero = bytes(4 * EMBEDDER.dim)
    ids = insert_all(
        store,
        replace(make_entry("special"), embedding=raw),
        replace(make_entry("zero"), embedding=zero),
    )
    assert [e.embedding for e in store.iter_all()] == [raw, zero]
    assert [v for _, _, v in store.iter_vectors()] == [raw, zero]
    entry = store.get_by_id(ids[0])
    assert entry is not None and entry.embedding == raw


def test_get_misses_return_none(store: BatchStore) -> None:
    id_ = store.insert(make_entry("h1", namespace="a"))
    assert store.get_by_hash("a", "other") is None
    assert store.get_by_hash("b", "h1") is None
    assert store.get_by_id(id_ + 1000) is None
    assert store.get_by_id(0) is None
    assert store.get_by_id(-1) is None


def test_ids_are_positive_increasing_and_never_reused(store: BatchStore) -> None:
    ids = insert_all(store, *(make_entry(f"h{i}") for i in range(5)))
    assert ids[0] > 0
    assert ids == sorted(ids)
    assert len(set(ids)) == 5
    assert store.delete_by_id(ids[-1])
    new_id = store.insert(make_entry("h-new"))
    assert new_id > ids[-1]


def test_insert_upserts_on_namespace_and_hash_keeping_the_id(store: BatchStore) -> None:
    first = make_entry(
        "same",
        namespace="ns",
        query="first query",
        response="first",
        seed=1,
        metadata={"v": 1},
        created_at=T0,
        last_accessed_at=T0 + 50,
        ttl=10,
        access_count=9,
    )
    second = make_entry(
        "same",
        namespace="ns",
        query="second query",
        response="second",
        seed=2,
        metadata=None,
        created_at=T0 + 100,
        last_accessed_at=T0 + 100,
        ttl=None,
        access_count=0,
    )
    other = store.insert(make_entry("other", namespace="ns"))
    id1 = store.insert(first)
    id2 = store.insert(second)
    assert id2 == id1
    assert id1 != other
    assert store.count() == 2
    assert store.get_by_id(id1) == replace(second, id=id1)
    assert store.get_by_hash("ns", "same") == replace(second, id=id1)
    third = replace(first, metadata={"nested": {"x": [1]}})
    assert store.insert(third) == id1
    assert store.get_by_id(id1) == replace(third, id=id1)


def test_same_hash_in_two_namespaces_is_two_rows(store: BatchStore) -> None:
    id_a = store.insert(make_entry("h", namespace="a", response="from a"))
    id_b = store.insert(make_entry("h", namespace="b", response="from b"))
    assert id_a != id_b
    a = store.get_by_hash("a", "h")
    b = store.get_by_hash("b", "h")
    assert a is not None and a.response == "from a" and a.id == id_a
    assert b is not None and b.response == "from b" and b.id == id_b
    assert store.count() == 2


# -- counting and namespaces ------------------------------------------------------------


def test_count_per_namespace_and_global(store: BatchStore) -> None:
    insert_all(
        store,
        make_entry("1", namespace="a"),
        make_entry("2", namespace="a"),
        make_entry("3", namespace="b"),
    )
    assert store.count() == 3
    assert store.count("a") == 2
    assert store.count("b") == 1
    assert store.count("missing") == 0


def test_list_namespaces_sorted_and_drops_emptied_ones(store: BatchStore) -> None:
    ids = insert_all(
        store,
        make_entry("1", namespace="gamma"),
        make_entry("2", namespace="alpha", ttl=10),
        make_entry("3", namespace="beta"),
        make_entry("4", namespace="delta"),
        make_entry("5", namespace="alpha", ttl=10),
    )
    assert store.list_namespaces() == ["alpha", "beta", "delta", "gamma"]
    assert store.delete_by_id(ids[2])
    assert store.list_namespaces() == ["alpha", "delta", "gamma"]
    assert store.clear_namespace("gamma") == 1
    assert store.list_namespaces() == ["alpha", "delta"]
    assert store.delete_expired(T0 + 10) == 2
    assert store.list_namespaces() == ["delta"]
    assert store.delete_many([ids[3]]) == {"delta": 1}
    assert store.list_namespaces() == []


def test_clear_namespace_touches_only_that_namespace(store: BatchStore) -> None:
    insert_all(
        store,
        make_entry("1", namespace="a"),
        make_entry("2", namespace="a"),
        make_entry("1", namespace="b"),
    )
    assert store.clear_namespace("a") == 2
    assert store.count("a") == 0
    assert store.get_by_hash("a", "1") is None
    b = store.get_by_hash("b", "1")
    assert b is not None and b.namespace == "b"
    assert store.count() == 1
    assert store.clear_namespace("a") == 0
    assert store.clear_namespace("never-used") == 0


# -- LRU order and access updates -------------------------------------------------------


def test_iter_lru_ids_orders_by_last_access_then_id(store: BatchStore) -> None:
    ids = insert_all(
        store,
        make_entry("a", last_accessed_at=T0 + 30),
        make_entry("b", last_accessed_at=T0 + 10),
        make_entry("c", last_accessed_at=T0 + 20),
        make_entry("d", last_accessed_at=T0 + 10),
    )
    a, b, c, d = ids
    assert store.iter_lru_ids(4) == [b, d, c, a]
    assert store.iter_lru_ids(2) == [b, d]
    assert store.iter_lru_ids(100) == [b, d, c, a]
    assert store.iter_lru_ids(0) == []


def test_update_access_moves_entry_to_the_back(store: BatchStore) -> None:
    a, b, c = insert_all(
        store,
        make_entry("a", last_accessed_at=T0),
        make_entry("b", last_accessed_at=T0 + 1),
        make_entry("c", last_accessed_at=T0 + 2),
    )
    store.update_access(a, T0 + 100)
    store.update_access(a, T0 + 100)
    store.update_access(b, T0 + 50)
    # A store may defer access updates, but must have applied them by now.
    assert store.iter_lru_ids(3) == [c, b, a]
    entry_a = store.get_by_id(a)
    entry_b = store.get_by_id(b)
    entry_c = store.get_by_id(c)
    assert entry_a is not None and entry_b is not None and entry_c is not None
    assert (entry_a.last_accessed_at, entry_a.access_count) == (T0 + 100, 2)
    assert (entry_b.last_accessed_at, entry_b.access_count) == (T0 + 50, 1)
    assert (entry_c.last_accessed_at, entry_c.access_count) == (T0 + 2, 0)
    assert entry_a.created_at == T0
    assert entry_a.response == "an answer"


def test_update_access_of_a_missing_id_is_harmless(store: BatchStore) -> None:
    id_ = store.insert(make_entry("a"))
    store.update_access(id_ + 1000, T0 + 1)
    assert store.iter_lru_ids(10) == [id_]
    assert store.count() == 1


def test_iter_lru_ids_filters_by_namespace(store: BatchStore) -> None:
    a1, b1, a2, b2 = insert_all(
        store,
        make_entry("1", namespace="a", last_accessed_at=T0 + 4),
        make_entry("1", namespace="b", last_accessed_at=T0 + 1),
        make_entry("2", namespace="a", last_accessed_at=T0 + 3),
        make_entry("2", namespace="b", last_accessed_at=T0 + 2),
    )
    assert store.iter_lru_ids(10, "a") == [a2, a1]
    assert store.iter_lru_ids(10, "b") == [b1, b2]
    assert store.iter_lru_ids(1, "a") == [a2]
    assert store.iter_lru_ids(10, "missing") == []
    assert store.iter_lru_ids(10) == [b1, b2, a2, a1]


# -- iteration --------------------------------------------------------------------------


def test_iter_all_and_iter_since_are_id_ascending(store: BatchStore) -> None:
    entries = [make_entry(f"h{i}", namespace="ab"[i % 2], seed=i) for i in range(6)]
    ids = insert_all(store, *entries)
    stored = [replace(e, id=i) for e, i in zip(entries, ids, strict=True)]
    assert list(store.iter_all()) == stored
    assert list(store.iter_since(0)) == stored
    assert list(store.iter_since(ids[2])) == stored[3:]
    assert list(store.iter_since(ids[-1])) == []
    store.delete_by_id(ids[1])
    assert [e.id for e in store.iter_all()] == [ids[0], *ids[2:]]


def test_iter_vectors_yields_id_namespace_and_bytes(store: BatchStore) -> None:
    entries = [make_entry(f"h{i}", namespace=f"ns{i % 3}", seed=i) for i in range(5)]
    ids = insert_all(store, *entries)
    expected = [(i, e.namespace, e.embedding) for e, i in zip(entries, ids, strict=True)]
    got = list(store.iter_vectors())
    assert got == expected
    assert all(type(v) is bytes and type(i) is int for i, _, v in got)
    assert list(store.iter_vectors(ids[1])) == expected[2:]
    assert list(store.iter_vectors(after_id=ids[-1])) == []


def test_iteration_crosses_batch_boundaries(store: BatchStore) -> None:
    total = 2_345
    entries = [make_entry(f"h{i}", seed=i % 7) for i in range(total)]
    ids = store.insert_many(entries)
    assert [e.id for e in store.iter_all()] == ids
    assert [i for i, _, _ in store.iter_vectors()] == ids
    assert [e.id for e in store.iter_since(ids[999])] == ids[1000:]
    assert [i for i, _, _ in store.iter_vectors(ids[1500])] == ids[1501:]


# -- deletes ----------------------------------------------------------------------------


def test_delete_by_id(store: BatchStore) -> None:
    a, b = insert_all(store, make_entry("a"), make_entry("b"))
    assert store.delete_by_id(a) is True
    assert store.delete_by_id(a) is False
    assert store.delete_by_id(b + 1000) is False
    assert store.get_by_id(a) is None
    assert store.get_by_hash("default", "a") is None
    assert store.count() == 1
    # The hash is free again: a new insert is a new row.
    assert store.insert(make_entry("a")) > b


def test_delete_expired_boundary(store: BatchStore) -> None:
    ids = insert_all(
        store,
        make_entry("short", created_at=T0, ttl=10),
        make_entry("long", created_at=T0, ttl=20),
        make_entry("forever", created_at=T0 - 10**6, ttl=None),
        make_entry("later", created_at=T0 + 5, ttl=10),
    )
    short, long, forever, later = ids
    assert store.delete_expired(T0 + 9) == 0
    assert store.count() == 4
    assert store.delete_expired(T0 + 10) == 1  # now - created_at == ttl: expired
    assert store.get_by_id(short) is None
    assert store.delete_expired(T0 + 15) == 1
    assert store.get_by_id(later) is None
    assert store.delete_expired(T0 + 10**9) == 1
    assert store.get_by_id(long) is None
    assert [e.id for e in store.iter_all()] == [forever]


def test_delete_expired_in_one_namespace(store: BatchStore) -> None:
    insert_all(
        store,
        make_entry("1", namespace="a", ttl=5),
        make_entry("2", namespace="a", ttl=None),
        make_entry("1", namespace="b", ttl=5),
    )
    assert store.delete_expired(T0 + 100, namespace="a") == 1
    assert store.count("a") == 1
    assert store.count("b") == 1
    assert store.get_by_hash("b", "1") is not None
    assert store.delete_expired(T0 + 100, namespace="missing") == 0
    assert store.delete_expired(T0 + 100) == 1
    assert store.count() == 1


# -- batch operations -------------------------------------------------------------------


def test_insert_many_returns_ids_in_input_order(store: BatchStore) -> None:
    existing = store.insert(make_entry("b", response="old"))
    batch = [
        make_entry("a", response="a"),
        make_entry("b", response="new"),
        make_entry("c", namespace="other", response="c"),
    ]
    ids = store.insert_many(batch)
    assert len(ids) == 3
    assert ids[1] == existing
    assert ids[0] != ids[2] and existing not in (ids[0], ids[2])
    for entry, id_ in zip(batch, ids, strict=True):
        assert store.get_by_id(id_) == replace(entry, id=id_)
    assert store.count() == 3


def test_insert_many_later_duplicate_wins(store: BatchStore) -> None:
    first = make_entry("dup", response="first", seed=1)
    last = make_entry("dup", response="last", seed=2, metadata={"k": "v"})
    ids = store.insert_many([first, make_entry("x"), last])
    assert ids[0] == ids[2]
    assert ids[1] != ids[0]
    assert store.count() == 2
    assert store.get_by_hash("default", "dup") == replace(last, id=ids[0])


def test_insert_many_of_nothing(store: BatchStore) -> None:
    assert store.insert_many([]) == []
    assert store.count() == 0


def test_get_many_by_hash(store: BatchStore) -> None:
    a, b = insert_all(store, make_entry("a", namespace="n"), make_entry("b", namespace="n"))
    store.insert(make_entry("c", namespace="other"))
    found = store.get_many_by_hash("n", ["a", "b", "c", "missing", "a"])
    assert set(found) == {"a", "b"}
    assert found["a"] == replace(make_entry("a", namespace="n"), id=a)
    assert found["b"] == replace(make_entry("b", namespace="n"), id=b)
    assert store.get_many_by_hash("n", []) == {}
    assert store.get_many_by_hash("other", ["a"]) == {}


def test_get_many_by_hash_large_batch(store: BatchStore) -> None:
    hashes = [f"h{i}" for i in range(1_200)]
    ids = store.insert_many([make_entry(h) for h in hashes])
    found = store.get_many_by_hash("default", [*hashes, "nope"])
    assert {h: e.id for h, e in found.items()} == dict(zip(hashes, ids, strict=True))


def test_delete_many_counts_per_namespace(store: BatchStore) -> None:
    a1, a2, b1, c1 = insert_all(
        store,
        make_entry("1", namespace="a"),
        make_entry("2", namespace="a"),
        make_entry("1", namespace="b"),
        make_entry("1", namespace="c"),
    )
    assert store.delete_many([a1, b1, a2, a1, c1 + 1000]) == {"a": 2, "b": 1}
    assert [e.id for e in store.iter_all()] == [c1]
    assert store.delete_many([a1, b1]) == {}
    assert store.delete_many([]) == {}
    assert store.count() == 1


def test_delete_many_large_batch(store: BatchStore) -> None:
    ids = store.insert_many([make_entry(f"h{i}") for i in range(1_200)])
    assert store.delete_many(ids[:1_100]) == {"default": 1_100}
    assert [e.id for e in store.iter_all()] == ids[1_100:]


def test_oldest_created_at(store: BatchStore) -> None:
    assert store.oldest_created_at() is None
    ids = insert_all(
        store,
        make_entry("1", namespace="a", created_at=T0 + 5),
        make_entry("2", namespace="b", created_at=T0 - 7),
        make_entry("3", namespace="a", created_at=T0),
    )
    assert store.oldest_created_at() == T0 - 7
    store.delete_by_id(ids[1])
    assert store.oldest_created_at() == T0
    store.clear_namespace("a")
    assert store.oldest_created_at() is None


# -- version counter --------------------------------------------------------------------

Mutation = Callable[[BatchStore, list[int]], object]

BUMPING: dict[str, Mutation] = {
    "insert": lambda s, ids: s.insert(make_entry("new")),
    "replace": lambda s, ids: s.insert(make_entry("a", response="replaced")),
    "insert_many": lambda s, ids: s.insert_many([make_entry("n1"), make_entry("n2")]),
    "delete_by_id": lambda s, ids: s.delete_by_id(ids[0]),
    "delete_expired": lambda s, ids: s.delete_expired(T0 + 10),
    "delete_expired_ns": lambda s, ids: s.delete_expired(T0 + 10, namespace="other"),
    "clear_namespace": lambda s, ids: s.clear_namespace("other"),
    "delete_many": lambda s, ids: s.delete_many([ids[0], ids[2]]),
}

NOT_BUMPING: dict[str, Mutation] = {
    "reads": lambda s, ids: (
        s.get_by_hash("default", "a"),
        s.get_by_id(ids[0]),
        s.count(),
        s.count("other"),
        s.list_namespaces(),
        s.iter_lru_ids(10),
        list(s.iter_all()),
        list(s.iter_since(0)),
        list(s.iter_vectors()),
        s.get_many_by_hash("default", ["a", "b"]),
        s.oldest_created_at(),
        s.read_meta("k"),
        s.read_counters(),
        s.get_namespace_quota("default"),
        s.integrity_check(),
    ),
    "delete_missing_id": lambda s, ids: s.delete_by_id(ids[-1] + 1000),
    "delete_expired_none": lambda s, ids: s.delete_expired(T0 + 1),
    "clear_empty_namespace": lambda s, ids: s.clear_namespace("never-used"),
    "delete_many_missing": lambda s, ids: s.delete_many([ids[-1] + 1000]),
    "delete_many_nothing": lambda s, ids: s.delete_many([]),
}


def _seed_for_version(store: BatchStore) -> list[int]:
    return insert_all(
        store,
        make_entry("a"),
        make_entry("b", ttl=10),
        make_entry("x", namespace="other", ttl=10),
    )


@pytest.mark.parametrize("mutation", list(BUMPING.values()), ids=list(BUMPING))
def test_version_counter_increases_on_every_change(store: BatchStore, mutation: Mutation) -> None:
    ids = _seed_for_version(store)
    before = store.read_version_counter()
    mutation(store, ids)
    after = store.read_version_counter()
    assert after > before


@pytest.mark.parametrize("action", list(NOT_BUMPING.values()), ids=list(NOT_BUMPING))
def test_version_counter_unchanged_when_nothing_changed(
    store: BatchStore, action: Mutation
) -> None:
    ids = _seed_for_version(store)
    before = store.read_version_counter()
    action(store, ids)
    assert store.read_version_counter() == before


def test_version_counter_starts_at_zero_and_strictly_increases(store: BatchStore) -> None:
    seen = [store.read_version_counter()]
    assert seen[0] == 0
    id_ = store.insert(make_entry("a", ttl=1))
    seen.append(store.read_version_counter())
    store.insert(make_entry("a", response="again", ttl=1))
    seen.append(store.read_version_counter())
    store.insert(make_entry("b"))
    seen.append(store.read_version_counter())
    store.delete_expired(T0 + 1)
    seen.append(store.read_version_counter())
    assert store.get_by_id(id_) is None
    store.delete_by_id(store.insert(make_entry("c")))
    seen.append(store.read_version_counter())
    assert all(later > earlier for earlier, later in pairwise(seen))


# -- meta, quotas, counters -------------------------------------------------------------


def test_meta_read_write_overwrite(store: BatchStore) -> None:
    assert store.read_meta("missing-key") is None
    store.write_meta("note", "first")
    assert store.read_meta("note") == "first"
    store.write_meta("note", "second ✓")
    assert store.read_meta("note") == "second ✓"
    store.write_meta("other", "")
    assert store.read_meta("other") == ""
    assert store.read_meta("note") == "second ✓"


def test_namespace_quotas(store: BatchStore) -> None:
    assert store.get_namespace_quota("a") is None
    store.set_namespace_quota("a", 10)
    store.set_namespace_quota("b", 3)
    assert store.get_namespace_quota("a") == 10
    assert store.get_namespace_quota("b") == 3
    store.set_namespace_quota("a", 25)
    assert store.get_namespace_quota("a") == 25
    store.set_namespace_quota("a", None)
    assert store.get_namespace_quota("a") is None
    assert store.get_namespace_quota("b") == 3
    store.set_namespace_quota("never-set", None)
    assert store.get_namespace_quota("never-set") is None


def test_counters_per_namespace_and_summed(store: BatchStore) -> None:
    zeros = dict.fromkeys(COUNTER_NAMES, 0)
    assert store.read_counters("a") == zeros
    store.add_counters("a", {"hits_exact": 2, "misses": 1})
    store.add_counters("a", {"hits_exact": 3, "evictions": 4})
    store.add_counters("b", {"hits_semantic": 5, "misses": 2, "expirations": 1})
    store.add_counters("c", {})
    assert store.read_counters("a") == {**zeros, "hits_exact": 5, "misses": 1, "evictions": 4}
    assert store.read_counters("b") == {
        **zeros,
        "hits_semantic": 5,
        "misses": 2,
        "expirations": 1,
    }
    assert store.read_counters("c") == zeros
    assert store.read_counters("missing") == zeros
    assert store.read_counters() == {
        "hits_exact": 5,
        "hits_semantic": 5,
        "misses": 3,
        "evictions": 4,
        "expirations": 1,
    }


def test_counters_of_many_namespaces_in_one_call(store: BatchStore) -> None:
    assert isinstance(store, CounterBatchStore)
    zeros = dict.fromkeys(COUNTER_NAMES, 0)
    store.add_counters("a", {"misses": 1})
    store.add_counters_many(
        {"a": {"hits_exact": 2, "misses": 3}, "b": {"evictions": 4}, "c": {}, "d d": {"misses": 1}}
    )
    store.add_counters_many({})
    assert store.read_counters("a") == {**zeros, "hits_exact": 2, "misses": 4}
    assert store.read_counters("b") == {**zeros, "evictions": 4}
    assert store.read_counters("c") == zeros
    assert store.read_counters("d d") == {**zeros, "misses": 1}
    assert store.read_counters() == {**zeros, "hits_exact": 2, "misses": 5, "evictions": 4}


def test_integrity_check_on_a_healthy_store(store: BatchStore) -> None:
    assert store.integrity_check() is True
    insert_all(store, make_entry("a"), make_entry("b", namespace="x"))
    store.delete_by_id(store.insert(make_entry("c")))
    assert store.integrity_check() is True


# -- lifecycle --------------------------------------------------------------------------

Call = Callable[[BatchStore], object]

CALLS: dict[str, Call] = {
    "get_by_hash": lambda s: s.get_by_hash("default", "a"),
    "get_by_id": lambda s: s.get_by_id(1),
    "count": lambda s: s.count(),
    "list_namespaces": lambda s: s.list_namespaces(),
    "iter_lru_ids": lambda s: s.iter_lru_ids(5),
    "iter_all": lambda s: list(s.iter_all()),
    "iter_since": lambda s: list(s.iter_since(0)),
    "iter_vectors": lambda s: list(s.iter_vectors()),
    "insert": lambda s: s.insert(make_entry("a")),
    "insert_many": lambda s: s.insert_many([make_entry("a")]),
    "insert_many_empty": lambda s: s.insert_many([]),
    "get_many_by_hash": lambda s: s.get_many_by_hash("default", ["a"]),
    "get_many_by_hash_empty": lambda s: s.get_many_by_hash("default", []),
    "delete_many": lambda s: s.delete_many([1]),
    "delete_many_empty": lambda s: s.delete_many([]),
    "oldest_created_at": lambda s: s.oldest_created_at(),
    "update_access": lambda s: s.update_access(1, T0),
    "delete_by_id": lambda s: s.delete_by_id(1),
    "delete_expired": lambda s: s.delete_expired(T0),
    "clear_namespace": lambda s: s.clear_namespace("default"),
    "set_namespace_quota": lambda s: s.set_namespace_quota("default", 5),
    "get_namespace_quota": lambda s: s.get_namespace_quota("default"),
    "read_version_counter": lambda s: s.read_version_counter(),
    "read_meta": lambda s: s.read_meta("k"),
    "write_meta": lambda s: s.write_meta("k", "v"),
    "add_counters": lambda s: s.add_counters("default", {"misses": 1}),
    "read_counters": lambda s: s.read_counters(),
    "integrity_check": lambda s: s.integrity_check(),
}


@pytest.mark.parametrize("call", list(CALLS.values()), ids=list(CALLS))
def test_use_before_open_raises(store_factory: StoreFactory, call: Call) -> None:
    with pytest.raises(CacheClosedError):
        call(store_factory())


@pytest.mark.parametrize("call", list(CALLS.values()), ids=list(CALLS))
def test_use_after_close_raises(store_factory: StoreFactory, call: Call) -> None:
    s = store_factory()
    s.open(EMBEDDER.fingerprint, EMBEDDER.dim)
    s.insert(make_entry("a"))
    s.close()
    with pytest.raises(CacheClosedError):
        call(s)


def test_close_is_idempotent_and_final(store_factory: StoreFactory) -> None:
    s = store_factory()
    s.open(EMBEDDER.fingerprint, EMBEDDER.dim)
    s.close()
    s.close()
    with pytest.raises(CacheClosedError):
        s.count()
    with pytest.raises(CacheClosedError):  # a closed store stays closed
        s.open(EMBEDDER.fingerprint, EMBEDDER.dim)
    with pytest.raises(CacheClosedError):
        s.snapshot_to("/nonexistent/snapshot.db")


def test_close_of_a_store_never_opened_is_safe(store_factory: StoreFactory) -> None:
    s = store_factory()
    s.close()
    s.close()
    with pytest.raises(CacheClosedError):
        s.count()
    with pytest.raises(CacheClosedError):
        s.open(EMBEDDER.fingerprint, EMBEDDER.dim)


def test_reopen_with_same_embedder_keeps_everything(
    persistent_store_factory: StoreFactory,
) -> None:
    store_factory = persistent_store_factory
    first = store_factory()
    first.open(EMBEDDER.fingerprint, EMBEDDER.dim)
    entry = make_entry("kept", namespace="ns", metadata={"k": [1, "two"]}, ttl=99)
    id_ = first.insert(entry)
    first.set_namespace_quota("ns", 7)
    first.write_meta("note", "hello")
    first.add_counters("ns", {"misses": 4})
    version = first.read_version_counter()
    first.close()

    second = store_factory()
    second.open(EMBEDDER.fingerprint, EMBEDDER.dim)
    try:
        assert second.get_by_hash("ns", "kept") == replace(entry, id=id_)
        assert second.count() == 1
        assert second.get_namespace_quota("ns") == 7
        assert second.read_meta("note") == "hello"
        assert second.read_counters("ns")["misses"] == 4
        assert second.read_version_counter() == version
        assert second.insert(make_entry("next", namespace="ns")) > id_
    finally:
        second.close()


@pytest.mark.parametrize(
    ("fingerprint", "dim", "error"),
    [
        ("another-embedder-v2", EMBEDDER.dim, EmbedderMismatchError),
        (EMBEDDER.fingerprint, EMBEDDER.dim * 2, EmbedderDimensionError),
    ],
    ids=["fingerprint", "dim"],
)
def test_reopen_with_another_embedder_is_refused(
    persistent_store_factory: StoreFactory, fingerprint: str, dim: int, error: type[Exception]
) -> None:
    store_factory = persistent_store_factory
    first = store_factory()
    first.open(EMBEDDER.fingerprint, EMBEDDER.dim)
    id_ = first.insert(make_entry("kept"))
    first.close()

    second = store_factory()
    with pytest.raises(error, match="reembed"):
        second.open(fingerprint, dim)
    with pytest.raises(CacheClosedError):
        second.count()
    second.open(EMBEDDER.fingerprint, EMBEDDER.dim)  # a refused open is not a close
    second.close()

    third = store_factory()
    third.open(EMBEDDER.fingerprint, EMBEDDER.dim)
    try:
        kept = third.get_by_id(id_)
        assert kept is not None and kept.query_hash == "kept"
    finally:
        third.close()


def test_fresh_store_remembers_the_first_embedder(
    persistent_store_factory: StoreFactory,
) -> None:
    store_factory = persistent_store_factory
    first = store_factory()
    first.open(EMBEDDER.fingerprint, EMBEDDER.dim)
    first.close()
    second = store_factory()
    with pytest.raises(EmbedderMismatchError, match="reembed"):
        second.open("another-embedder-v2", EMBEDDER.dim)
