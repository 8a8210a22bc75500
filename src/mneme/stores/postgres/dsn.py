"""What the sync and the async Postgres connections share: importing psycopg (or
naming the extra that provides it), the arguments a DSN connects with, and errors
that never show its password.

psycopg is imported lazily so that ``import mneme`` works without the extra.
"""

from __future__ import annotations

import re
from types import ModuleType
from typing import Any

from mneme._errors import StoreBackendError

__all__ = ["connect_args", "connect_error", "mask_dsn", "require_psycopg"]

_EXTRA_HINT = (
    "PostgresStore requires the optional 'postgres' extra (psycopg, psycopg-pool, "
    "pgvector); install it with: pip install 'mneme-semantic-cache[postgres]'"
)


def require_psycopg() -> ModuleType:
    """Import psycopg or explain which extra is missing."""
    try:
        import psycopg
    except ImportError as exc:
        raise StoreBackendError(_EXTRA_HINT) from exc
    return psycopg


_URL_PASSWORD = re.compile(r"(://[^:/@?#]*:)[^@]*@")
_KV_PASSWORD = re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s&]*)", re.IGNORECASE)


def mask_dsn(text: str, password: str | None = None) -> str:
    """``text`` with any password in URL or key=value form replaced by ``***``."""
    if password:
        text = text.replace(password, "***")
    text = _URL_PASSWORD.sub(r"\1***@", text)
    return _KV_PASSWORD.sub(r"\1***", text)


def _dsn_password(dsn: str) -> str | None:
    from psycopg.conninfo import conninfo_to_dict

    try:
        value = conninfo_to_dict(dsn).get("password")
    except Exception:  # an unparsable DSN fails again, masked, in connect()
        return None
    return str(value) if value else None


def connect_args(dsn: str, connect_timeout: float) -> tuple[str, dict[str, Any]]:
    """The DSN and keyword arguments to connect with: autocommit, and
    ``connect_timeout`` (whole seconds, at least 1) unless the DSN sets its own."""
    psycopg = require_psycopg()
    from psycopg.conninfo import conninfo_to_dict

    kwargs: dict[str, Any] = {"autocommit": True}
    try:
        has_timeout = "connect_timeout" in conninfo_to_dict(dsn)
    except psycopg.Error:
        has_timeout = False
    if not has_timeout:
        kwargs["connect_timeout"] = max(1, round(connect_timeout))
    return dsn, kwargs


def connect_error(dsn: str, exc: Exception) -> StoreBackendError:
    """The error for a failed connect: says "connect", never shows the password."""
    password = _dsn_password(dsn)
    return StoreBackendError(
        f"could not connect to PostgreSQL at {mask_dsn(dsn, password)}: "
        f"{mask_dsn(str(exc).strip(), password)}; check that the server is up and the "
        "DSN (host, port, database, user, password) is right"
    )
