"""RedisStore: the cache in a Redis database, shared by every process that reaches it.

redis-py is imported lazily so that ``import mneme`` works without the extra.

Data layout (``P`` is ``key_prefix``; ids are decimal, sorted-set members are ids
zero-padded to 20 digits so that equal scores sort by id):

* ``P:e:<id>`` hash, one entry: ``ns``, ``qh``, ``q`` (query), ``r`` (response), ``v``
  (embedding bytes), ``m`` (metadata JSON, ``null`` for none), ``c`` (created_at), ``a``
  (last_accessed_at), ``n`` (access_count), ``t`` (ttl; absent = never expires).
* ``P:h:<ns>`` hash, query_hash -> id, one per namespace.
* ``P:loc`` hash, id -> ``[namespace, query_hash]`` (JSON). It never expires, so an
  entry that Redis dropped on its own can still be unlinked from every index.
* ``P:ids`` zset, every id scored by id (iteration in id order).
* ``P:lru`` / ``P:lru:<ns>`` zsets, ids scored by last_accessed_at.
* ``P:created`` zset, ids scored by created_at.
* ``P:exp`` / ``P:exp:<ns>`` zsets, ids of entries with a ttl scored by created_at + ttl.
* ``P:reap`` zset, ids whose entry key has a Redis expiry, scored by it (server ms).
* ``P:ns`` hash, namespace -> number of entries (absent when 0); ``P:q`` hash, quotas.
* ``P:c:<ns>`` hash, counters of a namespace; ``P:cns`` set, namespaces with counters.
* ``P:meta`` hash, meta values (embedder fingerprint and dim, schema version).
* ``P:version`` counter bumped by every insert and delete; ``P:seq`` last id handed out.

Every insert, delete and access update is one Lua script, so it is atomic (with its
version bump) and costs one round trip. The scripts touch keys they compute from the
prefix, which standalone Redis (and a primary with replicas) allows and Redis Cluster
does not.

Native TTL (``use_native_ttl=True``): an entry with a ttl also gets a Redis expiry on
its ``P:e:<id>`` key, ``ttl`` seconds after the write by the server's clock, so Redis
frees the bulk of an expired entry (response, embedding) without a vacuum. That is
never earlier than the cache itself would call the entry expired when the cache's clock
is the wall clock. The small index members of such an entry stay until the store heals
them: every read that counts or lists entries first unlinks the ids in ``P:reap`` whose
key Redis has dropped, a point read that meets a missing entry key unlinks that id, and
``delete_expired`` counts the entries Redis dropped among those it removes. Healing is
a deletion, so it bumps the version counter.
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
from collections.abc import Iterator, Mapping, Sequence
from importlib import resources
from types import ModuleType
from typing import Any

from mneme._errors import CacheClosedError, CheckpointError, SchemaMigrationError, StoreBackendError
from mneme._types import StoredEntry
from mneme.stores.common import check_embedder
from mneme.stores.protocol import COUNTER_NAMES

__all__ = ["RedisStore"]

_EXTRA_HINT = (
    "RedisStore requires the optional 'redis' extra (redis-py >= 5); "
    "install it with: pip install 'mneme-semantic-cache[redis]'"
)
_PAGE = 500
_URL_PASSWORD = re.compile(r"(://[^:/@?#]*:)[^@]*@")


def _require_redis() -> ModuleType:
    """Import redis-py or explain which extra is missing."""
    try:
        import redis
    except ImportError as exc:
        raise StoreBackendError(_EXTRA_HINT) from exc
    return redis


def _mask_url(url: str) -> str:
    return _URL_PASSWORD.sub(r"\1***@", url)


# -- Lua: one file per script in lua/, each run after lua/prelude.lua ----------------

_SCRIPT_NAMES = (
    "insert",
    "delete",
    "delete_expired",
    "clear_namespace",
    "reap",
    "heal",
    "update_access",
    "get_by_hash",
    "integrity",
)


def _lua(name: str) -> str:
    """A script from the ``lua/`` folder next to this module."""
    return resources.files("mneme.stores.redis").joinpath("lua", f"{name}.lua").read_text("utf-8")


# -- encoding -----------------------------------------------------------------------------


def _entry_args(entry: StoredEntry) -> list[bytes | str | int]:
    ttl = entry.ttl
    return [
        entry.namespace,
        entry.query_hash,
        entry.query,
        entry.response,
        entry.embedding,
        json.dumps(entry.metadata, ensure_ascii=False),
        entry.created_at,
        entry.last_accessed_at,
        entry.access_count,
        "" if ttl is None else ttl,
        "" if ttl is None else entry.created_at + ttl,
        json.dumps([entry.namespace, entry.query_hash], ensure_ascii=False),
    ]


def _pairs(flat: Sequence[Any]) -> dict[bytes, bytes]:
    it = iter(flat)
    return dict(zip(it, it, strict=True))


def _decode_entry(id_: int, fields: Mapping[bytes, bytes]) -> StoredEntry:
    ttl = fields.get(b"t")
    return StoredEntry(
        id=id_,
        namespace=fields[b"ns"].decode(),
        query_hash=fields[b"qh"].decode(),
        query=fields[b"q"].decode(),
        response=fields[b"r"].decode(),
        embedding=bytes(fields[b"v"]),
        metadata=json.loads(fields[b"m"]),
        created_at=int(fields[b"c"]),
        last_accessed_at=int(fields[b"a"]),
        ttl=None if ttl is None else int(ttl),
        access_count=int(fields[b"n"]),
    )


class RedisStore:
    """Entries in Redis under one key prefix, shared by every process that reaches it.

    Give exactly one of ``url`` (the store creates, owns and closes its client) or
    ``client`` (a ``redis.Redis`` you made, with ``decode_responses=False``; never
    closed by the store). The constructor does no I/O; ``open`` connects. See the module
    docstring for the key layout and what ``use_native_ttl`` does.
    """

    backend_label = "redis"
    schema_version = 1

    def __init__(
        self,
        *,
        url: str | None = None,
        client: Any = None,
        key_prefix: str = "mneme",
        use_native_ttl: bool = True,
    ) -> None:
        if (url is None) == (client is None):
            raise ValueError("RedisStore needs exactly one of url or client")
        if not isinstance(key_prefix, str) or not key_prefix:
            raise ValueError("key_prefix must be a non-empty string")
        self._redis = _require_redis()
        if client is not None:
            kwargs = client.get_connection_kwargs() if hasattr(client, "connection_pool") else {}
            if kwargs.get("decode_responses"):
                raise ValueError(
                    "RedisStore needs a client with decode_responses=False "
                    "(embeddings are raw bytes)"
                )
        self._url = url
        self._given_client = client
        self._prefix = key_prefix
        self._native_ttl = use_native_ttl
        self._lock = threading.Lock()
        self._client: Any = None
        self._scripts: dict[str, Any] = {}
        self._closed = False  # once closed, a store stays closed

    def __repr__(self) -> str:
        where = _mask_url(self._url) if self._url is not None else "client"
        return f"RedisStore({where}, key_prefix={self._prefix!r})"

    # -- plumbing -----------------------------------------------------------------------

    def _key(self, *parts: str) -> str:
        return ":".join((self._prefix, *parts))

    def _conn(self) -> Any:
        client = self._client
        if client is None:
            raise CacheClosedError(f"{self!r} is {'closed' if self._closed else 'not open'}")
        return client

    @contextlib.contextmanager
    def _errors(self, operation: str) -> Iterator[None]:
        try:
            yield
        except self._redis.RedisError as exc:
            raise StoreBackendError(
                f"RedisStore.{operation} on {self!r} failed: {exc}; "
                "check that the Redis server is reachable"
            ) from exc

    def _run(self, operation: str, script: str, *args: bytes | str | int) -> Any:
        client = self._conn()
        with self._errors(operation):
            return self._scripts[script](args=[self._prefix, *args], client=client)

    def _heal(self, ids: Sequence[int]) -> None:
        if ids:
            self._run("heal", "heal", *ids)

    def _reap(self, operation: str) -> None:
        """Unlink entries Redis expired on its own before counting or listing."""
        self._run(operation, "reap")

    # -- lifecycle ----------------------------------------------------------------------

    def open(self, embedder_fingerprint: str, embedder_dim: int) -> None:
        with self._lock:
            if self._closed:
                raise CacheClosedError(f"{self!r} is closed; make a new store to open")
            if self._client is not None:
                return
            redis = self._redis
            if self._url is not None:
                with self._errors("open"):
                    from redis.backoff import NoBackoff
                    from redis.retry import Retry

                    client = redis.Redis.from_url(
                        self._url,
                        socket_connect_timeout=5.0,
                        # No resending: a script whose reply was lost may have run, and
                        # running a delete twice would misreport what it deleted. The
                        # pool still replaces a connection found dead before use.
                        retry=Retry(NoBackoff(), 0),
                    )
            else:
                client = self._given_client
            try:
                self._provision(client, embedder_fingerprint, embedder_dim)
            except BaseException:
                if self._url is not None:
                    client.close()
                raise
            self._client = client

    def _provision(self, client: Any, fingerprint: str, dim: int) -> None:
        meta = self._key("meta")
        with self._errors("open"):
            # mneme 1.0 kept its entries under other keys (next_id, by_id, entry:<id>)
            # but shared some names with this layout: refuse before writing anything.
            written_by_1_0 = client.exists(self._key("next_id"), self._key("by_id"))
        if written_by_1_0:
            raise SchemaMigrationError(
                f"{self!r} holds mneme 1.0's Redis layout, which this store does not read; "
                "use another key_prefix, and move the entries as "
                "docs/migrating-from-1.0.md describes"
            )
        with self._errors("open"):
            scripts = {
                name: client.register_script(_lua("prelude") + _lua(name)) for name in _SCRIPT_NAMES
            }
            with client.pipeline(transaction=True) as pipe:
                pipe.hsetnx(meta, "embedder_fingerprint", fingerprint)
                pipe.hsetnx(meta, "embedder_dim", str(dim))
                pipe.hsetnx(meta, "schema_version", str(self.schema_version))
                pipe.hmget(meta, ["embedder_fingerprint", "embedder_dim", "schema_version"])
                stored_fp, stored_dim, stored_schema = pipe.execute()[-1]
        if int(stored_schema) > self.schema_version:
            raise SchemaMigrationError(
                f"{self!r} holds schema version {int(stored_schema)}, this mneme writes "
                f"{self.schema_version}; upgrade mneme to open it"
            )
        check_embedder(
            stored_fp.decode(), int(stored_dim), fingerprint, dim, f"the Redis cache {self!r}"
        )
        self._scripts = scripts

    def close(self) -> None:
        with self._lock:
            self._closed = True
            client, self._client = self._client, None
            if client is not None and self._url is not None:
                with contextlib.suppress(self._redis.RedisError):
                    client.close()

    # -- reads --------------------------------------------------------------------------

    def get_by_hash(self, namespace: str, query_hash: str) -> StoredEntry | None:
        found = self._run("get_by_hash", "get_by_hash", namespace, query_hash)
        if found is None:
            return None
        id_, flat = int(found[0]), found[1]
        if not flat:  # Redis expired the entry key: unlink the id
            self._heal([id_])
            return None
        return _decode_entry(id_, _pairs(flat))

    def get_by_id(self, id: int) -> StoredEntry | None:
        client = self._conn()
        if id <= 0:
            return None
        with self._errors("get_by_id"):
            fields = client.hgetall(self._key("e", str(id)))
        if not fields:
            self._heal([id])
            return None
        return _decode_entry(id, fields)

    def get_many_by_hash(
        self, namespace: str, query_hashes: Sequence[str]
    ) -> dict[str, StoredEntry]:
        client = self._conn()
        hashes = list(dict.fromkeys(query_hashes))
        found: dict[str, StoredEntry] = {}
        missing: list[int] = []
        for start in range(0, len(hashes), _PAGE):
            chunk = hashes[start : start + _PAGE]
            with self._errors("get_many_by_hash"):
                raw_ids = client.hmget(self._key("h", namespace), chunk)
                pairs = [(h, int(i)) for h, i in zip(chunk, raw_ids, strict=True) if i]
                with client.pipeline(transaction=False) as pipe:
                    for _, id_ in pairs:
                        pipe.hgetall(self._key("e", str(id_)))
                    rows = pipe.execute()
            for (h, id_), fields in zip(pairs, rows, strict=True):
                if fields:
                    found[h] = _decode_entry(id_, fields)
                else:
                    missing.append(id_)
        self._heal(missing)
        return found

    def count(self, namespace: str | None = None) -> int:
        client = self._conn()
        self._reap("count")
        with self._errors("count"):
            if namespace is None:
                return int(client.zcard(self._key("ids")))
            return int(client.hget(self._key("ns"), namespace) or 0)

    def list_namespaces(self) -> list[str]:
        client = self._conn()
        self._reap("list_namespaces")
        with self._errors("list_namespaces"):
            names = client.hkeys(self._key("ns"))
        return sorted(n.decode() for n in names)

    def iter_lru_ids(self, n: int, namespace: str | None = None) -> list[int]:
        client = self._conn()
        if n <= 0:
            return []
        self._reap("iter_lru_ids")
        key = self._key("lru") if namespace is None else self._key("lru", namespace)
        with self._errors("iter_lru_ids"):
            members = client.zrange(key, 0, n - 1)
        return [int(m) for m in members]

    def iter_all(self) -> Iterator[StoredEntry]:
        return self.iter_since(0)

    def iter_since(self, last_id: int) -> Iterator[StoredEntry]:
        self._conn()
        self._reap("iter_since")
        return self._iter_entries(last_id)

    def iter_vectors(self, after_id: int = 0) -> Iterator[tuple[int, str, bytes]]:
        self._conn()
        self._reap("iter_vectors")
        return self._iter_vectors(after_id)

    def _id_pages(self, operation: str, after_id: int) -> Iterator[tuple[Any, list[int]]]:
        """(client, ids) a page at a time, ids > after_id ascending."""
        while True:
            client = self._conn()
            with self._errors(operation):
                members = client.zrangebyscore(
                    self._key("ids"), f"({after_id}", "+inf", start=0, num=_PAGE
                )
            ids = [int(m) for m in members]
            if ids:
                yield client, ids
            if len(ids) < _PAGE:
                return
            after_id = ids[-1]

    def _iter_entries(self, after_id: int) -> Iterator[StoredEntry]:
        for client, ids in self._id_pages("iter_since", after_id):
            with self._errors("iter_since"), client.pipeline(transaction=False) as pipe:
                for id_ in ids:
                    pipe.hgetall(self._key("e", str(id_)))
                rows = pipe.execute()
            self._heal([i for i, row in zip(ids, rows, strict=True) if not row])
            yield from (_decode_entry(i, row) for i, row in zip(ids, rows, strict=True) if row)

    def _iter_vectors(self, after_id: int) -> Iterator[tuple[int, str, bytes]]:
        for client, ids in self._id_pages("iter_vectors", after_id):
            with self._errors("iter_vectors"), client.pipeline(transaction=False) as pipe:
                for id_ in ids:
                    pipe.hmget(self._key("e", str(id_)), ["ns", "v"])
                rows = pipe.execute()
            self._heal([i for i, (ns, _) in zip(ids, rows, strict=True) if ns is None])
            for id_, (ns, vector) in zip(ids, rows, strict=True):
                if ns is not None:
                    yield id_, ns.decode(), bytes(vector)

    def oldest_created_at(self) -> int | None:
        client = self._conn()
        self._reap("oldest_created_at")
        with self._errors("oldest_created_at"):
            first = client.zrange(self._key("created"), 0, 0, withscores=True)
        return int(first[0][1]) if first else None

    def read_version_counter(self) -> int:
        client = self._conn()
        with self._errors("read_version_counter"):
            return int(client.get(self._key("version")) or 0)

    # -- writes -------------------------------------------------------------------------

    def insert(self, entry: StoredEntry) -> int:
        return self.insert_many([entry])[0]

    def insert_many(self, entries: Sequence[StoredEntry]) -> list[int]:
        self._conn()
        if not entries:
            return []
        args: list[bytes | str | int] = ["1" if self._native_ttl else "0"]
        for entry in entries:
            args.extend(_entry_args(entry))
        ids = self._run("insert", "insert", *args)
        return [int(i) for i in ids]

    def update_access(self, id: int, now: int) -> None:
        self._run("update_access", "update_access", id, now)

    def delete_by_id(self, id: int) -> bool:
        return bool(self.delete_many([id]))

    def delete_many(self, ids: Sequence[int]) -> dict[str, int]:
        self._conn()
        if not ids:
            return {}
        flat = self._run("delete_many", "delete", *ids)
        return {ns.decode(): int(n) for ns, n in _pairs(flat).items()}

    def delete_expired(self, now: int, namespace: str | None = None) -> int:
        scoped = "0" if namespace is None else "1"
        return int(self._run("delete_expired", "delete_expired", now, scoped, namespace or ""))

    def clear_namespace(self, namespace: str) -> int:
        return int(self._run("clear_namespace", "clear_namespace", namespace))

    # -- quotas, meta, counters ---------------------------------------------------------

    def set_namespace_quota(self, namespace: str, max_entries: int | None) -> None:
        client = self._conn()
        with self._errors("set_namespace_quota"):
            if max_entries is None:
                client.hdel(self._key("q"), namespace)
            else:
                client.hset(self._key("q"), namespace, max_entries)

    def get_namespace_quota(self, namespace: str) -> int | None:
        client = self._conn()
        with self._errors("get_namespace_quota"):
            value = client.hget(self._key("q"), namespace)
        return None if value is None else int(value)

    def read_meta(self, key: str) -> str | None:
        client = self._conn()
        with self._errors("read_meta"):
            value = client.hget(self._key("meta"), key)
        return None if value is None else bytes(value).decode()

    def write_meta(self, key: str, value: str) -> None:
        client = self._conn()
        with self._errors("write_meta"):
            client.hset(self._key("meta"), key, value)

    def add_counters(self, namespace: str, deltas: Mapping[str, int]) -> None:
        self.add_counters_many({namespace: deltas})

    def add_counters_many(self, deltas: Mapping[str, Mapping[str, int]]) -> None:
        """Every namespace's increments in one MULTI/EXEC (one round trip)."""
        client = self._conn()
        if not deltas:
            return
        with self._errors("add_counters"), client.pipeline(transaction=True) as pipe:
            pipe.sadd(self._key("cns"), *deltas)
            for namespace, named in deltas.items():
                for name, delta in named.items():
                    pipe.hincrby(self._key("c", namespace), name, delta)
            pipe.execute()

    def read_counters(self, namespace: str | None = None) -> dict[str, int]:
        client = self._conn()
        with self._errors("read_counters"):
            if namespace is None:
                names = [n.decode() for n in client.smembers(self._key("cns"))]
            else:
                names = [namespace]
            with client.pipeline(transaction=False) as pipe:
                for ns in names:
                    pipe.hgetall(self._key("c", ns))
                rows = pipe.execute()
        total = dict.fromkeys(COUNTER_NAMES, 0)
        for row in rows:
            for name, value in row.items():
                total[name.decode()] = total.get(name.decode(), 0) + int(value)
        return total

    def integrity_check(self) -> bool:
        return bool(self._run("integrity_check", "integrity"))

    # -- snapshots ----------------------------------------------------------------------

    def snapshot_to(self, dest_path: str) -> None:
        if self._closed:
            raise CacheClosedError(f"{self!r} is closed")
        raise CheckpointError(
            "RedisStore has no file snapshot of its own; back Redis up with its own tools "
            "(BGSAVE and copy the RDB file, or `redis-cli --rdb <file>`), "
            "or use SemanticCache.dumps"
        )

    @classmethod
    def restore_from(cls, source_path: str, dest_path: str) -> None:
        raise CheckpointError(
            "RedisStore cannot restore a file; load an RDB file into Redis with its own "
            "tools (place it as dump.rdb and restart, see `redis-cli --rdb`), "
            "or use SemanticCache.loads"
        )
