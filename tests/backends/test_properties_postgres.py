"""Property tests of the public API on PostgresStore, and what the properties found.

The random put / get / delete sequences of ``property_model`` run against a cache on a
Postgres schema (metadata limited to what Postgres stores exactly). Then explicit
examples of inputs the stores treat differently, run on MemoryStore, SQLiteStore and
PostgresStore alike: each must keep such metadata exactly or refuse it up front.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from hypothesis import given
from psycopg import sql

from mneme import MemoryStore, SemanticCache, SQLiteStore, Store
from mneme.stores.postgres.store import PostgresStore
from property_model import EMBEDDER, examples, operations, postgres_metadata, run_ops


@pytest.fixture(scope="module")
def module_pg_schema(postgres_dsn: str) -> Iterator[tuple[str, str]]:
    schema = f"mneme_prop_{uuid.uuid4().hex[:12]}"
    yield postgres_dsn, schema
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


@pytest.mark.backend("postgres")
@examples(60)
@given(ops=operations(postgres_metadata))
def test_properties_postgres(module_pg_schema: tuple[str, str], ops: list[tuple[Any, ...]]) -> None:
    dsn, schema = module_pg_schema
    run_ops(lambda: PostgresStore(dsn, schema=schema), ops)


# -- explicit examples of what the properties found --------------------------------------


STORE_KINDS = ["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.backend("postgres"))]


@pytest.fixture(params=STORE_KINDS)
def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], Store]:
    if request.param == "memory":
        return MemoryStore
    if request.param == "sqlite":
        return lambda: SQLiteStore(str(tmp_path / "c.db"))
    dsn: str = request.getfixturevalue("postgres_dsn")
    schema: str = request.getfixturevalue("pg_schema")
    return lambda: PostgresStore(dsn, schema=schema)


@pytest.mark.parametrize(
    "metadata",
    [
        {"text": "nul \x00 inside"},
        {"text": "lone \ud800"},
        {"key \udfff": 1},
        {"pair": "\ud83d\ude00"},
    ],
    ids=["nul", "surrogate-value", "surrogate-key", "surrogate-pair"],
)
def test_metadata_text_every_store_keeps_or_refuses_alike(
    any_store: Callable[[], Store], metadata: dict[str, Any]
) -> None:
    """Such metadata must be kept exactly or refused up front with ValueError, like
    the same characters in a query or response, on every store."""
    with SemanticCache(store=any_store(), embedder=EMBEDDER) as cache:
        try:
            cache.put("q", "r", metadata=metadata)
        except ValueError:
            assert cache.stats().entries == 0
            return
        hit = cache.get("q")
        assert hit is not None and hit.metadata == (metadata or {})


@pytest.mark.parametrize("number", [1e23, 1e16, 0.1, 2.5, -1e-7, 2**70, 12])
def test_metadata_numbers_round_trip_exactly(any_store: Callable[[], Store], number: float) -> None:
    """JSON metadata round-trips exactly: a number comes back as the same value and
    the same type (an int stays an int, a float a float), on every store."""
    with SemanticCache(store=any_store(), embedder=EMBEDDER) as cache:
        cache.put("q", "r", metadata={"n": number})
        hit = cache.get("q")
    assert hit is not None and hit.metadata is not None
    got = hit.metadata["n"]
    assert (got, type(got)) == (number, type(number))
