"""The import path mneme 1.0 documents; the store lives in ``mneme.stores.redis``."""

from mneme.stores.redis import RedisStore as RedisStore
