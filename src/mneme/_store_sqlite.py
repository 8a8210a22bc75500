"""The import path mneme 1.0 documents; the store lives in ``mneme.stores.sqlite``."""

from mneme.stores.sqlite import SQLiteStore as SQLiteStore
