"""Where a Postgres store with read replicas sends each read: the bookkeeping, no I/O.

The store asks the ``Router`` which replicas may answer, tells it what each status
check and each read found, and performs the I/O itself (sync or async). The rules:

* Layer 1 and Layer 2 reads go to a replica in rotation; other reads and all writes go
  to the primary.
* Read-your-writes: after this store commits a change, a replica answers only once
  it has replayed past that commit's WAL position (``written``); a read waits for that
  at most ``wait_timeout`` and otherwise goes to the primary.
* A replica that fails, or whose replay lags more than ``max_lag`` seconds, is taken
  out of rotation with a warning and a count (``failovers``); it is probed again after
  ``retry_interval`` (failed) or ``check_interval`` (lagging) and comes back by itself.
* A primary that fails at the connection level is left alone for ``retry_interval``:
  reads meanwhile go to replicas, whatever they have replayed, and writes still try it.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any, Literal

from mneme._types import ReplicaStatus

__all__ = ["STATUS_SQL", "Replica", "ReplicaOptions", "Router", "WRITTEN_LSN_SQL"]

_log = logging.getLogger("mneme.postgres")

# Positions as byte offsets (pg_lsn minus '0/0'), so Python compares plain ints.
WRITTEN_LSN_SQL = "SELECT CAST(pg_current_wal_insert_lsn() - '0/0'::pg_lsn AS BIGINT)"
"""Run on the primary right after a commit: at or past the end of that commit's WAL."""

STATUS_SQL = (
    "SELECT pg_is_in_recovery(), "
    "CAST(pg_last_wal_replay_lsn() - '0/0'::pg_lsn AS BIGINT), "
    # Nothing received that is not replayed yet: no lag, however long the primary was
    # idle. Otherwise the age of the last transaction replayed.
    "CASE WHEN NOT pg_is_in_recovery() THEN 0 "
    "WHEN pg_last_wal_receive_lsn() IS NOT DISTINCT FROM pg_last_wal_replay_lsn() THEN 0 "
    "ELSE CAST(extract(epoch FROM clock_timestamp() - pg_last_xact_replay_timestamp()) "
    "AS DOUBLE PRECISION) END, "
    "CASE WHEN pg_is_in_recovery() THEN pg_is_wal_replay_paused() END"
)
"""Run on a replica: (in recovery, replayed position, lag in seconds, replay paused)."""

_NEVER = float("inf")
State = Literal["ok", "lagging", "down"]


@dataclass(frozen=True, slots=True)
class ReplicaOptions:
    """The store's replica settings (constructor arguments)."""

    max_lag: float = 30.0
    wait_timeout: float = 0.1
    retry_interval: float = 5.0
    check_interval: float = 1.0

    def __post_init__(self) -> None:
        values = {
            "replica_max_lag": self.max_lag,
            "replica_wait_timeout": self.wait_timeout,
            "replica_retry_interval": self.retry_interval,
        }
        for name, value in values.items():
            if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
                raise ValueError(f"{name} must be a number of seconds >= 0, got {value!r}")


class Replica:
    """One replica: its connection source and what the router knows about it."""

    def __init__(self, name: str, source: Any) -> None:
        self.name = name
        self.source = source
        self.state: State = "ok"
        self.standby = True
        self.replayed: int | None = None
        self.lag_seconds: float | None = None
        self.paused: bool | None = None
        self.checked_at = -_NEVER
        self.retry_at = 0.0
        self.reads = 0
        self.failovers = 0
        self.last_error: str | None = None


