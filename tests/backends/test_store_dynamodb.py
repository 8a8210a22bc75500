"""DynamoDBStore beyond the contract: constructor, table creation, extra, atomicity."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import boto3
import pytest

from conftest import EMBEDDER
from kv_fixtures import AWS_REGION, DynamoDBStoreFactory
from mneme import CacheClosedError, CheckpointError, SemanticCache, StoreBackendError
from mneme.stores.dynamodb import DynamoDBStore
from store_entries import make_entry

pytestmark = pytest.mark.backend("dynamodb")


@pytest.fixture
def ddb(aws_mock: None) -> Any:
    """A raw DynamoDB client on moto, for looking at the table."""
    return boto3.client("dynamodb", region_name=AWS_REGION)


@pytest.fixture
def opened(dynamodb_store_factory: DynamoDBStoreFactory) -> Iterator[DynamoDBStore]:
    store = dynamodb_store_factory()
    store.open(EMBEDDER.fingerprint, EMBEDDER.dim)
    yield store
    store.close()


# -- constructor and extra --------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"table_name": "ab"}, "table_name"),
        ({"table_name": "t" * 256}, "table_name"),
        ({"table_name": "cache", "billing_mode": "ON_DEMAND"}, "billing_mode"),
        ({"table_name": "cache", "billing_mode": "PROVISIONED"}, "provisioned_capacity"),
        (
            {"table_name": "cache", "billing_mode": "PROVISIONED", "provisioned_capacity": (0, 5)},
            "provisioned_capacity",
        ),
        ({"table_name": "cache", "provisioned_capacity": (5, 5)}, "PROVISIONED"),
    ],
    ids=["short-name", "long-name", "billing-mode", "no-capacity", "zero-capacity", "capacity"],
)
def test_constructor_validates(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        DynamoDBStore(**kwargs)


def test_constructor_does_no_io(monkeypatch: pytest.MonkeyPatch) -> None:
    # No credentials, no region, an endpoint nobody serves: constructing still works.
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(name, raising=False)
    store = DynamoDBStore("cache", endpoint_url="http://127.0.0.1:1", create_table=True)
    assert repr(store) == "DynamoDBStore('cache')"
    with pytest.raises(CacheClosedError):
        store.count()


def test_import_mneme_does_not_import_boto3() -> None:
    code = "import mneme, sys; assert 'boto3' not in sys.modules, 'boto3 imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_missing_boto3_names_the_extra() -> None:
    code = textwrap.dedent(
        """
        import sys
        sys.modules["boto3"] = None
        from mneme import StoreBackendError
        from mneme.stores.dynamodb import DynamoDBStore
        try:
            DynamoDBStore("cache")
        except StoreBackendError as exc:
            print(exc)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True
    ).stdout
    assert "requires the optional 'dynamodb' extra" in out
    assert "pip install 'mneme-semantic-cache[dynamodb]'" in out


def test_snapshot_and_restore_name_aws_backups(opened: DynamoDBStore) -> None:
    with pytest.raises(CheckpointError, match="AWS backups"):
        opened.snapshot_to("/tmp/x")
    with pytest.raises(CheckpointError, match="point-in-time recovery"):
        DynamoDBStore.restore_from("/tmp/x", "/tmp/y")
    assert opened.backend_label == "dynamodb"


# -- the table --------------------------------------------------------------------------


def test_create_table_makes_an_active_pay_per_request_table(
    ddb: Any, dynamodb_table_name: str
) -> None:
    store = DynamoDBStore(dynamodb_table_name, region_name=AWS_REGION, create_table=True)
    store.open(EMBEDDER.fingerprint, EMBEDDER.dim)
    store.close()
    table = ddb.describe_table(TableName=dynamodb_table_name)["Table"]
    assert table["TableStatus"] == "ACTIVE"
    assert {(k["AttributeName"], k["KeyType"]) for k in table["KeySchema"]} == {
        ("pk", "HASH"),
        ("sk", "RANGE"),
    }
    assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    # A second store with create_table=True finds the table and keeps its data.
    again = DynamoDBStore(dynamodb_table_name, region_name=AWS_REGION, create_table=True)
    again.open(EMBEDDER.fingerprint, EMBEDDER.dim)
    again.close()


