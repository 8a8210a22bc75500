"""The import path mneme 1.0 documents; the store lives in ``mneme.stores.postgres.store``."""

from mneme.stores.postgres.store import PostgresStore as PostgresStore