class Router:
    """Routing state of one store; thread-safe (a sync store is shared by threads)."""

    def __init__(self, replicas: list[Replica], options: ReplicaOptions) -> None:
        self.replicas = replicas
        self.options = options
        self._lock = threading.Lock()
        self._next = 0
        # WAL position this store's reads must see: None (nothing written yet), a
        # position, or _NEVER when a write's position is unknown (then the primary).
        self.written: float | None = None
        self._primary_retry_at = 0.0
        self._primary_down = False

    # -- the primary -----------------------------------------------------------------

    def primary_usable(self) -> bool:
        """False while a failed primary is being left alone."""
        with self._lock:
            return not self._primary_down or time.monotonic() >= self._primary_retry_at

    def primary_failed(self, exc: BaseException) -> None:
        with self._lock:
            first = not self._primary_down
            self._primary_down = True
            self._primary_retry_at = time.monotonic() + self.options.retry_interval
        if first:
            _log.warning(
                "the primary is unreachable (%s); reads go to the replicas, writes fail "
                "until it answers again",
                _describe(exc),
            )

    def primary_answered(self) -> None:
        if self._primary_down:
            with self._lock:
                back, self._primary_down = self._primary_down, False
            if back:
                _log.warning("the primary answers again; writes and fresh reads resume")

    # -- read-your-writes -----------------------------------------------------------

    def wrote(self, position: int | None) -> None:
        """This store committed a change at ``position`` (None: not known)."""
        with self._lock:
            new = _NEVER if position is None else float(position)
            if self.written is None or new > self.written or self.written == _NEVER:
                self.written = new

    def caught_up(self, replica: Replica) -> bool:
        written = self.written
        if written is None:
            return True
        return replica.replayed is not None and replica.replayed >= written

    # -- choosing replicas ------------------------------------------------------------

    def rotation(self) -> list[Replica]:
        """The replicas that may be asked now, starting with the next in turn: those in
        rotation, and those out of it whose time for another look has come."""
        now = time.monotonic()
        with self._lock:
            start = self._next
            self._next = (self._next + 1) % len(self.replicas)
        ordered = self.replicas[start:] + self.replicas[:start]
        return [r for r in ordered if r.state == "ok" or now >= r.retry_at]

    def check_due(self, replica: Replica) -> bool:
        """Whether the replica's status should be read before it answers a read."""
        now = time.monotonic()
        if replica.state != "ok":
            return now >= replica.retry_at
        if now - replica.checked_at >= self.options.check_interval:
            return True
        return not self.caught_up(replica)

    def checked(
        self,
        replica: Replica,
        in_recovery: bool,
        replayed: int | None,
        lag: float | None,
        paused: bool | None,
    ) -> bool:
        """Record a status check; True when the replica may answer reads."""
        now = time.monotonic()
        with self._lock:
            replica.checked_at = now
            replica.standby = bool(in_recovery)
            replica.replayed = replayed
            replica.lag_seconds = lag
            replica.paused = paused
            replica.last_error = None
            was = replica.state
            lagging = lag is not None and lag > self.options.max_lag
            replica.state = "lagging" if lagging else "ok"
            if lagging:
                replica.retry_at = now + self.options.check_interval
                if was == "ok":
                    replica.failovers += 1
        if lagging and was != "lagging":
            _log.warning(
                "replica %s is %.1f s behind (limit %.1f s); its reads go elsewhere",
                replica.name,
                lag,
                self.options.max_lag,
            )
        elif not lagging and was != "ok":
            _log.warning("replica %s is back in rotation", replica.name)
        return not lagging

    def failed(self, replica: Replica, exc: BaseException) -> None:
        """The replica could not answer: out of rotation until ``retry_interval``."""
        with self._lock:
            was = replica.state
            replica.state = "down"
            replica.retry_at = time.monotonic() + self.options.retry_interval
            replica.last_error = _describe(exc)
            if was != "down":
                replica.failovers += 1
        if was != "down":
            _log.warning(
                "replica %s failed (%s); its reads go elsewhere, next try in %.0f s",
                replica.name,
                replica.last_error,
                self.options.retry_interval,
            )

    def answered(self, replica: Replica) -> None:
        with self._lock:
            replica.reads += 1

    def fallback(self) -> list[Replica]:
        """Replicas to read from while the primary is down: any not known to be down,
        the most advanced first."""
        alive = [r for r in self.replicas if r.state != "down" or time.monotonic() >= r.retry_at]
        return sorted(alive, key=lambda r: -(r.replayed or 0))

    # -- reporting ---------------------------------------------------------------------

    def status(self, primary_position: int | None) -> tuple[ReplicaStatus, ...]:
        out = []
        with self._lock:
            for r in self.replicas:
                lag_bytes = None
                if primary_position is not None and r.replayed is not None and r.standby:
                    lag_bytes = max(0, primary_position - r.replayed)
                out.append(
                    ReplicaStatus(
                        name=r.name,
                        state=r.state,
                        lag_seconds=r.lag_seconds,
                        lag_bytes=lag_bytes,
                        replay_paused=r.paused,
                        reads=r.reads,
                        failovers=r.failovers,
                        last_error=r.last_error,
                    )
                )
        return tuple(out)


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
