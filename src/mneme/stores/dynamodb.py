"""DynamoDBStore: the cache in one DynamoDB table (single-table design).

boto3 is imported lazily so that ``import mneme`` works without the extra.

The table has a string partition key ``pk`` and a string sort key ``sk``. Items, as
``pk`` / ``sk``: attributes (ids in sort keys are zero-padded to 20 digits, so they sort
by id):

* ``ENTRY`` / ``<id>``: one entry: ``id``, ``ns``, ``qh``, ``q``, ``r``, ``v`` (embedding,
  binary), ``md`` (metadata JSON, ``null`` for none), ``ca``, ``la``, ``ac``, ``ttl``
  (absent = never expires).
* ``HASH#<namespace>`` / ``H#<query_hash>``: ``id``, the lookup by (namespace, hash).
* ``NS`` / ``N#<namespace>``: ``n``, entries in the namespace.
* ``QUOTA`` / ``Q#<namespace>``: ``q``, the namespace's quota.
* ``COUNTER`` / ``C#<namespace>``: one number attribute per counter.
* ``META`` / ``M#<key>``: ``val``, meta values (embedder fingerprint and dim, schema).
* ``STATE`` / ``version`` and ``STATE`` / ``seq``: ``n``, the version counter and the
  last id handed out.

Writes are ``TransactWriteItems``: an entry and its hash item change together with the
namespace count and the version counter. A replacement keeps its id under a condition
that the hash item still points at it; a new entry's hash item is written only if it
does not exist; a transaction cancelled by a concurrent writer is re-read and retried.
Ids come from an atomic counter (``UpdateItem ADD``) and are never reused.

A transaction holds at most 100 items and 4 MB, so batches larger than that (and
``delete_expired`` / ``clear_namespace`` over many entries) are applied in several
transactions, each atomic with its own version bump.

All entries share the ``ENTRY`` partition, so ``iter_all``/``iter_since``/
``iter_vectors`` are ordered ``Query`` pages. ``iter_lru_ids``, ``delete_expired``,
``oldest_created_at`` and ``integrity_check`` read every entry's small attributes
(``Query`` of the partition, sorted in Python): O(n) reads, billed on the full item
size, suited to small and medium caches.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from types import ModuleType
from typing import Any, Literal, TypeVar

from mneme._errors import CacheClosedError, CheckpointError, SchemaMigrationError, StoreBackendError
from mneme._types import StoredEntry
from mneme.stores.common import check_embedder
from mneme.stores.protocol import COUNTER_NAMES

__all__ = ["DynamoDBStore"]

_EXTRA_HINT = (
    "DynamoDBStore requires the optional 'dynamodb' extra (boto3); "
    "install it with: pip install 'mneme-semantic-cache[dynamodb]'"
)

Item = dict[str, Any]
BillingMode = Literal["PAY_PER_REQUEST", "PROVISIONED"]

_ENTRY = "ENTRY"
_MAX_TRANSACT_ITEMS = 100
_MAX_TRANSACT_BYTES = 3_500_000  # DynamoDB allows 4 MB; keep a margin for overhead
_MAX_BATCH_GET = 100
_ATTEMPTS = 8
_T = TypeVar("_T")
_RETRYABLE_REASONS = frozenset({"ConditionalCheckFailed", "TransactionConflict"})


def _require_boto3() -> ModuleType:
    """Import boto3 or explain which extra is missing."""
    try:
        import boto3
    except ImportError as exc:
        raise StoreBackendError(_EXTRA_HINT) from exc
    module: ModuleType = boto3
    return module


def _pad(id_: int) -> str:
    return f"{id_:020d}"


def _s(value: str) -> dict[str, str]:
    return {"S": value}


def _n(value: int) -> dict[str, str]:
    return {"N": str(value)}


def _key(pk: str, sk: str) -> dict[str, dict[str, str]]:
    return {"pk": _s(pk), "sk": _s(sk)}


def _entry_key(id_: int) -> dict[str, dict[str, str]]:
    return _key(_ENTRY, _pad(id_))


def _hash_key(namespace: str, query_hash: str) -> dict[str, dict[str, str]]:
    return _key(f"HASH#{namespace}", f"H#{query_hash}")


def _entry_item(entry: StoredEntry, id_: int) -> Item:
    item: Item = {
        **_entry_key(id_),
        "id": _n(id_),
        "ns": _s(entry.namespace),
        "qh": _s(entry.query_hash),
        "q": _s(entry.query),
        "r": _s(entry.response),
        "v": {"B": entry.embedding},
        "md": _s(json.dumps(entry.metadata)),
        "ca": _n(entry.created_at),
        "la": _n(entry.last_accessed_at),
        "ac": _n(entry.access_count),
    }
    if entry.ttl is not None:
        item["ttl"] = _n(entry.ttl)
    return item


def _entry_size(entry: StoredEntry) -> int:
    """An upper estimate of the entry's share of a transaction's size."""
    return (
        len(entry.query.encode())
        + len(entry.response.encode())
        + len(entry.embedding)
        + len(json.dumps(entry.metadata).encode())
        + 2 * len(entry.namespace.encode())
        + 2 * len(entry.query_hash.encode())
        + 400
    )


def _decode_entry(item: Item) -> StoredEntry:
    ttl = item.get("ttl")
    return StoredEntry(
        id=int(item["id"]["N"]),
        namespace=item["ns"]["S"],
        query_hash=item["qh"]["S"],
        query=item["q"]["S"],
        response=item["r"]["S"],
        embedding=bytes(item["v"]["B"]),
        metadata=json.loads(item["md"]["S"]),
        created_at=int(item["ca"]["N"]),
        last_accessed_at=int(item["la"]["N"]),
        ttl=None if ttl is None else int(ttl["N"]),
        access_count=int(item["ac"]["N"]),
    )


def _projection(*names: str) -> dict[str, Any]:
    """ProjectionExpression and names for attributes (aliased: some are reserved words)."""
    return {
        "ProjectionExpression": ", ".join(f"#{n}" for n in names),
        "ExpressionAttributeNames": {f"#{n}": n for n in names},
    }


def _cancellation_codes(exc: Exception) -> set[str]:
    response = getattr(exc, "response", {})
    return {r.get("Code", "None") for r in response.get("CancellationReasons", [])} - {"None"}


class _Cancelled(Exception):
    """A transaction lost a race with another writer; read again and retry."""


class DynamoDBStore:
    """Entries in one DynamoDB table, shared by every process that can reach it.

    The constructor does no I/O; ``open`` connects, checks the table (creating it
    when ``create_table`` is true, then waiting until it is ACTIVE) and the embedder.
    ``provisioned_capacity`` is ``(read_capacity_units, write_capacity_units)``, used
    only to create a table with ``billing_mode="PROVISIONED"``. See the module
    docstring for the item layout and its costs.
    """

    backend_label = "dynamodb"
    schema_version = 1

    def __init__(
        self,
        table_name: str,
        *,
        region_name: str | None = None,
        endpoint_url: str | None = None,
        aws_profile: str | None = None,
        create_table: bool = False,
        billing_mode: BillingMode = "PAY_PER_REQUEST",
        provisioned_capacity: tuple[int, int] | None = None,
    ) -> None:
        if not isinstance(table_name, str) or not 3 <= len(table_name) <= 255:
            raise ValueError("table_name must be a DynamoDB table name (3 to 255 characters)")
        if billing_mode not in ("PAY_PER_REQUEST", "PROVISIONED"):
            raise ValueError("billing_mode must be 'PAY_PER_REQUEST' or 'PROVISIONED'")
        if billing_mode == "PROVISIONED":
            if (
                provisioned_capacity is None
                or len(provisioned_capacity) != 2
                or any(int(u) < 1 for u in provisioned_capacity)
            ):
                raise ValueError(
                    "billing_mode='PROVISIONED' needs provisioned_capacity="
                    "(read_capacity_units, write_capacity_units), both >= 1"
                )
        elif provisioned_capacity is not None:
            raise ValueError("provisioned_capacity applies only to billing_mode='PROVISIONED'")
        self._boto3 = _require_boto3()
        import botocore.exceptions

        self._botocore_errors = (
            botocore.exceptions.ClientError,
            botocore.exceptions.BotoCoreError,
        )
        self._table = table_name
        self._region = region_name
        self._endpoint = endpoint_url
        self._profile = aws_profile
        self._create = create_table
        self._billing_mode = billing_mode
        self._capacity = provisioned_capacity
        self._lock = threading.Lock()
        self._client: Any = None
        self._closed = False  # once closed, a store stays closed

    def __repr__(self) -> str:
        return f"DynamoDBStore({self._table!r})"

    # -- plumbing -----------------------------------------------------------------------

    def _conn(self) -> Any:
        client = self._client
        if client is None:
            raise CacheClosedError(f"{self!r} is {'closed' if self._closed else 'not open'}")
        return client

    @contextlib.contextmanager
    def _errors(self, operation: str) -> Iterator[None]:
        try:
            yield
        except self._botocore_errors as exc:
            hint = ""
            text = str(exc)
            if "size has exceeded" in text or "Item size" in text:
                hint = " (a DynamoDB item holds at most 400 KB: store smaller responses)"
            raise StoreBackendError(
                f"DynamoDBStore.{operation} on table {self._table!r} failed: {exc}{hint}"
            ) from exc

    def _code(self, exc: BaseException) -> str:
        response = getattr(exc, "response", None) or {}
        return str(response.get("Error", {}).get("Code", ""))

    def _get(self, operation: str, key: Mapping[str, Any], **kwargs: Any) -> Item | None:
        client = self._conn()
        with self._errors(operation):
            response = client.get_item(
                TableName=self._table, Key=key, ConsistentRead=True, **kwargs
            )
        item: Item | None = response.get("Item")
        return item

    def _query(
        self, operation: str, pk: str, *, after: str | None = None, **kwargs: Any
    ) -> Iterator[Item]:
        """Items of a partition (with sort key > ``after``), page by page; ``kwargs``
        add a projection or filter."""
        client = self._conn()
        names = {"#pk": "pk", **kwargs.pop("ExpressionAttributeNames", {})}
        values = {":pk": _s(pk), **kwargs.pop("ExpressionAttributeValues", {})}
        condition = "#pk = :pk"
        if after is not None:
            names["#sk"] = "sk"
            values[":sk"] = _s(after)
            condition += " AND #sk > :sk"
        request = {
            "TableName": self._table,
            "KeyConditionExpression": condition,
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": values,
            "ConsistentRead": True,
            **kwargs,
        }
        while True:
            with self._errors(operation):
                response = client.query(**request)
            yield from response.get("Items", [])
            last = response.get("LastEvaluatedKey")
            if not last:
                return
            request["ExclusiveStartKey"] = last

    def _batch_get(
        self, operation: str, keys: Sequence[Mapping[str, Any]], **kwargs: Any
    ) -> list[Item]:
        """Items for ``keys`` (unique), at most 100 a request, unprocessed ones retried."""
        client = self._conn()
        found: list[Item] = []
        for start in range(0, len(keys), _MAX_BATCH_GET):
            pending: dict[str, Any] = {
                self._table: {
                    "Keys": list(keys[start : start + _MAX_BATCH_GET]),
                    "ConsistentRead": True,
                    **kwargs,
                }
            }
            delay = 0.05
            while pending:
                with self._errors(operation):
                    response = client.batch_get_item(RequestItems=pending)
                found.extend(response.get("Responses", {}).get(self._table, []))
                pending = response.get("UnprocessedKeys") or {}
                if pending:
                    time.sleep(delay)
                    delay = min(delay * 2, 1.0)
        return found

    def _transact(self, operation: str, actions: list[Item]) -> None:
        """Run one TransactWriteItems; a cancellation by a lost race is ``_Cancelled``."""
        client = self._conn()
        with self._errors(operation):
            try:
                client.transact_write_items(TransactItems=actions)
            except self._botocore_errors[0] as exc:
                if self._code(exc) == "TransactionCanceledException" and (
                    _cancellation_codes(exc) <= _RETRYABLE_REASONS
                ):
                    raise _Cancelled from exc
                raise

    def _retrying(self, operation: str, attempt: Callable[[], _T]) -> _T:
        """Run ``attempt`` (which reads, then writes one transaction) until no concurrent
        writer cancels its transaction, at most ``_ATTEMPTS`` times."""
        for _ in range(_ATTEMPTS - 1):
            try:
                return attempt()
            except _Cancelled:
                continue
        try:
            return attempt()
        except _Cancelled as exc:
            raise StoreBackendError(
                f"DynamoDBStore.{operation} on table {self._table!r} lost {_ATTEMPTS} "
                "races with concurrent writers; try again"
            ) from exc.__cause__

    def _version_bump(self) -> Item:
        return {
            "Update": {
                "TableName": self._table,
                "Key": _key("STATE", "version"),
                "UpdateExpression": "ADD #n :one",
                "ExpressionAttributeNames": {"#n": "n"},
                "ExpressionAttributeValues": {":one": _n(1)},
            }
        }

    def _namespace_add(self, namespace: str, delta: int) -> Item:
        return {
            "Update": {
                "TableName": self._table,
                "Key": _key("NS", f"N#{namespace}"),
                "UpdateExpression": "ADD #n :d",
                "ExpressionAttributeNames": {"#n": "n"},
                "ExpressionAttributeValues": {":d": _n(delta)},
            }
        }

    # -- lifecycle ----------------------------------------------------------------------

    def open(self, embedder_fingerprint: str, embedder_dim: int) -> None:
        with self._lock:
            if self._closed:
                raise CacheClosedError(f"{self!r} is closed; make a new store to open")
            if self._client is not None:
                return
            with self._errors("open"):
                session = self._boto3.session.Session(
                    profile_name=self._profile, region_name=self._region
                )
                client = session.client("dynamodb", endpoint_url=self._endpoint)
            try:
                self._ensure_table(client)
                self._client = client
                self._check_meta(embedder_fingerprint, embedder_dim)
            except BaseException:
                self._client = None
                client.close()
                raise

    def _ensure_table(self, client: Any) -> None:
        with self._errors("open"):
            try:
                table = client.describe_table(TableName=self._table)["Table"]
            except self._botocore_errors[0] as exc:
                if self._code(exc) != "ResourceNotFoundException":
                    raise
                if not self._create:
                    raise StoreBackendError(
                        f"DynamoDB table {self._table!r} does not exist; create it (partition "
                        "key 'pk' and sort key 'sk', both strings) or pass create_table=True"
                    ) from exc
                table = self._create_table(client)
            if table.get("TableStatus") != "ACTIVE":
                client.get_waiter("table_exists").wait(
                    TableName=self._table, WaiterConfig={"Delay": 2, "MaxAttempts": 150}
                )
        schema = {(k["AttributeName"], k["KeyType"]) for k in table.get("KeySchema", [])}
        types = {a["AttributeName"]: a["AttributeType"] for a in table["AttributeDefinitions"]}
        if (
            schema != {("pk", "HASH"), ("sk", "RANGE")}
            or types.get("pk") != "S"
            or (types.get("sk") != "S")
        ):
            raise StoreBackendError(
                f"DynamoDB table {self._table!r} does not have the key schema DynamoDBStore "
                "needs (partition key 'pk' and sort key 'sk', both strings); "
                "use another table_name"
            )

    def _create_table(self, client: Any) -> Item:
        request: dict[str, Any] = {
            "TableName": self._table,
            "KeySchema": [
                {"AttributeName": "pk", "KeyType": "HASH"},
                {"AttributeName": "sk", "KeyType": "RANGE"},
            ],
            "AttributeDefinitions": [
                {"AttributeName": "pk", "AttributeType": "S"},
                {"AttributeName": "sk", "AttributeType": "S"},
            ],
            "BillingMode": self._billing_mode,
        }
        if self._capacity is not None:
            read, write = self._capacity
            request["ProvisionedThroughput"] = {
                "ReadCapacityUnits": int(read),
                "WriteCapacityUnits": int(write),
            }
        try:
            table: Item = client.create_table(**request)["TableDescription"]
        except self._botocore_errors[0] as exc:
            if self._code(exc) != "ResourceInUseException":  # another process created it
                raise
            table = client.describe_table(TableName=self._table)["Table"]
        return table

    def _check_meta(self, fingerprint: str, dim: int) -> None:
        wanted = {
            "embedder_fingerprint": fingerprint,
            "embedder_dim": str(dim),
            "schema_version": str(self.schema_version),
        }
        puts = [
            {
                "Put": {
                    "TableName": self._table,
                    "Item": {**_key("META", f"M#{key}"), "val": _s(value)},
                    "ConditionExpression": "attribute_not_exists(pk)",
                }
            }
            for key, value in wanted.items()
        ]
        # The first opener of a fresh table records all three at once; later ones read.
        with contextlib.suppress(_Cancelled):
            self._transact("open", puts)
        stored: dict[str, str] = {}
        for key, value in wanted.items():
            item = self._get("open", _key("META", f"M#{key}"))
            stored[key] = value if item is None else item["val"]["S"]
        if int(stored["schema_version"]) > self.schema_version:
            raise SchemaMigrationError(
                f"DynamoDB table {self._table!r} holds schema version "
                f"{stored['schema_version']}, this mneme writes {self.schema_version}; "
                "upgrade mneme to open it"
            )
        check_embedder(
            stored["embedder_fingerprint"],
            int(stored["embedder_dim"]),
            fingerprint,
            dim,
            f"DynamoDB table {self._table!r}",
        )

    def close(self) -> None:
        with self._lock:
            self._closed = True
            client, self._client = self._client, None
            if client is not None:
                client.close()

    # -- reads --------------------------------------------------------------------------

    def get_by_hash(self, namespace: str, query_hash: str) -> StoredEntry | None:
        pointer = self._get("get_by_hash", _hash_key(namespace, query_hash))
        if pointer is None:
            return None
        item = self._get("get_by_hash", _entry_key(int(pointer["id"]["N"])))
        return None if item is None else _decode_entry(item)

    def get_by_id(self, id: int) -> StoredEntry | None:
        self._conn()
        if id <= 0:
            return None
        item = self._get("get_by_id", _entry_key(id))
        return None if item is None else _decode_entry(item)

    def get_many_by_hash(
        self, namespace: str, query_hashes: Sequence[str]
    ) -> dict[str, StoredEntry]:
        self._conn()
        hashes = list(dict.fromkeys(query_hashes))
        pointers = self._batch_get("get_many_by_hash", [_hash_key(namespace, h) for h in hashes])
        ids = sorted({int(p["id"]["N"]) for p in pointers})
        items = self._batch_get("get_many_by_hash", [_entry_key(i) for i in ids])
        entries = (_decode_entry(item) for item in items)
        return {e.query_hash: e for e in entries if e.namespace == namespace}

    def count(self, namespace: str | None = None) -> int:
        if namespace is not None:
            item = self._get("count", _key("NS", f"N#{namespace}"))
            return 0 if item is None else int(item["n"]["N"])
        return sum(int(item["n"]["N"]) for item in self._query("count", "NS"))

    def list_namespaces(self) -> list[str]:
        items = self._query("list_namespaces", "NS")
        return sorted(item["sk"]["S"][2:] for item in items if int(item["n"]["N"]) > 0)

    def iter_lru_ids(self, n: int, namespace: str | None = None) -> list[int]:
        self._conn()
        if n <= 0:
            return []
        rows = [
            (int(item["la"]["N"]), int(item["id"]["N"]))
            for item in self._entries_projected("iter_lru_ids", namespace, "id", "la")
        ]
        rows.sort()
        return [id_ for _, id_ in rows[:n]]

    def _entries_projected(
        self, operation: str, namespace: str | None, *names: str
    ) -> Iterator[Item]:
        """Some attributes of every entry (of one namespace), in id order."""
        kwargs = _projection(*names)
        if namespace is not None:
            kwargs["FilterExpression"] = "#ns_filter = :ns"
            kwargs["ExpressionAttributeNames"]["#ns_filter"] = "ns"
            kwargs["ExpressionAttributeValues"] = {":ns": _s(namespace)}
        return self._query(operation, _ENTRY, **kwargs)

    def iter_all(self) -> Iterator[StoredEntry]:
        return self.iter_since(0)

    def iter_since(self, last_id: int) -> Iterator[StoredEntry]:
        self._conn()
        items = self._query("iter_since", _ENTRY, after=_pad(max(last_id, 0)))
        return (_decode_entry(item) for item in items)

    def iter_vectors(self, after_id: int = 0) -> Iterator[tuple[int, str, bytes]]:
        self._conn()
        items = self._query(
            "iter_vectors", _ENTRY, after=_pad(max(after_id, 0)), **_projection("id", "ns", "v")
        )
        return ((int(i["id"]["N"]), i["ns"]["S"], bytes(i["v"]["B"])) for i in items)

    def oldest_created_at(self) -> int | None:
        self._conn()
        created = (
            int(i["ca"]["N"]) for i in self._entries_projected("oldest_created_at", None, "ca")
        )
        return min(created, default=None)

    def read_version_counter(self) -> int:
        item = self._get("read_version_counter", _key("STATE", "version"))
        return 0 if item is None else int(item["n"]["N"])

    # -- writes -------------------------------------------------------------------------

    def insert(self, entry: StoredEntry) -> int:
        return self.insert_many([entry])[0]

    def insert_many(self, entries: Sequence[StoredEntry]) -> list[int]:
        self._conn()
        # Later duplicates win: keep the last entry per (namespace, query_hash).
        latest: dict[tuple[str, str], StoredEntry] = {}
        for entry in entries:
            latest[(entry.namespace, entry.query_hash)] = entry
        ids: dict[tuple[str, str], int] = {}
        for chunk in self._insert_chunks(list(latest.values())):

            def attempt(chunk: list[StoredEntry] = chunk) -> dict[tuple[str, str], int]:
                return self._insert_chunk(chunk)

            ids.update(self._retrying("insert", attempt))
        return [ids[(e.namespace, e.query_hash)] for e in entries]

    def _insert_chunks(self, entries: list[StoredEntry]) -> Iterator[list[StoredEntry]]:
        """Slices whose transaction stays within DynamoDB's item and size limits."""
        chunk: list[StoredEntry] = []
        namespaces: set[str] = set()
        size = 0
        for entry in entries:
            grown = namespaces | {entry.namespace}
            items = 2 * (len(chunk) + 1) + len(grown) + 1
            if chunk and (
                items > _MAX_TRANSACT_ITEMS or size + _entry_size(entry) > _MAX_TRANSACT_BYTES
            ):
                yield chunk
                chunk, grown, size = [], {entry.namespace}, 0
            chunk.append(entry)
            namespaces = grown
            size += _entry_size(entry)
        if chunk:
            yield chunk

    def _insert_chunk(self, chunk: list[StoredEntry]) -> dict[tuple[str, str], int]:
        keys = [(e.namespace, e.query_hash) for e in chunk]
        pointers = self._batch_get("insert", [_hash_key(ns, h) for ns, h in keys])
        ids = {(p["pk"]["S"][5:], p["sk"]["S"][2:]): int(p["id"]["N"]) for p in pointers}
        new = [k for k in keys if k not in ids]
        if new:
            client = self._conn()
            with self._errors("insert"):
                response = client.update_item(
                    TableName=self._table,
                    Key=_key("STATE", "seq"),
                    UpdateExpression="ADD #n :k",
                    ExpressionAttributeNames={"#n": "n"},
                    ExpressionAttributeValues={":k": _n(len(new))},
                    ReturnValues="UPDATED_NEW",
                )
            last = int(response["Attributes"]["n"]["N"])
            ids.update(zip(new, range(last - len(new) + 1, last + 1), strict=True))
        fresh = set(new)
        actions: list[Item] = []
        added: dict[str, int] = {}
        for entry, key in zip(chunk, keys, strict=True):
            id_ = ids[key]
            pointer = _hash_key(*key)
            if key in fresh:
                added[entry.namespace] = added.get(entry.namespace, 0) + 1
                actions.append(
                    {
                        "Put": {
                            "TableName": self._table,
                            "Item": {**pointer, "id": _n(id_)},
                            "ConditionExpression": "attribute_not_exists(pk)",
                        }
                    }
                )
            else:  # a replacement keeps the id while the hash item still points at it
                actions.append(
                    {
                        "ConditionCheck": {
                            "TableName": self._table,
                            "Key": pointer,
                            "ConditionExpression": "#id = :id",
                            "ExpressionAttributeNames": {"#id": "id"},
                            "ExpressionAttributeValues": {":id": _n(id_)},
                        }
                    }
                )
            actions.append({"Put": {"TableName": self._table, "Item": _entry_item(entry, id_)}})
        actions.extend(self._namespace_add(ns, k) for ns, k in added.items())
        actions.append(self._version_bump())
        self._transact("insert", actions)
        return ids

    def update_access(self, id: int, now: int) -> None:
        client = self._conn()
        with self._errors("update_access"):
            try:
                client.update_item(
                    TableName=self._table,
                    Key=_entry_key(id),
                    UpdateExpression="SET #la = :now ADD #ac :one",
                    ConditionExpression="attribute_exists(pk)",
                    ExpressionAttributeNames={"#la": "la", "#ac": "ac"},
                    ExpressionAttributeValues={":now": _n(now), ":one": _n(1)},
                )
            except self._botocore_errors[0] as exc:
                if self._code(exc) != "ConditionalCheckFailedException":
                    raise

    def delete_by_id(self, id: int) -> bool:
        return bool(self.delete_many([id]))

    def delete_many(self, ids: Sequence[int]) -> dict[str, int]:
        self._conn()
        return self._delete("delete_many", [i for i in dict.fromkeys(ids) if i > 0])

    def delete_expired(self, now: int, namespace: str | None = None) -> int:
        self._conn()

        def expired(item: Item) -> bool:
            return "ttl" in item and now - int(item["ca"]["N"]) >= int(item["ttl"]["N"])

        rows = self._entries_projected("delete_expired", namespace, "id", "ca", "ttl")
        ids = [int(item["id"]["N"]) for item in rows if expired(item)]
        return sum(self._delete("delete_expired", ids, expired).values())

    def clear_namespace(self, namespace: str) -> int:
        pointers = self._query("clear_namespace", f"HASH#{namespace}", **_projection("id"))
        ids = [int(p["id"]["N"]) for p in pointers]
        return sum(self._delete("clear_namespace", ids).values())

    def _delete(
        self, operation: str, ids: list[int], still: Callable[[Item], bool] | None = None
    ) -> dict[str, int]:
        """Delete entries (and their hash items) by id, a transaction per slice; an entry
        is deleted only while ``still(entry)`` holds. Returns the count per namespace."""
        counts: dict[str, int] = {}
        per_chunk = (_MAX_TRANSACT_ITEMS - 1) // 3  # entry, hash item, namespace count
        for start in range(0, len(ids), per_chunk):
            chunk = ids[start : start + per_chunk]

            def attempt(chunk: list[int] = chunk) -> dict[str, int]:
                return self._delete_chunk(operation, chunk, still)

            for ns, k in self._retrying(operation, attempt).items():
                counts[ns] = counts.get(ns, 0) + k
        return counts

    def _delete_chunk(
        self, operation: str, ids: list[int], still: Callable[[Item], bool] | None
    ) -> dict[str, int]:
        projection = _projection("id", "ns", "qh", "ca", "ttl")
        items = self._batch_get(operation, [_entry_key(i) for i in ids], **projection)
        doomed = [item for item in items if still is None or still(item)]
        if not doomed:
            return {}
        actions: list[Item] = []
        counts: dict[str, int] = {}
        for item in doomed:
            id_, ns = int(item["id"]["N"]), item["ns"]["S"]
            counts[ns] = counts.get(ns, 0) + 1
            actions.append(
                {
                    "Delete": {  # only the version of the entry that was read
                        "TableName": self._table,
                        "Key": _entry_key(id_),
                        "ConditionExpression": "#ca = :ca",
                        "ExpressionAttributeNames": {"#ca": "ca"},
                        "ExpressionAttributeValues": {":ca": item["ca"]},
                    }
                }
            )
            actions.append(
                {
                    "Delete": {
                        "TableName": self._table,
                        "Key": _hash_key(ns, item["qh"]["S"]),
                        "ConditionExpression": "#id = :id",
                        "ExpressionAttributeNames": {"#id": "id"},
                        "ExpressionAttributeValues": {":id": _n(id_)},
                    }
                }
            )
        actions.extend(self._namespace_add(ns, -k) for ns, k in counts.items())
        actions.append(self._version_bump())
        self._transact(operation, actions)
        return counts

    # -- quotas, meta, counters ---------------------------------------------------------

    def set_namespace_quota(self, namespace: str, max_entries: int | None) -> None:
        client = self._conn()
        key = _key("QUOTA", f"Q#{namespace}")
        with self._errors("set_namespace_quota"):
            if max_entries is None:
                client.delete_item(TableName=self._table, Key=key)
            else:
                client.put_item(TableName=self._table, Item={**key, "q": _n(max_entries)})

    def get_namespace_quota(self, namespace: str) -> int | None:
        item = self._get("get_namespace_quota", _key("QUOTA", f"Q#{namespace}"))
        return None if item is None else int(item["q"]["N"])

    def read_meta(self, key: str) -> str | None:
        item = self._get("read_meta", _key("META", f"M#{key}"))
        return None if item is None else str(item["val"]["S"])

    def write_meta(self, key: str, value: str) -> None:
        client = self._conn()
        with self._errors("write_meta"):
            client.put_item(
                TableName=self._table, Item={**_key("META", f"M#{key}"), "val": _s(value)}
            )

    def add_counters_many(self, deltas: Mapping[str, Mapping[str, int]]) -> None:
        """One update per namespace: DynamoDB has no cheaper way to add to many items
        (a transaction would cost twice the write capacity)."""
        self._conn()
        for namespace, named in deltas.items():
            self._add_counters(namespace, named)

    def add_counters(self, namespace: str, deltas: Mapping[str, int]) -> None:
        self._add_counters(namespace, deltas)

    def _add_counters(self, namespace: str, deltas: Mapping[str, int]) -> None:
        client = self._conn()
        if not deltas:
            return
        names = {f"#c{i}": name for i, name in enumerate(deltas)}
        values = {f":c{i}": _n(delta) for i, delta in enumerate(deltas.values())}
        with self._errors("add_counters"):
            client.update_item(
                TableName=self._table,
                Key=_key("COUNTER", f"C#{namespace}"),
                UpdateExpression="ADD " + ", ".join(f"#c{i} :c{i}" for i in range(len(names))),
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
            )

    def read_counters(self, namespace: str | None = None) -> dict[str, int]:
        self._conn()
        if namespace is None:
            items: Iterable[Item] = self._query("read_counters", "COUNTER")
        else:
            item = self._get("read_counters", _key("COUNTER", f"C#{namespace}"))
            items = [] if item is None else [item]
        total = dict.fromkeys(COUNTER_NAMES, 0)
        for item in items:
            for name, value in item.items():
                if name not in ("pk", "sk"):
                    total[name] = total.get(name, 0) + int(value["N"])
        return total

    def integrity_check(self) -> bool:
        """Every entry has its hash item and vice versa, and namespace counts agree.

        Reads the whole table (not one snapshot: a concurrent writer can make it
        report False once)."""
        self._conn()
        entries = {
            int(i["id"]["N"]): (i["ns"]["S"], i["qh"]["S"])
            for i in self._entries_projected("integrity_check", None, "id", "ns", "qh")
        }
        counts = {i["sk"]["S"][2:]: int(i["n"]["N"]) for i in self._query("integrity_check", "NS")}
        per_namespace: dict[str, int] = {}
        for ns, _ in entries.values():
            per_namespace[ns] = per_namespace.get(ns, 0) + 1
        if {ns: n for ns, n in counts.items() if n != 0} != per_namespace:
            return False
        for ns in per_namespace:
            pointers = self._query("integrity_check", f"HASH#{ns}", **_projection("sk", "id"))
            found = {int(p["id"]["N"]): (ns, p["sk"]["S"][2:]) for p in pointers}
            if found != {i: loc for i, loc in entries.items() if loc[0] == ns}:
                return False
        seq = self._get("integrity_check", _key("STATE", "seq"))
        return not entries or (seq is not None and max(entries) <= int(seq["n"]["N"]))

    # -- snapshots ----------------------------------------------------------------------

    def snapshot_to(self, dest_path: str) -> None:
        if self._closed:
            raise CacheClosedError(f"{self!r} is closed")
        raise CheckpointError(
            "DynamoDBStore has no file snapshot; use AWS backups (an on-demand backup "
            "or point-in-time recovery, PITR) of the table, or SemanticCache.dumps"
        )

    @classmethod
    def restore_from(cls, source_path: str, dest_path: str) -> None:
        raise CheckpointError(
            "DynamoDBStore cannot restore a file; restore the table from AWS backups "
            "(an on-demand backup or point-in-time recovery, PITR), "
            "or use SemanticCache.loads"
        )
