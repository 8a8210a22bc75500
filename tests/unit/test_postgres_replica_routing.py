"""Replica options and the routing rules of a Postgres store with replicas, without a
server: the ``Router`` only keeps the books, the store does the I/O (tested on real
replication in ``tests/backends/test_postgres_replicas.py``)."""

from __future__ import annotations

import logging
import time
from typing import Any

import pytest

from mneme._types import ReplicaStatus
from mneme.stores.postgres import AsyncPostgresStore, PostgresStore
from mneme.stores.postgres.replicas import Replica, ReplicaOptions, Router

DSN = "postgresql://app:secret@db.invalid/app"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"replicas": "postgresql://r/app"}, "list of DSNs"),
        ({"replicas": [object()]}, "DSN string or a connection pool"),
        ({"replicas": [DSN], "replica_max_lag": -1}, "replica_max_lag"),
        ({"replicas": [DSN], "replica_wait_timeout": "soon"}, "replica_wait_timeout"),
        ({"replicas": [DSN], "replica_retry_interval": True}, "replica_retry_interval"),
    ],
)
def test_replica_options_are_checked_at_construction(kwargs: dict[str, Any], message: str) -> None:
    for cls in (PostgresStore, AsyncPostgresStore):
        with pytest.raises(ValueError, match=message):
            cls(DSN, **kwargs)


def test_a_store_with_replicas_does_no_io_before_open() -> None:
    store = PostgresStore(DSN, replicas=["postgresql://r1.invalid/app", DSN])
    twin = store.to_async()
    assert isinstance(twin, AsyncPostgresStore)


def test_a_pool_replica_has_no_async_twin() -> None:
    class Pool:
        name = "replica-pool"

        def connection(self) -> None: ...

    assert PostgresStore(DSN, replicas=[Pool()]).to_async() is None


def router(n: int = 2, **options: float) -> Router:
    return Router([Replica(f"r{i}", None) for i in range(n)], ReplicaOptions(**options))


def test_replicas_take_turns() -> None:
    r = router(3)
    firsts = [r.rotation()[0].name for _ in range(6)]
    assert firsts == ["r0", "r1", "r2", "r0", "r1", "r2"]


def test_read_your_writes_needs_the_replica_past_the_write() -> None:
    r = router(1)
    replica = r.replicas[0]
    assert r.caught_up(replica)  # nothing written yet
    r.checked(replica, True, 1_000, 0.0, False)
    r.wrote(2_000)
    assert not r.caught_up(replica)
    assert r.check_due(replica)  # behind: look again before using it
    r.checked(replica, True, 2_000, 0.0, False)
    assert r.caught_up(replica)
    r.wrote(1_500)  # an older position never lowers what must be seen
    assert r.written == 2_000


def test_a_write_of_unknown_position_sends_reads_to_the_primary() -> None:
    r = router(1)
    replica = r.replicas[0]
    r.checked(replica, True, 10**12, 0.0, False)
    r.wrote(None)
    assert not r.caught_up(replica)
    r.wrote(5)  # the next known position replaces it
    assert r.caught_up(replica)


def test_a_lagging_replica_leaves_and_comes_back(caplog: pytest.LogCaptureFixture) -> None:
    r = router(2, max_lag=1.0)
    slow, fast = r.replicas
    with caplog.at_level(logging.WARNING, logger="mneme.postgres"):
        assert r.checked(slow, True, 10, 5.0, True) is False
        assert r.checked(slow, True, 10, 6.0, True) is False  # still lagging: one count
    assert (slow.state, slow.failovers) == ("lagging", 1)
    assert "r0 is 5.0 s behind" in caplog.text
    assert [x.name for x in r.rotation()] == [fast.name]
    slow.retry_at = time.monotonic()  # its next look is due
    assert r.checked(slow, True, 20, 0.0, False) is True
    assert slow.state == "ok" and slow.failovers == 1


def test_a_failed_replica_is_down_until_its_retry(caplog: pytest.LogCaptureFixture) -> None:
    r = router(2, retry_interval=60.0)
    with caplog.at_level(logging.WARNING, logger="mneme.postgres"):
        r.failed(r.replicas[0], ConnectionError("connection refused\nmore detail"))
        r.failed(r.replicas[0], ConnectionError("connection refused"))
    down = r.replicas[0]
    assert (down.state, down.failovers, down.last_error) == ("down", 1, "connection refused")
    assert caplog.text.count("replica r0 failed") == 1
    assert [x.name for x in r.rotation()] == ["r1"]
    assert [x.name for x in r.rotation()] == ["r1"]


def test_the_primary_is_left_alone_after_it_fails(caplog: pytest.LogCaptureFixture) -> None:
    r = router(1, retry_interval=60.0)
    assert r.primary_usable()
    with caplog.at_level(logging.WARNING, logger="mneme.postgres"):
        r.primary_failed(ConnectionError("gone"))
        r.primary_failed(ConnectionError("gone"))
        assert not r.primary_usable()
        r.primary_answered()
    assert r.primary_usable()
    assert caplog.text.count("primary is unreachable") == 1
    assert "answers again" in caplog.text


def test_status_reports_lag_in_bytes_against_the_primary() -> None:
    r = router(2)
    r.checked(r.replicas[0], True, 1_000, 0.25, False)
    r.answered(r.replicas[0])
    first, second = r.status(primary_position=1_500)
    assert first == ReplicaStatus("r0", "ok", 0.25, 500, False, 1, 0, None)
    assert second.lag_bytes is None  # never checked


def test_summary_is_one_line() -> None:
    status = ReplicaStatus("db-2/app", "down", None, None, None, 3, 1, "connection refused")
    assert status.summary() == (
        "replica db-2/app: down, lag unknown, 3 reads, 1 failovers, last error: connection refused"
    )
