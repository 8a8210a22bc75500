"""The import path mneme 1.0 documents; the store lives in ``mneme.stores.memory``."""

from mneme.stores.memory import MemoryStore as MemoryStore
