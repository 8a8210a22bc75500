"""RedisStore beyond the contract: constructor, extra, key layout, native TTL, failures."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from urllib.parse import urlsplit, urlunsplit

import pytest
import redis

from conftest import EMBEDDER
from kv_fixtures import RedisStoreFactory, delete_prefix
from mneme import (
    CacheClosedError,
    CheckpointError,
    SchemaMigrationError,
    SemanticCache,
    StoreBackendError,
)
from mneme.stores.redis.store import RedisStore
from store_entries import T0, make_entry

pytestmark = pytest.mark.backend("redis")


@pytest.fixture
def opened(redis_store_factory: RedisStoreFactory) -> Iterator[RedisStore]:
    store = redis_store_factory()
    store.open(EMBEDDER.fingerprint, EMBEDDER.dim)
    yield store
    store.close()


# -- constructor and extra --------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"url": "redis://localhost:6379/0", "client": redis.Redis()}],
    ids=["neither", "both"],
)
def test_exactly_one_of_url_or_client(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="exactly one"):
        RedisStore(**kwargs)  # type: ignore[arg-type]


def test_key_prefix_must_not_be_empty() -> None:
    with pytest.raises(ValueError, match="key_prefix"):
        RedisStore(url="redis://localhost:6379/0", key_prefix="")


def test_client_must_return_bytes() -> None:
    with pytest.raises(ValueError, match="decode_responses=False"):
        RedisStore(client=redis.Redis(decode_responses=True))


def test_constructor_does_no_io_and_open_reports_an_unreachable_server() -> None:
    # Nothing listens on port 1: only open() finds out.
    store = RedisStore(url="redis://:s3cret@127.0.0.1:1/0")
    with pytest.raises(CacheClosedError):
        store.count()
    with pytest.raises(StoreBackendError, match=r"RedisStore\.open") as info:
        store.open(EMBEDDER.fingerprint, EMBEDDER.dim)
    assert isinstance(info.value.__cause__, redis.ConnectionError)
    assert "s3cret" not in str(info.value)
    assert "s3cret" not in repr(store)
    with pytest.raises(CacheClosedError):
        store.count()


def test_import_mneme_does_not_import_redis() -> None:
    code = "import mneme, sys; assert 'redis' not in sys.modules, 'redis imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_missing_redis_names_the_extra() -> None:
    code = textwrap.dedent(
        """
        import sys
        sys.modules["redis"] = None
        from mneme import StoreBackendError
        from mneme.stores.redis.store import RedisStore
        try:
            RedisStore(url="redis://localhost:6379/0")
        except StoreBackendError as exc:
            print(exc)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True
    ).stdout
    assert "requires the optional 'redis' extra" in out
    assert "pip install 'mneme-semantic-cache[redis]'" in out


def test_snapshot_and_restore_name_the_redis_tools(opened: RedisStore) -> None:
    with pytest.raises(CheckpointError, match="redis-cli"):
        opened.snapshot_to("/tmp/x.rdb")
    with pytest.raises(CheckpointError, match="redis-cli"):
        RedisStore.restore_from("/tmp/x.rdb", "/tmp/y")
    assert opened.backend_label == "redis"
    assert opened.schema_version == 1


# -- key layout -------------------------------------------------------------------------


def test_key_layout(opened: RedisStore, redis_client: redis.Redis, redis_prefix: str) -> None:
    p = redis_prefix
    a = opened.insert(make_entry("qa", namespace="ns", last_accessed_at=T0 + 5, ttl=60))
    b = opened.insert(make_entry("qb", namespace="ns"))
    opened.set_namespace_quota("ns", 9)
    opened.add_counters("ns", {"misses": 2})

    assert redis_client.type(f"{p}:e:{a}") == b"hash"
    fields = redis_client.hgetall(f"{p}:e:{a}")
    assert fields[b"ns"] == b"ns"
    assert fields[b"qh"] == b"qa"
    assert fields[b"t"] == b"60"
    assert fields[b"a"] == str(T0 + 5).encode()
    assert fields[b"v"] == make_entry("qa").embedding
    assert b"t" not in redis_client.hgetall(f"{p}:e:{b}")
    assert redis_client.hgetall(f"{p}:h:ns") == {b"qa": str(a).encode(), b"qb": str(b).encode()}
    padded = [f"{i:020d}".encode() for i in (a, b)]
    assert redis_client.zrange(f"{p}:ids", 0, -1) == padded
    assert redis_client.zrange(f"{p}:lru", 0, -1, withscores=True) == [
        (padded[1], float(T0)),
        (padded[0], float(T0 + 5)),
    ]
    assert redis_client.zrange(f"{p}:lru:ns", 0, -1) == [padded[1], padded[0]]
    assert redis_client.zrange(f"{p}:exp", 0, -1, withscores=True) == [(padded[0], float(T0 + 60))]
    assert redis_client.hgetall(f"{p}:ns") == {b"ns": b"2"}
    assert redis_client.hget(f"{p}:q", "ns") == b"9"
    assert redis_client.hget(f"{p}:c:ns", "misses") == b"2"
    assert redis_client.get(f"{p}:version") == b"2"
    assert redis_client.get(f"{p}:seq") == str(b).encode()
    assert redis_client.hget(f"{p}:meta", "embedder_fingerprint") == EMBEDDER.fingerprint.encode()

    opened.delete_by_id(a)
    opened.delete_by_id(b)
    left = {k.decode() for k in redis_client.scan_iter(match=f"{p}:*")}
    assert left == {f"{p}:{k}" for k in ("meta", "version", "seq", "q", "c:ns", "cns")}


