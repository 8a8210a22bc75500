"""The public surface: names, import paths, data classes.

``mneme.__all__`` is exactly the list below, and every name in it imports from the
package root; importing mneme loads no optional driver; each error derives from
MnemeError; the data classes are frozen, slotted and have exactly the listed fields;
each optional part (a store, a metrics adapter) imports from its own module and,
without its driver, names the extra to install.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import re
import subprocess
import sys

import pytest

import mneme

PUBLIC_NAMES = {
    # the caches, stores, data classes, protocols, type aliases and embedder bridges
    "SemanticCache",
    "AsyncSemanticCache",
    "MemoryStore",
    "SQLiteStore",
    "Hit",
    "Stats",
    "Health",
    "StoredEntry",
    "Embedder",
    "AsyncEmbedder",
    "Index",
    "Store",
    "VectorDtype",
    "HitLayer",
    "IndexBackend",
    "MultiProcessMode",
    "ConfidenceFn",
    "Validator",
    "MetricsHook",
    "Progress",
    "ProgressFn",
    "to_async_embedder",
    "to_sync_embedder",
    "__version__",
    # the error tree: MnemeError, the root, and the errors derived from it
    "MnemeError",
    "EmbedderMismatchError",
    "EmbedderDimensionError",
    "CorruptCacheError",
    "SchemaMigrationError",
    "CacheClosedError",
    "CheckpointError",
    "IndexBackendUnavailableError",
    "StoreBackendError",
    "NamespaceQuotaExceededError",
    "MultiProcessLockError",
    "QuantizationError",
    # the protocol of a store that answers nearest-neighbour queries itself
    "VectorSearchStore",
}

ERROR_NAMES = [
    "EmbedderMismatchError",
    "EmbedderDimensionError",
    "CorruptCacheError",
    "SchemaMigrationError",
    "CacheClosedError",
    "CheckpointError",
    "IndexBackendUnavailableError",
    "StoreBackendError",
    "NamespaceQuotaExceededError",
    "MultiProcessLockError",
    "QuantizationError",
]


def test_all_is_exactly_the_public_names() -> None:
    assert set(mneme.__all__) == PUBLIC_NAMES
    assert len(mneme.__all__) == len(PUBLIC_NAMES), "duplicates in __all__"


@pytest.mark.parametrize("name", sorted(PUBLIC_NAMES))
def test_every_name_is_importable(name: str) -> None:
    namespace: dict[str, object] = {}
    exec(f"from mneme import {name}", namespace)
    assert namespace[name] is getattr(mneme, name)


def test_star_import_gives_exactly_all() -> None:
    namespace: dict[str, object] = {}
    exec("from mneme import *", namespace)
    assert {k for k in namespace if k != "__builtins__"} == PUBLIC_NAMES


@pytest.mark.parametrize("name", ERROR_NAMES)
def test_errors_derive_from_mneme_error(name: str) -> None:
    cls = getattr(mneme, name)
    assert issubclass(cls, mneme.MnemeError)
    assert cls is not mneme.MnemeError
    assert issubclass(mneme.MnemeError, Exception)


def test_version_is_semver() -> None:
    assert re.fullmatch(r"\d+\.\d+\.\d+", mneme.__version__)


def test_import_mneme_loads_no_driver() -> None:
    code = (
        "import json, sys\n"
        "import mneme, mneme.testing\n"
        "drivers = ('psycopg', 'psycopg_pool', 'pgvector', 'redis', 'boto3', 'botocore',"
        " 'hnswlib', 'onnxruntime', 'tokenizers', 'httpx', 'sentence_transformers')\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in drivers)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert json.loads(out) == []


@pytest.mark.parametrize(
    ("module", "name"),
    [
        ("mneme.stores", "SQLiteStore"),
        ("mneme.stores", "MemoryStore"),
        ("mneme.stores.sqlite", "SQLiteStore"),
        ("mneme.stores.memory", "MemoryStore"),
        # the paths mneme 1.0 documents
        ("mneme._store_sqlite", "SQLiteStore"),
        ("mneme._store_memory", "MemoryStore"),
    ],
)
def test_documented_module_paths(module: str, name: str) -> None:
    cls = getattr(importlib.import_module(module), name)
    assert cls is getattr(mneme, name)


@pytest.mark.parametrize(
    ("module", "name", "public"),
    [
        ("mneme._store_postgres", "PostgresStore", "mneme.stores.postgres"),
        ("mneme._store_postgres_async", "AsyncPostgresStore", "mneme.stores.postgres"),
        ("mneme._store_redis", "RedisStore", "mneme.stores.redis"),
        ("mneme._store_dynamodb", "DynamoDBStore", "mneme.stores.dynamodb"),
    ],
)
def test_the_paths_of_mneme_1_0_reach_the_public_stores(
    module: str, name: str, public: str
) -> None:
    cls = getattr(importlib.import_module(module), name)
    assert cls is getattr(importlib.import_module(public), name)
    assert cls is getattr(mneme, name)  # resolved lazily on first use


def test_network_stores_from_mneme_are_resolved_lazily() -> None:
    code = (
        "import sys\n"
        "import mneme\n"
        "assert 'mneme.stores.postgres' not in sys.modules\n"
        "sys.modules['psycopg'] = None\n"
        "from mneme import PostgresStore\n"
        "try:\n    PostgresStore('postgresql://x')\n"
        "except mneme.StoreBackendError as exc:\n    print(exc)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert "'postgres' extra" in out, out
    with pytest.raises(AttributeError, match="NoSuchStore"):
        mneme.NoSuchStore  # noqa: B018


def test_testing_module_exports_embedders() -> None:
    import mneme.testing

    assert set(mneme.testing.__all__) == {"HashingEmbedder", "TableEmbedder"}


def test_py_typed_ships() -> None:
    from importlib.resources import files

    assert files("mneme").joinpath("py.typed").is_file()


DATACLASS_FIELDS = {
    "Progress": ["task", "done", "total", "unit"],
    "Hit": [
        "response",
        "similarity",
        "confidence",
        "age_seconds",
        "layer",
        "namespace",
        "metadata",
        "checks_passed",
    ],
    "Stats": [
        "namespace",
        "entries",
        "hits_exact",
        "hits_semantic",
        "misses",
        "evictions",
        "expirations",
        "embedder_fingerprint",
        "vector_dtype",
        "memory_bytes_estimate",
        "index_memory_bytes",
        "index_tombstone_count",
        "refusals",
    ],
    "Health": [
        "healthy",
        "schema_version",
        "integrity_ok",
        "embedder_fingerprint_match",
        "entries",
        "namespaces",
        "oldest_entry_age_seconds",
        "index_backend",
        "store_backend",
        "vector_dtype",
        "multi_process_mode",
        "replicas",
    ],
    "StoredEntry": [
        "id",
        "namespace",
        "query_hash",
        "query",
        "response",
        "embedding",
        "metadata",
        "created_at",
        "last_accessed_at",
        "ttl",
        "access_count",
    ],
}


@pytest.mark.parametrize("name", sorted(DATACLASS_FIELDS))
def test_data_class_fields_frozen_slots(name: str) -> None:
    cls = getattr(mneme, name)
    assert dataclasses.is_dataclass(cls)
    fields = dataclasses.fields(cls)
    assert [f.name for f in fields] == DATACLASS_FIELDS[name]
    assert getattr(cls, "__dataclass_params__").frozen  # noqa: B009
    assert "__slots__" in cls.__dict__
    assert "__dict__" not in cls.__dict__


def test_stats_optional_fields_default_to_none() -> None:
    s = mneme.Stats(None, 0, 0, 0, 0, 0, 0, "fp", "float32", 0)
    assert s.index_memory_bytes is None
    assert s.index_tombstone_count is None
    assert s.refusals == {}


def test_hit_is_frozen_and_has_no_dict() -> None:
    hit = mneme.Hit("r", 1.0, 1.0, 0.0, "exact", "default", {})
    assert hit.checks_passed == ()
    with pytest.raises(dataclasses.FrozenInstanceError):
        hit.response = "x"  # type: ignore[misc]
    assert not hasattr(hit, "__dict__")


# Every documented import path of the optional parts: it imports, and without its
# driver the first use says which extra to install (a subprocess hides the driver).
OPTIONAL_PATHS = [
    (
        "mneme.stores.postgres",
        "PostgresStore",
        "psycopg",
        "PostgresStore('postgresql://x')",
        "postgres",
    ),
    (
        "mneme.stores.postgres",
        "AsyncPostgresStore",
        "psycopg",
        "AsyncPostgresStore('postgresql://x')",
        "postgres",
    ),
    ("mneme.stores.redis", "RedisStore", "redis", "RedisStore(url='redis://x')", "redis"),
    ("mneme.stores.dynamodb", "DynamoDBStore", "boto3", "DynamoDBStore('mneme_cache')", "dynamodb"),
    (
        "mneme.adapters.prometheus",
        "PrometheusMetricsHook",
        "prometheus_client",
        "PrometheusMetricsHook()",
        "prometheus",
    ),
    (
        "mneme.adapters.opentelemetry",
        "OTelMetricsHook",
        "opentelemetry",
        "OTelMetricsHook()",
        "otel",
    ),
]


# The embedders raise EmbedderUnavailableError (an ImportError and a MnemeError) instead.
EMBEDDER_PATHS = [
    ("mneme.embedders.minilm", "MiniLM", "onnxruntime", "MiniLM()", "minilm"),
    ("mneme.embedders.http", "OpenAIEmbedder", "httpx", "OpenAIEmbedder('m', dim=8)", "http"),
    (
        "mneme.embedders.sentence_transformer",
        "SentenceTransformerEmbedder",
        "sentence_transformers",
        "SentenceTransformerEmbedder('all-MiniLM-L6-v2')",
        "sentence-transformers",
    ),
]


@pytest.mark.parametrize(("module", "name", "driver", "call", "extra"), EMBEDDER_PATHS)
def test_embedder_paths_import_and_name_their_extra(
    module: str, name: str, driver: str, call: str, extra: str
) -> None:
    assert callable(getattr(importlib.import_module(module), name))
    code = (
        f"import sys\nsys.modules[{driver!r}] = None\n"
        f"from {module} import {name}\n"
        "from mneme import MnemeError\n"
        f"try:\n    {call}\nexcept (MnemeError, ImportError) as exc:\n"
        "    print(isinstance(exc, MnemeError) and isinstance(exc, ImportError), exc)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.startswith("True ") and f"'{extra}' extra" in out, out


@pytest.mark.parametrize(("module", "name", "driver", "call", "extra"), OPTIONAL_PATHS)
def test_optional_paths_import_and_name_their_extra(
    module: str, name: str, driver: str, call: str, extra: str
) -> None:
    assert callable(getattr(importlib.import_module(module), name))
    code = (
        f"import sys\nsys.modules[{driver!r}] = None\n"
        f"from {module} import {name}\n"
        "from mneme import StoreBackendError\n"
        f"try:\n    {call}\nexcept StoreBackendError as exc:\n    print(exc)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert f"'{extra}'" in out and "extra" in out, out


@pytest.mark.parametrize(
    ("module", "names"),
    [
        (
            "mneme.tools.calibrate",
            ("find_threshold", "precision_recall_curve", "CalibrationResult"),
        ),
        ("mneme.tools.migrate", ("reembed", "areembed")),
        ("mneme.tools.calibrate", ("calibrate", "read_labelled_pairs", "format_table")),
        ("mneme.guards", ("NearMissGuards", "refusal", "features")),
        (
            "mneme.embedders",
            ("MiniLM", "OpenAIEmbedder", "SentenceTransformerEmbedder", "default_embedder"),
        ),
    ],
)
def test_tool_paths_import(module: str, names: tuple[str, ...]) -> None:
    loaded = importlib.import_module(module)
    for name in names:
        assert callable(getattr(loaded, name))
