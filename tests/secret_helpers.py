"""Looking for a password in everything a failure shows: the error and its chain,
tracebacks, and every log record."""

from __future__ import annotations

import logging
import traceback

import pytest

SECRET = "Secr3t-PLUGH"


def capture_all_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """Capture every record at DEBUG, mneme's and the Postgres driver's included."""
    caplog.set_level(logging.DEBUG)
    for name in ("mneme", "mneme.postgres", "psycopg", "psycopg.pool"):
        caplog.set_level(logging.DEBUG, logger=name)
    return caplog


def everything_said(exc: BaseException, caplog: pytest.LogCaptureFixture, *extra: str) -> str:
    """The error with its whole chain, every log record (message and exception), and
    anything else the caller shows."""
    parts = [*traceback.format_exception(exc), repr(exc), caplog.text, *extra]
    cause: BaseException | None = exc
    while cause is not None:
        parts += [str(cause), repr(cause), repr(cause.args)]
        cause = cause.__cause__ or cause.__context__
    for record in caplog.records:
        parts.append(record.getMessage())
        if record.exc_info and record.exc_info[1] is not None:
            parts += traceback.format_exception(record.exc_info[1])
    return "\n".join(parts)


def assert_secret_absent(text: str) -> None:
    assert SECRET not in text
    assert SECRET.replace("-", "%2D") not in text
