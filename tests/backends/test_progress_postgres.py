"""The pgvector upgrade reports its progress to ``PostgresStore(progress=...)``, and a
stopped backfill, resumed, counts from the rows already copied."""

from __future__ import annotations

import psycopg
import pytest
from psycopg import sql

from cli_helpers import EMBEDDER, fill_postgres
from mneme import Progress
from mneme.stores.postgres.store import PostgresStore

pytestmark = pytest.mark.backend("pgvector")


def _upgrade(dsn: str, schema: str) -> list[Progress]:
    events: list[Progress] = []
    store = PostgresStore(dsn, schema=schema, use_pgvector=True, progress=events.append)
    store.open(EMBEDDER.fingerprint, EMBEDDER.dim)
    store.close()
    return events


def test_upgrade_reports_backfill_index_and_catch_up(postgres_dsn: str, pg_schema: str) -> None:
    fill_postgres(postgres_dsn, pg_schema, n=7000)  # 7,001 entries: two backfill batches
    events = _upgrade(postgres_dsn, pg_schema)
    backfill = [(e.done, e.total) for e in events if e.task == "backfill"]
    assert backfill == [(0, 7001), (5000, 7001), (7001, 7001)]
    # The graphs: the one namespace above the exact-scan threshold holds 7,000 rows.
    index = [(e.done, e.total) for e in events if e.task == "index"]
    assert index == [(0, 7000), (7000, 7000)]
    assert [(e.done, e.total) for e in events if e.task == "catch-up"] == [(0, None), (0, 0)]
    assert [e.task for e in events].index("index") > [e.task for e in events].index("backfill")
    assert _upgrade(postgres_dsn, pg_schema) == []  # done: nothing to report


def test_a_resumed_backfill_counts_what_was_copied(postgres_dsn: str, pg_schema: str) -> None:
    fill_postgres(postgres_dsn, pg_schema, n=7000)
    _upgrade(postgres_dsn, pg_schema)
    # As if the upgrade had stopped after its first batch: side rows gone past 5,000,
    # and the upgrade not recorded as done.
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        s = sql.Identifier(pg_schema)
        conn.execute(sql.SQL("DELETE FROM {}.schema_meta WHERE key = 'vector_layout'").format(s))
        conn.execute(
            sql.SQL(
                "DELETE FROM {}.entry_vectors WHERE id > "
                "(SELECT id FROM {}.entries ORDER BY id OFFSET 4999 LIMIT 1)"
            ).format(s, s)
        )
    events = _upgrade(postgres_dsn, pg_schema)
    backfill = [(e.done, e.total) for e in events if e.task == "backfill"]
    assert backfill == [(5000, 7001), (7001, 7001)]
    with psycopg.connect(postgres_dsn) as conn:
        side = conn.execute(
            sql.SQL("SELECT count(*) FROM {}.entry_vectors").format(sql.Identifier(pg_schema))
        ).fetchone()
    assert side == (7001,)
