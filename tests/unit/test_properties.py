"""Property tests of the public API on MemoryStore and SQLiteStore.

Random sequences of put / get / delete with hostile inputs run against a cache and a
plain dict model of what each namespace should hold; ``property_model`` holds the
model, the strategies and the table of which input raises what. The same run on
PostgresStore, and explicit examples where stores differ, are in
``tests/backends/test_properties_postgres.py``.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from hypothesis import given

from mneme import MemoryStore, SQLiteStore
from property_model import any_metadata, examples, operations, run_ops, storable_metadata


@examples(200)
@given(ops=operations(any_metadata))
def test_properties_memory(ops: list[tuple[Any, ...]]) -> None:
    run_ops(MemoryStore, ops)


@examples(100)
@given(ops=operations(storable_metadata))
def test_properties_sqlite(tmp_path: Path, ops: list[tuple[Any, ...]]) -> None:
    path = str(tmp_path / f"{uuid.uuid4().hex}.db")
    run_ops(lambda: SQLiteStore(path), ops)
