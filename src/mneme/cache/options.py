"""One frozen object for the cache constructor's settings, checked once and shared by
``SemanticCache`` and ``AsyncSemanticCache``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from mneme._errors import MultiProcessLockError
from mneme._policy import (
    Limits,
    check_namespace,
    check_threshold,
    check_ttl,
    default_confidence,
    default_validator,
    normalize_query,
    query_hash,
)
from mneme._types import ConfidenceFn, MetricsHook, Validator
from mneme.guards import NearMissGuards
from mneme.index import check_dtype

__all__ = ["MULTI_PROCESS_MODES", "CacheOptions", "GuardsOption", "check_guards", "check_sources"]

MULTI_PROCESS_MODES = ("single", "stale-tolerant", "mmap-shared")

GuardsOption = bool | Sequence[str] | NearMissGuards | None
"""True: every near-miss check; False or None: none; check names; or a NearMissGuards."""


@dataclass(frozen=True, slots=True)
class CacheOptions:
    """The cache constructor's settings, validated once; both shells hold one."""

    similarity_threshold: float
    default_ttl: int | None
    max_entries: int | None
    namespace_quotas: dict[str, int]
    confidence_fn: ConfidenceFn
    validator: Validator
    metrics_hook: MetricsHook | None
    normalize: bool
    index_backend: str
    index_options: dict[str, int]
    vector_dtype: str
    multi_process_mode: str
    stale_check_interval: float
    limits: Limits
    guards: NearMissGuards | None = None

    @classmethod
    def build(
        cls,
        *,
        similarity_threshold: float,
        default_ttl: float | None,
        max_entries: int | None,
        namespace_quotas: Mapping[str, int] | None,
        confidence_fn: ConfidenceFn | None,
        validator: Validator | None,
        metrics_hook: MetricsHook | None,
        normalize: bool,
        index_backend: str,
        index_options: Mapping[str, int] | None,
        vector_dtype: str,
        multi_process_mode: str,
        stale_check_interval: float,
        max_query_bytes: int,
        max_response_bytes: int,
        max_metadata_bytes: int,
        guards: GuardsOption = True,
    ) -> CacheOptions:
        if max_entries is not None and (isinstance(max_entries, bool) or max_entries < 1):
            raise ValueError(f"max_entries must be a positive integer or None, got {max_entries!r}")
        quotas: dict[str, int] = {}
        for ns, quota in (namespace_quotas or {}).items():
            check_namespace(ns)
            if isinstance(quota, bool) or not isinstance(quota, int) or quota < 1:
                raise ValueError(f"namespace_quotas[{ns!r}] must be a positive integer")
            quotas[ns] = quota
        if index_backend not in ("auto", "numpy", "hnsw"):
            raise ValueError(
                f"index_backend must be 'auto', 'numpy' or 'hnsw', got {index_backend!r}"
            )
        if multi_process_mode not in MULTI_PROCESS_MODES:
            raise ValueError(
                f"multi_process_mode must be one of {', '.join(MULTI_PROCESS_MODES)}, "
                f"got {multi_process_mode!r}"
            )
        if not stale_check_interval >= 0:
            raise ValueError("stale_check_interval must be >= 0 seconds")
        for name, value in (
            ("max_query_bytes", max_query_bytes),
            ("max_response_bytes", max_response_bytes),
            ("max_metadata_bytes", max_metadata_bytes),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        _refuse_mmap_shared(multi_process_mode)
        return cls(
            similarity_threshold=check_threshold(similarity_threshold),
            default_ttl=check_ttl(default_ttl),
            max_entries=max_entries,
            namespace_quotas=quotas,
            confidence_fn=confidence_fn or default_confidence,
            validator=validator or default_validator,
            metrics_hook=metrics_hook,
            normalize=bool(normalize),
            index_backend=index_backend,
            index_options=dict(index_options or {}),
            vector_dtype=check_dtype(vector_dtype),
            multi_process_mode=multi_process_mode,
            stale_check_interval=float(stale_check_interval),
            limits=Limits(max_query_bytes, max_response_bytes, max_metadata_bytes),
            guards=check_guards(guards),
        )

    def key(self, query: object) -> tuple[str, str]:
        """(text the embedder sees, query_hash) for a query."""
        if not isinstance(query, str):
            raise TypeError(f"query must be a str, got {type(query).__name__}")
        text = normalize_query(query) if self.normalize else query
        return text, query_hash(text)


def check_guards(value: object) -> NearMissGuards | None:
    """The guards a ``guards=`` argument asks for."""
    if value is True:
        return NearMissGuards()
    if value is False or value is None:
        return None
    if isinstance(value, NearMissGuards):
        return value
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise TypeError(
            "guards must be True, False, a list of check names or a NearMissGuards, "
            f"got {type(value).__name__}"
        )
    return NearMissGuards(value) if value else None


def check_sources(owner: str, path: object, store: object, embedder: object) -> None:
    """A cache needs one place to keep entries and one embedder."""
    if (path is None) == (store is None):
        raise ValueError(f"{owner} needs exactly one of path= or store=")
    if embedder is None:
        raise ValueError(f"{owner} needs an embedder (embedder=...)")


def _refuse_mmap_shared(mode: str) -> None:
    if mode == "mmap-shared":
        raise MultiProcessLockError(
            "multi_process_mode='mmap-shared' is not supported by this version; use "
            "'stale-tolerant' (in-process index kept current by polling) or a store "
            "with server-side search (PostgresStore(use_pgvector=True))"
        )
