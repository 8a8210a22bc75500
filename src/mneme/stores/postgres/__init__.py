"""PostgresStore and AsyncPostgresStore: entries in a Postgres schema, with Layer 2
inside the database through pgvector when asked, and reads spread over replicas when
given. psycopg is imported when a store is made, and its absence is an error that
names the ``postgres`` extra. ``check_replicas`` looks at replicas once, for a
command-line check."""

from __future__ import annotations

from mneme._types import ReplicaStatus
from mneme.stores.postgres.async_store import AsyncPostgresStore
from mneme.stores.postgres.graphs import VectorGraph
from mneme.stores.postgres.replication import check_replicas
from mneme.stores.postgres.store import PostgresStore

__all__ = ["AsyncPostgresStore", "PostgresStore", "ReplicaStatus", "VectorGraph", "check_replicas"]
