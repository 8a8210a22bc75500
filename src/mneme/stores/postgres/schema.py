"""Provisioning and migrating a PostgresStore schema from the packaged ``.sql`` files.

Migrations are ``sql/postgres/NNNN_name.sql`` inside the package, applied in order in
one transaction under an advisory lock, each recorded as ``schema_version``. Opening a
schema that is already at the current version runs no DDL at all, so a role with only
data privileges can use a schema an administrator provisioned.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib import resources

from mneme._errors import SchemaMigrationError, StoreBackendError
from mneme.stores.postgres.requests import Atomic, Execute, PgOp

__all__ = ["Migration", "current_version", "keep_rows_inline", "load_migrations", "provision"]

_MIGRATION_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    text: str


def load_migrations() -> list[Migration]:
    """The packaged migrations, ordered by number."""
    folder = resources.files("mneme.stores.postgres").joinpath("sql")
    found = []
    for item in folder.iterdir():
        match = _MIGRATION_NAME.match(item.name)
        if match:
            found.append(Migration(int(match.group(1)), item.name, item.read_text("utf-8")))
    found.sort(key=lambda m: m.version)
    if [m.version for m in found] != list(range(1, len(found) + 1)):
        raise SchemaMigrationError(f"packaged migrations are not numbered 1..n: {found}")
    return found


def _lock_key(schema: str) -> int:
    """A stable signed 64-bit advisory lock key per schema."""
    digest = hashlib.blake2b(f"mneme:{schema}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def _table_exists(schema: str, table: str) -> PgOp[bool]:
    # pg_catalog is readable by every role, unlike to_regclass on a schema without USAGE.
    row = yield Execute(
        "SELECT 1 FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n "
        "ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relname = %s",
        [schema, table],
        "one",
    )
    return row is not None


def _is_table(schema: str, name: str) -> PgOp[bool]:
    row = yield Execute(
        "SELECT c.relkind = 'r' FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n "
        "ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relname = %s",
        [schema, name],
        "one",
    )
    return bool(row and row[0])


def current_version(schema: str) -> PgOp[int | None]:
    """The schema's recorded version, or None when it is not provisioned."""
    from psycopg import sql

    if not (yield from _table_exists(schema, "multi_process_state")):
        return None
    row = yield Execute(
        sql.SQL("SELECT value FROM {}.multi_process_state WHERE key = 'schema_version'").format(
            sql.Identifier(schema)
        ),
        fetch="one",
    )
    return int(row[0]) if row else 0


def _refuse_newer(version: int | None, latest: int, schema: str) -> None:
    if version is not None and version > latest:
        raise SchemaMigrationError(
            f"schema {schema!r} is at version {version}, newer than this mneme "
            f"understands ({latest}); upgrade mneme to use it"
        )


def provision(schema: str, migrations: list[Migration]) -> PgOp[int]:
    """Bring ``schema`` to the latest migration; return the version it is at.

    Raises ``SchemaMigrationError`` for a newer schema and ``StoreBackendError`` naming
    the step when DDL fails.
    """
    import psycopg

    latest = migrations[-1].version
    version = yield from current_version(schema)
    _refuse_newer(version, latest, schema)
    if version == latest:
        return latest
    step = ["taking the provisioning lock"]
    try:
        yield Atomic(_migrate(schema, migrations, latest, step))
    except psycopg.errors.InsufficientPrivilege as exc:
        raise StoreBackendError(
            f"provisioning PostgreSQL schema {schema!r} failed at step {step[0]}: "
            f"{str(exc).strip()}. The role needs CREATE on the database (or on an existing "
            f"schema {schema!r}) the first time a store opens it; or have an administrator "
            "provision the schema once, after which data privileges are enough"
        ) from exc
    except psycopg.Error as exc:
        raise StoreBackendError(
            f"provisioning PostgreSQL schema {schema!r} failed at step {step[0]}: "
            f"{str(exc).strip()}"
        ) from exc
    return latest


ROWS_INLINE = "toast_tuple_target=8160"
"""The storage parameter that keeps an entry in line up to a page, as pg_class lists it."""
ROWS_INLINE_SET = "toast_tuple_target = 8160"
"""The same, as ALTER TABLE ... SET (...) takes it."""
ROWS_INLINE_SQL = (
    "SELECT c.relname, %s = ANY(coalesce(c.reloptions, '{}')), pg_has_role(c.relowner, 'USAGE') "
    "FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
    "WHERE n.nspname = %s AND c.relname = ANY(%s)"
)
"""Per table of a list that exists: its name, whether it has ROWS_INLINE, and whether
the current role may set it; params ``[ROWS_INLINE, schema, [table, ...]]``."""

INLINE_TABLES = ("entries", "entry_vectors")
"""The tables whose rows are kept in line up to a page (the side table may not exist)."""


def keep_rows_inline(schema: str) -> PgOp[None]:
    """Let rows of up to a page stay in line, in entries and the pgvector side table.

    With the default target (2 kB) a typical entry (a 384-dim embedding and a response
    of some hundred bytes) went through TOAST: a compression attempt on the embedding,
    then a row and an index entry in a second table. That was half the cost of a bulk
    insert, and every read of the embedding paid a second lookup. The side table keeps
    its vector in line anyway (STORAGE MAIN), but above the default target every row
    written paid a compression attempt on it that could not succeed (float data):
    at dim 1536, about 4% of the server's time in a bulk load. A storage parameter,
    not a migration: earlier versions of mneme use the tables unchanged. Set by the
    table's owner at open (ShareUpdateExclusiveLock, a catalog change only; rows
    already written stay as they are); other roles leave it to the owner.
    """
    from psycopg import sql

    rows = yield Execute(ROWS_INLINE_SQL, [ROWS_INLINE, schema, list(INLINE_TABLES)], "all")
    for table, inline, may_set in rows:
        if inline or not may_set:
            continue
        target = sql.SQL("ALTER TABLE {}.{} SET (" + ROWS_INLINE_SET + ")")
        yield Execute(target.format(sql.Identifier(schema), sql.Identifier(str(table))))


def _migrate(schema: str, migrations: list[Migration], latest: int, step: list[str]) -> PgOp[None]:
    """The migration transaction; ``step[0]`` names what it is doing, for errors."""
    from psycopg import sql

    yield Execute("SELECT pg_advisory_xact_lock(%s)", [_lock_key(schema)])
    # Another process may have provisioned while we waited for the lock.
    version = yield from current_version(schema)
    _refuse_newer(version, latest, schema)
    if version is None:
        step[0] = f"CREATE SCHEMA {schema}"
        exists = yield Execute(
            "SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = %s", [schema], "one"
        )
        if exists is None:
            yield Execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    for migration in migrations:
        if migration.version <= (version or 0):
            continue
        step[0] = f"migration {migration.name}"
        yield Execute(sql.SQL(migration.text).format(schema=sql.Identifier(schema)))
        stamp = sql.SQL(
            "INSERT INTO {}.{} (key, value) VALUES ('schema_version', %s) "
            "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value"
        )
        # From version 2 multi_process_state is a view that shows schema_meta's value.
        tables = ["schema_meta"]
        if (yield from _is_table(schema, "multi_process_state")):
            tables.append("multi_process_state")
        for table in tables:
            yield Execute(
                stamp.format(sql.Identifier(schema), sql.Identifier(table)),
                [str(migration.version)],
            )