def test_prefixes_isolate_caches(redis_url: str, redis_client: redis.Redis) -> None:
    prefixes = [f"mneme-test-{uuid.uuid4().hex}" for _ in range(2)]
    stores = [RedisStore(url=redis_url, key_prefix=p) for p in prefixes]
    try:
        for s in stores:
            s.open(EMBEDDER.fingerprint, EMBEDDER.dim)
        stores[0].insert(make_entry("h"))
        assert stores[0].count() == 1
        assert stores[1].count() == 0
        assert stores[1].get_by_hash("default", "h") is None
    finally:
        for s, p in zip(stores, prefixes, strict=True):
            s.close()
            delete_prefix(redis_client, p)


def test_namespaces_and_hashes_with_separators_and_unicode(opened: RedisStore) -> None:
    odd = ["a:b", "名前", "🧠 ns", "", "e:1", '"quoted"\n']
    ids = [opened.insert(make_entry(f"{ns}:h✓", namespace=ns)) for ns in odd]
    assert opened.list_namespaces() == sorted(odd)
    for ns, id_ in zip(odd, ids, strict=True):
        got = opened.get_by_hash(ns, f"{ns}:h✓")
        assert got is not None and got.id == id_ and got.namespace == ns
    assert opened.delete_many(ids[:3]) == {ns: 1 for ns in odd[:3]}
    assert opened.clear_namespace("") == 1
    assert opened.delete_expired(T0, namespace="e:1") == 0
    assert opened.list_namespaces() == sorted(odd[4:])
    assert opened.integrity_check()


def test_client_given_is_used_and_never_closed(
    redis_url: str, redis_prefix: str, redis_client: redis.Redis
) -> None:
    store = RedisStore(client=redis_client, key_prefix=redis_prefix)
    store.open(EMBEDDER.fingerprint, EMBEDDER.dim)
    store.insert(make_entry("h"))
    store.close()
    assert redis_client.ping()
    assert redis_client.exists(f"{redis_prefix}:e:1") == 1


def test_url_client_is_closed_with_the_store(
    redis_url: str, redis_prefix: str, redis_client: redis.Redis
) -> None:
    name = f"mneme-{uuid.uuid4().hex[:8]}"
    sep = "&" if "?" in redis_url else "?"
    store = RedisStore(url=f"{redis_url}{sep}client_name={name}", key_prefix=redis_prefix)

    def connections() -> int:
        return sum(1 for c in redis_client.client_list() if c.get("name") == name)

    store.open(EMBEDDER.fingerprint, EMBEDDER.dim)
    store.count()
    assert connections() >= 1
    store.close()
    assert connections() == 0


def test_semantic_cache_on_redis(redis_store_factory: RedisStoreFactory) -> None:
    with SemanticCache(store=redis_store_factory(), embedder=EMBEDDER) as cache:
        cache.put("What is the capital of France?", "Paris", metadata={"src": "test"})
        hit = cache.get("what is the capital of  france?")
        assert hit is not None and hit.response == "Paris" and hit.layer == "exact"
        assert cache.health().store_backend == "redis"
    with SemanticCache(store=redis_store_factory(), embedder=EMBEDDER) as cache:
        hit = cache.get("What is the capital of France?")
        assert hit is not None and hit.metadata == {"src": "test"}


