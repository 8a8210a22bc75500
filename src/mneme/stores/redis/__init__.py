"""RedisStore: the cache in a Redis database; redis-py is imported when a store is made."""

from __future__ import annotations

from mneme.stores.redis.store import RedisStore

__all__ = ["RedisStore"]
