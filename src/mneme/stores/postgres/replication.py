"""A one-off look at read replicas, for a command-line check (``mneme doctor``).

``check_replicas(primary, [replica, ...])`` connects to each server once and reports,
per replica, what a ``PostgresStore(..., replicas=...)`` would decide: in rotation,
lagging past ``max_lag`` or down, with its lag in seconds and in bytes of WAL.
"""

from __future__ import annotations

from collections.abc import Sequence

from mneme._types import ReplicaStatus
from mneme.stores.postgres.dsn import connect_args, mask_dsn, require_psycopg
from mneme.stores.postgres.replicas import STATUS_SQL, WRITTEN_LSN_SQL

__all__ = ["check_replicas"]


def check_replicas(
    primary: str | None,
    replicas: Sequence[str],
    *,
    max_lag: float = 30.0,
    connect_timeout: float = 5.0,
) -> list[ReplicaStatus]:
    """The state of each replica DSN in ``replicas`` (never raises for a server that
    cannot be reached: that replica is reported "down" with the error). ``primary``
    (optional) gives the byte lag; a replica that is not in recovery is reported with
    the error "not a standby"."""
    psycopg = require_psycopg()
    position: int | None = None
    if primary is not None:
        try:
            dsn, kwargs = connect_args(primary, connect_timeout)
            with psycopg.connect(dsn, **kwargs) as conn:
                row = conn.execute(WRITTEN_LSN_SQL).fetchone()
                position = None if row is None else int(row[0])
        except psycopg.Error:
            position = None
    out = []
    for replica in replicas:
        name = mask_dsn(replica)
        try:
            dsn, kwargs = connect_args(replica, connect_timeout)
            with psycopg.connect(dsn, **kwargs) as conn:
                row = conn.execute(STATUS_SQL).fetchone()
        except psycopg.Error as exc:
            error = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            out.append(ReplicaStatus(name, "down", None, None, None, 0, 0, mask_dsn(error)))
            continue
        assert row is not None
        in_recovery, replayed, lag, paused = row
        lag_bytes = None
        if position is not None and replayed is not None:
            lag_bytes = max(0, position - int(replayed))
        lagging = lag is not None and lag > max_lag
        note = None if in_recovery else "not a standby (pg_is_in_recovery() is false)"
        out.append(
            ReplicaStatus(name, "lagging" if lagging else "ok", lag, lag_bytes, paused, 0, 0, note)
        )
    return out