# -- native TTL -------------------------------------------------------------------------


def test_native_ttl_sets_an_expiry_on_entry_keys_only(
    opened: RedisStore, redis_client: redis.Redis, redis_prefix: str
) -> None:
    with_ttl = opened.insert(make_entry("t", ttl=120))
    forever = opened.insert(make_entry("f"))
    assert 110_000 < redis_client.pttl(f"{redis_prefix}:e:{with_ttl}") <= 120_000
    assert redis_client.pttl(f"{redis_prefix}:e:{forever}") == -1
    for key in ("loc", "ids", "lru", "h:default", "ns", "version"):
        assert redis_client.pttl(f"{redis_prefix}:{key}") == -1
    # Replacing restarts the expiry; replacing without a ttl removes it.
    opened.insert(make_entry("t", ttl=600))
    assert redis_client.pttl(f"{redis_prefix}:e:{with_ttl}") > 120_000
    opened.insert(make_entry("t", ttl=None))
    assert redis_client.pttl(f"{redis_prefix}:e:{with_ttl}") == -1
    assert redis_client.zcard(f"{redis_prefix}:reap") == 0


def test_without_native_ttl_entries_wait_for_delete_expired(
    redis_url: str, redis_prefix: str, redis_client: redis.Redis
) -> None:
    store = RedisStore(url=redis_url, key_prefix=redis_prefix, use_native_ttl=False)
    store.open(EMBEDDER.fingerprint, EMBEDDER.dim)
    try:
        id_ = store.insert(make_entry("t", ttl=1))
        assert redis_client.pttl(f"{redis_prefix}:e:{id_}") == -1
        assert store.delete_expired(T0 + 1) == 1
        assert store.count() == 0
    finally:
        store.close()


def test_entries_redis_expired_are_unlinked_by_the_next_read(
    opened: RedisStore, redis_client: redis.Redis, redis_prefix: str
) -> None:
    gone = opened.insert(make_entry("gone", namespace="a", ttl=1))
    kept = opened.insert(make_entry("kept", namespace="b"))
    version = opened.read_version_counter()
    time.sleep(1.1)  # Redis drops the entry key one second after the write
    assert redis_client.exists(f"{redis_prefix}:e:{gone}") == 0
    assert opened.count() == 1
    assert opened.read_version_counter() > version  # healing is a deletion
    assert opened.list_namespaces() == ["b"]
    assert opened.iter_lru_ids(10) == [kept]
    assert [e.id for e in opened.iter_all()] == [kept]
    assert opened.get_by_hash("a", "gone") is None
    assert opened.integrity_check()
    assert redis_client.hget(f"{redis_prefix}:loc", str(gone)) is None
    assert redis_client.zcard(f"{redis_prefix}:reap") == 0


def test_delete_expired_counts_entries_redis_dropped(
    opened: RedisStore, redis_client: redis.Redis
) -> None:
    opened.insert(make_entry("a", namespace="x", ttl=1))
    opened.insert(make_entry("b", namespace="y", ttl=1))
    time.sleep(1.1)
    # Not expired by the caller's clock, but Redis has dropped them.
    assert opened.delete_expired(T0, namespace="x") == 1
    assert opened.count() == 0


def test_a_point_read_heals_an_entry_key_that_vanished(
    opened: RedisStore, redis_client: redis.Redis, redis_prefix: str
) -> None:
    # E.g. evicted under a maxmemory policy: the key is gone without a reap score due.
    id_ = opened.insert(make_entry("h", namespace="n", ttl=3600))
    other = opened.insert(make_entry("o", namespace="n"))
    redis_client.delete(f"{redis_prefix}:e:{id_}", f"{redis_prefix}:e:{other}")
    version = opened.read_version_counter()
    assert opened.get_by_hash("n", "h") is None
    assert opened.get_by_id(other) is None
    assert opened.read_version_counter() > version
    assert opened.count() == 0
    assert opened.list_namespaces() == []
    assert opened.integrity_check()
    # The hash is free again.
    assert opened.insert(make_entry("h", namespace="n")) > other


def test_integrity_check_notices_a_damaged_index(
    opened: RedisStore, redis_client: redis.Redis, redis_prefix: str
) -> None:
    opened.insert(make_entry("h"))
    assert opened.integrity_check()
    redis_client.delete(f"{redis_prefix}:lru")
    assert not opened.integrity_check()


# -- a dropped connection ---------------------------------------------------------------


