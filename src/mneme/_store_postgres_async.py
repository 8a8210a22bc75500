"""The import path mneme 1.0 documents; the store lives in
``mneme.stores.postgres.async_store``."""

from mneme.stores.postgres.async_store import AsyncPostgresStore as AsyncPostgresStore