def test_create_table_with_provisioned_capacity(ddb: Any, dynamodb_table_name: str) -> None:
    store = DynamoDBStore(
        dynamodb_table_name,
        region_name=AWS_REGION,
        create_table=True,
        billing_mode="PROVISIONED",
        provisioned_capacity=(7, 3),
    )
    store.open(EMBEDDER.fingerprint, EMBEDDER.dim)
    store.close()
    throughput = ddb.describe_table(TableName=dynamodb_table_name)["Table"]["ProvisionedThroughput"]
    assert (throughput["ReadCapacityUnits"], throughput["WriteCapacityUnits"]) == (7, 3)


def test_a_missing_table_says_how_to_get_one(aws_mock: None, dynamodb_table_name: str) -> None:
    store = DynamoDBStore(dynamodb_table_name, region_name=AWS_REGION)
    with pytest.raises(StoreBackendError, match="create_table=True") as info:
        store.open(EMBEDDER.fingerprint, EMBEDDER.dim)
    assert info.value.__cause__ is not None
    assert "does not exist" in str(info.value)
    with pytest.raises(CacheClosedError):
        store.count()


def test_a_table_with_another_key_schema_is_refused(ddb: Any, dynamodb_table_name: str) -> None:
    ddb.create_table(
        TableName=dynamodb_table_name,
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    store = DynamoDBStore(dynamodb_table_name, region_name=AWS_REGION)
    with pytest.raises(StoreBackendError, match="key schema"):
        store.open(EMBEDDER.fingerprint, EMBEDDER.dim)


def test_no_region_is_a_backend_error(
    aws_mock: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    monkeypatch.delenv("AWS_REGION", raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    store = DynamoDBStore("cache-table")
    with pytest.raises(StoreBackendError, match=r"DynamoDBStore\.open") as info:
        store.open(EMBEDDER.fingerprint, EMBEDDER.dim)
    assert info.value.__cause__ is not None


def test_item_layout(opened: DynamoDBStore, ddb: Any, dynamodb_table_name: str) -> None:
    id_ = opened.insert(make_entry("qh", namespace="ns", ttl=60, metadata={"k": 1}))
    opened.set_namespace_quota("ns", 4)
    opened.add_counters("ns", {"misses": 2})

    def item(pk: str, sk: str) -> dict[str, Any]:
        key = {"pk": {"S": pk}, "sk": {"S": sk}}
        found: dict[str, Any] = ddb.get_item(TableName=dynamodb_table_name, Key=key)["Item"]
        return found

    entry = item("ENTRY", f"{id_:020d}")
    assert entry["id"] == {"N": str(id_)}
    assert entry["ns"] == {"S": "ns"}
    assert entry["v"] == {"B": make_entry("qh").embedding}
    assert entry["md"] == {"S": '{"k": 1}'}
    assert entry["ttl"] == {"N": "60"}
    assert item("HASH#ns", "H#qh")["id"] == {"N": str(id_)}
    assert item("NS", "N#ns")["n"] == {"N": "1"}
    assert item("QUOTA", "Q#ns")["q"] == {"N": "4"}
    assert item("COUNTER", "C#ns")["misses"] == {"N": "2"}
    assert item("STATE", "version")["n"] == {"N": "1"}
    assert item("STATE", "seq")["n"] == {"N": str(id_)}
    assert item("META", "M#embedder_fingerprint")["val"] == {"S": EMBEDDER.fingerprint}


def test_an_entry_too_large_for_an_item_is_refused(opened: DynamoDBStore) -> None:
    with pytest.raises(StoreBackendError, match="400 KB"):
        opened.insert(make_entry("big", response="x" * 500_000))
    assert opened.count() == 0
    assert opened.read_version_counter() == 0


def test_semantic_cache_on_dynamodb(dynamodb_store_factory: DynamoDBStoreFactory) -> None:
    with SemanticCache(store=dynamodb_store_factory(), embedder=EMBEDDER) as cache:
        cache.put("What is the capital of France?", "Paris", metadata={"src": "test"})
        hit = cache.get("what is the capital of  france?")
        assert hit is not None and hit.response == "Paris" and hit.layer == "exact"
        assert cache.health().store_backend == "dynamodb"
    with SemanticCache(store=dynamodb_store_factory(), embedder=EMBEDDER) as cache:
        hit = cache.get("What is the capital of France?")
        assert hit is not None and hit.metadata == {"src": "test"}


# -- transactions and races -------------------------------------------------------------


def _before_each_transaction(monkeypatch: pytest.MonkeyPatch, hook: Any) -> None:
    """Call ``hook()`` before every TransactWriteItems of clients created from now on."""
    original = boto3.session.Session.client

    def client(self: Any, *args: Any, **kwargs: Any) -> Any:
        made = original(self, *args, **kwargs)
        made.meta.events.register("before-call.dynamodb.TransactWriteItems", lambda **_: hook())
        return made

    monkeypatch.setattr(boto3.session.Session, "client", client)


def test_a_cancelled_transaction_leaves_the_version_counter_unchanged(
    dynamodb_store_factory: DynamoDBStoreFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = dynamodb_store_factory()
    other.open(EMBEDDER.fingerprint, EMBEDDER.dim)
    first = other.insert(make_entry("h", response="first"))
    seen: list[int] = []

    def concurrent_writer() -> None:
        # Between the store's read of the hash item and its transaction, another
        # process deletes the entry: the replacement's condition check fails.
        if not seen:
            other.delete_by_id(first)
        seen.append(other.read_version_counter())

    _before_each_transaction(monkeypatch, concurrent_writer)
    store = dynamodb_store_factory()
    store.open(EMBEDDER.fingerprint, EMBEDDER.dim)
    try:
        new_id = store.insert(make_entry("h", response="second"))
        # The first attempt was cancelled without a trace: the version counter moved
        # only for the concurrent delete; the retry then inserted a new entry.
        assert len(seen) == 2
        assert seen[1] == seen[0] == 2
        assert store.read_version_counter() == 3
        assert new_id > first
        assert store.get_by_hash("default", "h") == replace(
            make_entry("h", response="second"), id=new_id
        )
        assert store.get_by_id(first) is None
        assert store.count() == 1
        assert store.integrity_check()
    finally:
        store.close()
        other.close()


def test_a_delete_racing_a_replacement_deletes_what_it_read(
    dynamodb_store_factory: DynamoDBStoreFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = dynamodb_store_factory()
    other.open(EMBEDDER.fingerprint, EMBEDDER.dim)
    id_ = other.insert(make_entry("h", ttl=10))
    fired: list[bool] = []

    def concurrent_writer() -> None:
        # The entry is renewed (new created_at, same id) after delete_expired read it.
        if not fired:
            fired.append(True)
            other.insert(make_entry("h", created_at=10**10, ttl=10))

    _before_each_transaction(monkeypatch, concurrent_writer)
    store = dynamodb_store_factory()
    store.open(EMBEDDER.fingerprint, EMBEDDER.dim)
    try:
        assert store.delete_expired(10**9) == 0  # the renewed entry is not expired
        kept = store.get_by_id(id_)
        assert kept is not None and kept.created_at == 10**10
    finally:
        store.close()
        other.close()


def test_batches_beyond_one_transaction_are_chunked(opened: DynamoDBStore) -> None:
    entries = [make_entry(f"h{i}", namespace=f"ns{i % 5}") for i in range(130)]
    ids = opened.insert_many([*entries, entries[0]])
    assert ids[0] == ids[-1]
    assert opened.count() == 130
    assert opened.read_version_counter() >= 2  # one bump per transaction
    assert sum(opened.delete_many(ids).values()) == 130
    assert opened.list_namespaces() == []
    assert opened.integrity_check()