class TcpProxy:
    """Forwards a local port to the Redis server; ``stop`` drops every connection."""

    def __init__(self, host: str, port: int) -> None:
        self._target = (host, port)
        self.port = 0
        self._stopping = threading.Event()
        self._sockets: list[socket.socket] = []
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen()
        listener.settimeout(0.05)
        self.port = listener.getsockname()[1]
        self._stopping.clear()
        self._sockets = [listener]
        self._spawn(self._accept, listener)

    def _spawn(self, target: object, *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)  # type: ignore[arg-type]
        self._threads.append(thread)
        thread.start()

    def _accept(self, listener: socket.socket) -> None:
        while not self._stopping.is_set():
            try:
                downstream, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            upstream = socket.create_connection(self._target)
            downstream.settimeout(None)
            self._sockets += [downstream, upstream]
            self._spawn(self._pump, downstream, upstream)
            self._spawn(self._pump, upstream, downstream)

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def stop(self) -> None:
        self._stopping.set()
        for s in self._sockets:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
        for thread in self._threads:
            thread.join(timeout=5)
        for s in self._sockets:
            s.close()
        self._threads.clear()


@pytest.fixture
def proxy(redis_url: str) -> Iterator[tuple[TcpProxy, str]]:
    parts = urlsplit(redis_url)
    assert parts.hostname is not None
    tcp = TcpProxy(parts.hostname, parts.port or 6379)
    tcp.start()
    credentials = parts.netloc.rpartition("@")[0]
    netloc = f"{credentials}@127.0.0.1:{tcp.port}" if credentials else f"127.0.0.1:{tcp.port}"
    yield tcp, urlunsplit(parts._replace(netloc=netloc))
    tcp.stop()


def test_a_dropped_connection_raises_and_the_next_call_recovers(
    proxy: tuple[TcpProxy, str], redis_prefix: str
) -> None:
    tcp, url = proxy
    store = RedisStore(url=url, key_prefix=redis_prefix)
    store.open(EMBEDDER.fingerprint, EMBEDDER.dim)
    try:
        id_ = store.insert(make_entry("h"))
        tcp.stop()
        with pytest.raises(StoreBackendError, match=r"RedisStore\.get_by_id") as info:
            store.get_by_id(id_)
        assert isinstance(info.value.__cause__, redis.ConnectionError)
        with pytest.raises(StoreBackendError, match=r"RedisStore\.insert"):
            store.insert(make_entry("other"))
        tcp.start()  # the server is reachable again, on the same port
        got = store.get_by_id(id_)
        assert got == replace(make_entry("h"), id=id_)
        assert store.insert(make_entry("other")) > id_
    finally:
        store.close()


def test_a_connection_the_server_closed_while_idle_is_replaced(
    redis_url: str, redis_prefix: str, redis_client: redis.Redis
) -> None:
    name = f"mneme-{uuid.uuid4().hex[:8]}"
    sep = "&" if "?" in redis_url else "?"
    store = RedisStore(url=f"{redis_url}{sep}client_name={name}", key_prefix=redis_prefix)
    store.open(EMBEDDER.fingerprint, EMBEDDER.dim)
    try:
        id_ = store.insert(make_entry("h"))
        for client in redis_client.client_list():
            if client.get("name") == name:
                redis_client.client_kill_filter(_id=client["id"])
        assert store.get_by_id(id_) is not None
    finally:
        store.close()


def test_a_prefix_written_by_mneme_1_0_is_refused_untouched(
    redis_client: redis.Redis, redis_url: str, redis_prefix: str
) -> None:
    # The keys mneme 1.0's RedisStore kept (its meta hash shares this layout's name).
    redis_client.set(f"{redis_prefix}:next_id", 2)
    redis_client.hset(f"{redis_prefix}:by_id", "1", "default")
    redis_client.hset(f"{redis_prefix}:meta", mapping={"embedder_fingerprint": "fp", "x": "1"})
    before = {k: redis_client.dump(k) for k in redis_client.scan_iter(f"{redis_prefix}:*")}
    store = RedisStore(url=redis_url, key_prefix=redis_prefix)
    with pytest.raises(SchemaMigrationError, match=r"mneme 1\.0's Redis layout"):
        store.open(EMBEDDER.fingerprint, EMBEDDER.dim)
    after = {k: redis_client.dump(k) for k in redis_client.scan_iter(f"{redis_prefix}:*")}
    assert after == before
    store.close()
