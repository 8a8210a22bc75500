"""The two cache shells and what they share: options, the I/O-free flows, dumps."""

from __future__ import annotations

from mneme.cache.async_cache import AsyncSemanticCache
from mneme.cache.sync_cache import SemanticCache

__all__ = ["AsyncSemanticCache", "SemanticCache"]
