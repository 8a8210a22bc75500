"""PostgresStore and AsyncPostgresStore: entries in a Postgres schema, with Layer 2
inside the database through pgvector when asked. psycopg is imported when a store is
made, and its absence is an error that names the ``postgres`` extra."""

from __future__ import annotations

from mneme.stores.postgres.async_store import AsyncPostgresStore
from mneme.stores.postgres.graphs import VectorGraph
from mneme.stores.postgres.store import PostgresStore

__all__ = ["AsyncPostgresStore", "PostgresStore", "VectorGraph"]
