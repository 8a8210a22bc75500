"""What a command works on: a SQLite file or a Postgres schema, named the same way by
every command (a path, or a DSN plus ``--schema``), and what its meta says.

Nothing here needs an embedder. The embedder a cache was written with is recorded in
its ``schema_meta`` (fingerprint and dim); commands read that first and open the store
with it, so a store's own embedder check passes without the model being loaded.
"""

from __future__ import annotations

import os
import sqlite3
from contextlib import closing
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mneme._errors import MnemeError

if TYPE_CHECKING:
    import psycopg

    from mneme.stores.postgres.store import PostgresStore
    from mneme.stores.sqlite import SQLiteStore

__all__ = ["Meta", "Target", "TargetError", "parse_target"]

_URL_SCHEMES = ("postgresql://", "postgres://")
_KV_KEYS = ("host=", "hostaddr=", "dbname=", "user=", "port=", "service=")


class TargetError(MnemeError):
    """The target named on the command line cannot be used: exit code 2."""


@dataclass(frozen=True, slots=True)
class Meta:
    """What a cache's ``schema_meta`` says: every key, and the embedder it names."""

    values: dict[str, str] = field(default_factory=dict)

    @property
    def fingerprint(self) -> str | None:
        return self.values.get("embedder_fingerprint")

    @property
    def dim(self) -> int | None:
        raw = self.values.get("embedder_dim")
        return int(raw) if raw is not None and raw.isdigit() else None

    @property
    def schema_version(self) -> str | None:
        return self.values.get("schema_version")

    @property
    def vector_index(self) -> str | None:
        return self.values.get("vector_index")


@dataclass(frozen=True, slots=True)
class Target:
    """A SQLite path (``dsn`` None) or a Postgres DSN with its schema."""

    path: str | None
    dsn: str | None
    schema: str

    @property
    def is_postgres(self) -> bool:
        return self.dsn is not None

    @property
    def label(self) -> str:
        """How the target is shown: never with its password."""
        if self.dsn is None:
            return f"SQLite {self.path}"
        from mneme.stores.postgres.dsn import mask_dsn

        return f"PostgreSQL {mask_dsn(self.dsn, _password(self.dsn))} schema {self.schema}"

    def mask(self, text: str) -> str:
        """``text`` without this target's password."""
        if self.dsn is None:
            return text
        from mneme.stores.postgres.dsn import mask_dsn

        return mask_dsn(text, _password(self.dsn))

    # -- Postgres -------------------------------------------------------------------

    def connect(self) -> psycopg.Connection[Any]:
        """An autocommit connection, or ``TargetError`` saying why not (masked)."""
        assert self.dsn is not None
        pg = _psycopg()
        from mneme.stores.postgres.dsn import connect_args, connect_error

        dsn, kwargs = connect_args(self.dsn, 10.0)
        try:
            conn: psycopg.Connection[Any] = pg.connect(dsn, **kwargs)
        except pg.Error as exc:
            raise TargetError(str(connect_error(self.dsn, exc))) from None
        return conn

    def postgres_store(self, **options: Any) -> PostgresStore:
        from mneme.stores.postgres.store import PostgresStore

        assert self.dsn is not None
        return PostgresStore(self.dsn, schema=self.schema, **options)

    # -- SQLite ---------------------------------------------------------------------

    def sqlite_store(self) -> SQLiteStore:
        from mneme.stores.sqlite import SQLiteStore

        assert self.path is not None
        return SQLiteStore(self.path)

    # -- meta -------------------------------------------------------------------------

    def read_meta(self, *, must_exist: bool = True) -> Meta | None:
        """The cache's meta; None (or ``TargetError`` when ``must_exist``) when the
        target holds no mneme cache yet."""
        meta = self._read_pg_meta() if self.dsn is not None else self._read_sqlite_meta()
        if meta is None and must_exist:
            raise TargetError(f"{self.label} holds no mneme cache; check the path or --schema")
        if meta is not None and (meta.fingerprint is None or meta.dim is None):
            if must_exist:
                raise TargetError(
                    f"{self.label} is a mneme cache that no embedder has opened yet "
                    "(no embedder_fingerprint/embedder_dim in schema_meta)"
                )
            return None
        return meta

    def _read_sqlite_meta(self) -> Meta | None:
        assert self.path is not None
        if not os.path.exists(self.path):
            return None
        if os.path.isdir(self.path):
            raise TargetError(f"{self.path} is a directory, not a SQLite cache file")
        try:
            uri = f"file:{self.path}?mode=ro"
            with closing(sqlite3.connect(uri, uri=True)) as conn:
                tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
                if "schema_meta" not in tables:
                    if tables:
                        raise TargetError(f"{self.path} is a SQLite database but no mneme cache")
                    return None
                rows = conn.execute("SELECT key, value FROM schema_meta").fetchall()
        except sqlite3.DatabaseError as exc:
            raise TargetError(f"{self.path} is not a readable SQLite cache: {exc}") from None
        return Meta({str(k): str(v) for k, v in rows})

    def _read_pg_meta(self) -> Meta | None:
        psycopg = _psycopg()
        from psycopg import sql

        with self.connect() as conn:
            found = conn.execute(
                "SELECT 1 FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n "
                "ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relname = 'schema_meta'",
                [self.schema],
            ).fetchone()
            if found is None:
                return None
            try:
                rows = conn.execute(
                    sql.SQL("SELECT key, value FROM {}.schema_meta").format(
                        sql.Identifier(self.schema)
                    )
                ).fetchall()
            except psycopg.Error as exc:
                raise TargetError(
                    self.mask(f"cannot read {self.label}: {str(exc).strip()}")
                ) from None
        return Meta({str(k): str(v) for k, v in rows})


def _psycopg() -> Any:
    try:
        import psycopg
    except ImportError:
        raise TargetError(
            "a Postgres target needs the 'postgres' extra: "
            "pip install 'mneme-semantic-cache[postgres]'"
        ) from None
    return psycopg


def _password(dsn: str) -> str | None:
    try:
        from psycopg.conninfo import conninfo_to_dict

        value = conninfo_to_dict(dsn).get("password")
    except Exception:
        return None
    return str(value) if value else None


def looks_like_dsn(text: str) -> bool:
    lowered = text.strip().lower()
    return lowered.startswith(_URL_SCHEMES) or any(k in lowered for k in _KV_KEYS)


def parse_target(text: str, schema: str) -> Target:
    """A ``Target`` from the command line, or ``TargetError`` naming the problem."""
    from mneme.stores.postgres.operations import SCHEMA_NAME

    if not text or not text.strip():
        raise TargetError("no target given: a SQLite file path or a PostgreSQL DSN")
    if not looks_like_dsn(text):
        return Target(path=text, dsn=None, schema=schema)
    _psycopg()
    from psycopg.conninfo import conninfo_to_dict

    from mneme.stores.postgres.dsn import mask_dsn

    try:
        conninfo_to_dict(text)
    except Exception:
        # libpq's message may quote the text, password included: say it in our words.
        raise TargetError(
            f"{mask_dsn(text)} is not a valid PostgreSQL DSN; use a URL "
            "(postgresql://user@host:5432/dbname) or key=value pairs (host=... dbname=...)"
        ) from None
    if len(schema) > 63 or not SCHEMA_NAME.match(schema):
        raise TargetError(
            f"--schema {schema!r} is not a valid schema name (letters, digits and "
            "underscores, starting with a letter or underscore, at most 63 characters)"
        )
    return Target(path=None, dsn=text, schema=schema)
