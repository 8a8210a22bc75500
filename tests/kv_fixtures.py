"""Key-value store backends for the tests (a pytest plugin, listed in conftest).

Redis: the server at ``MNEME_REDIS_URL`` (CI sets ``redis://127.0.0.1:6379/15``); each
test gets a key prefix of its own whose keys are deleted afterwards. Its tests skip
with a reason when the variable is unset or the server does not answer.

DynamoDB: moto's in-process ``mock_aws`` with fake credentials in us-east-1, and a
fresh table per test.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

from mneme._store_redis import RedisStore

RedisStoreFactory = Callable[[], RedisStore]

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
