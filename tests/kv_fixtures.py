"""Key-value store backends for the tests (a pytest plugin, listed in conftest).

Redis: the server at ``MNEME_REDIS_URL`` (CI sets ``redis://127.0.0.1:6379/15``); each
test gets a key prefix of its own whose keys are deleted afterwards. Its tests skip
with a reason when the variable is unset or the server does not answer.

DynamoDB: moto's in-process ``mock_aws`` with fake credentials in us-east-1, and a
fresh table per test.
"""

from __future__ import annotations

import copy
import os
import threading
import types
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from moto import mock_aws

from mneme.stores.dynamodb import DynamoDBStore
from mneme.stores.redis.store import RedisStore

RedisStoreFactory = Callable[[], RedisStore]
DynamoDBStoreFactory = Callable[[], DynamoDBStore]

AWS_REGION = "us-east-1"


@pytest.fixture(scope="session")
def redis_url() -> str:
    """URL of the test Redis server, or a skip saying why not."""
    url = os.environ.get("MNEME_REDIS_URL")
    if not url:
        pytest.skip("MNEME_REDIS_URL is not set (e.g. redis://127.0.0.1:6379/15)")
    client = redis.Redis.from_url(url, socket_connect_timeout=3)
    try:
        client.ping()
    except redis.RedisError as exc:
        pytest.skip(f"Redis at MNEME_REDIS_URL does not answer: {exc}")
    finally:
        client.close()
    return url


def delete_prefix(client: Any, prefix: str) -> None:
    """Delete every key under ``prefix:`` (SCAN + DEL)."""
    batch: list[bytes] = []
    for key in client.scan_iter(match=f"{prefix}:*", count=1000):
        batch.append(key)
        if len(batch) >= 1000:
            client.delete(*batch)
            batch.clear()
    if batch:
        client.delete(*batch)


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    """A raw client on the test server, for looking at keys."""
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture
def redis_prefix(redis_client: redis.Redis) -> Iterator[str]:
    """A key prefix unique to this test; its keys are deleted afterwards."""
    prefix = f"mneme-test-{uuid.uuid4().hex}"
    yield prefix
    delete_prefix(redis_client, prefix)


@pytest.fixture
def redis_store_factory(redis_url: str, redis_prefix: str) -> Iterator[RedisStoreFactory]:
    """Unopened stores on one fresh key prefix of the test server."""
    made: list[RedisStore] = []

    def make() -> RedisStore:
        store = RedisStore(url=redis_url, key_prefix=redis_prefix)
        made.append(store)
        return store

    yield make
    for store in made:  # a safety net: close() is idempotent
        store.close()


@pytest.fixture
def aws_mock(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """moto's in-process AWS with fake credentials: nothing leaves the process."""
    for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_SECURITY_TOKEN", "testing")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", AWS_REGION)
    _copy_tables_once_per_transaction(monkeypatch)
    with mock_aws():
        yield


def _copy_tables_once_per_transaction(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make moto's TransactWriteItems copy the table once, not once per action.

    For its rollback moto deep-copies the whole table for every action of a transaction
    (before applying any), which makes a 2,000-entry table take minutes to fill. The
    copies of one transaction are identical, so handing out the first one keeps moto's
    behaviour exactly. Without moto's internals as expected, nothing is patched.
    """
    try:
        import moto.dynamodb.models as models
        from moto.dynamodb.models.table import Table
    except ImportError:
        return
    if getattr(models, "copy", None) is not copy or not hasattr(
        models.DynamoDBBackend, "transact_write_items"
    ):
        return
    original = models.DynamoDBBackend.transact_write_items
    current = threading.local()  # the copies made for the running transaction

    def deepcopy(obj: Any, memo: dict[int, Any] | None = None) -> Any:
        copies: dict[int, Any] | None = getattr(current, "copies", None)
        if copies is None or not isinstance(obj, Table):
            return copy.deepcopy(obj, memo)
        if id(obj) not in copies:
            copies[id(obj)] = copy.deepcopy(obj)
        return copies[id(obj)]

    def transact_write_items(self: Any, transact_items: list[dict[str, Any]]) -> None:
        current.copies = {}
        try:
            original(self, transact_items)
        finally:
            current.copies = None

    monkeypatch.setattr(
        models, "copy", types.SimpleNamespace(**{**vars(copy), "deepcopy": deepcopy})
    )
    monkeypatch.setattr(models.DynamoDBBackend, "transact_write_items", transact_write_items)


@pytest.fixture
def dynamodb_table_name(aws_mock: None) -> str:
    """A table name unique to this test (moto's state is fresh per test anyway)."""
    return f"mneme-test-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def dynamodb_store_factory(dynamodb_table_name: str) -> Iterator[DynamoDBStoreFactory]:
    """Unopened stores on one table, created by the first open."""
    made: list[DynamoDBStore] = []

    def make() -> DynamoDBStore:
        store = DynamoDBStore(dynamodb_table_name, region_name=AWS_REGION, create_table=True)
        made.append(store)
        return store

    yield make
    for store in made:
        store.close()
