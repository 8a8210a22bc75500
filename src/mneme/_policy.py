"""The cache's rules as pure functions: no I/O, shared by the sync and async shells."""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from mneme._errors import EmbedderDimensionError

CONFIDENCE_CUTOFF = 0.7
TOP_K = 3
HALF_LIFE_SECONDS = 86_400.0
_WS = re.compile(r"\s+")
_ERROR_PREFIXES = ("[LLM Error]", "[ERROR]")


def normalize_query(text: str) -> str:
    """Strip, collapse whitespace runs to one space, casefold."""
    return _WS.sub(" ", text.strip()).casefold()


def query_hash(normalized: str) -> str:
    return hashlib.sha256(normalized.encode("utf-8", "surrogatepass")).hexdigest()


def default_confidence(similarity: float, age_seconds: float, _metadata: object) -> float:
    """Similarity halved for every day of age."""
    return float(similarity * 0.5 ** (age_seconds / HALF_LIFE_SECONDS))


def default_validator(response: str) -> bool:
    """Refuse empty responses and ones that record an upstream error."""
    return bool(response.strip()) and not response.startswith(_ERROR_PREFIXES)


def eviction_batch(count: int, cap: int) -> int:
    """How many entries to evict when ``count`` exceeds ``cap`` (0 when it does not)."""
    excess = count - cap
    if excess <= 0:
        return 0
    return max(excess, cap // 10, 1)


@dataclass(frozen=True, slots=True)
class Limits:
    max_query_bytes: int
    max_response_bytes: int
    max_metadata_bytes: int


MAX_NAMESPACE_BYTES = 512
# One encoder for every put: json.dumps with options builds a new one per call.
_METADATA_ENCODER = json.JSONEncoder(allow_nan=False, ensure_ascii=False)
FLAT_JSON_TYPES = frozenset({str, int, bool, type(None)})
"""Types of metadata values that JSON gives back as they went in, and that jsonb keeps."""
# An escaped NUL in JSON text: \u0000 after an even number of backslashes.
_JSON_NUL = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")


def _storable(name: str, value: object) -> bytes:
    """UTF-8 of a text every store can keep: no NUL (Postgres text cannot hold it) and
    no lone surrogates (not encodable)."""
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, got {type(value).__name__}")
    try:
        data = value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"{name} is not valid Unicode text (lone surrogate): {exc}") from exc
    if b"\x00" in data:
        raise ValueError(f"{name} contains a NUL character, which stores cannot keep")
    return data


def check_text(name: str, value: object, limit: int, limit_name: str) -> bytes:
    data = _storable(name, value)
    if len(data) > limit:
        raise ValueError(f"{name} is {len(data)} bytes, over {limit_name}={limit}")
    return data


def check_namespace(namespace: object) -> str:
    data = _storable("namespace", namespace)
    if len(data) > MAX_NAMESPACE_BYTES:
        raise ValueError(f"namespace is {len(data)} bytes, over the limit of {MAX_NAMESPACE_BYTES}")
    return namespace  # type: ignore[return-value]


def check_metadata(metadata: object, limit: int) -> dict[str, Any] | None:
    """Metadata must be a JSON object (or None) no larger than max_metadata_bytes."""
    if metadata is None:
        return None
    if not isinstance(metadata, Mapping):
        raise TypeError(f"metadata must be a mapping or None, got {type(metadata).__name__}")
    plain = dict(metadata)
    try:
        encoded = _METADATA_ENCODER.encode(plain)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"metadata must be JSON-serialisable: {exc}") from exc
    try:
        size = len(encoded.encode("utf-8"))
    except UnicodeEncodeError as exc:
        raise ValueError(
            f"metadata holds text that is not valid Unicode (surrogates): {exc}"
        ) from exc
    if "\\u0000" in encoded and _JSON_NUL.search(encoded):
        raise ValueError("metadata holds a NUL character, which stores cannot keep")
    if size > limit:
        raise ValueError(f"metadata is {size} bytes of JSON, over max_metadata_bytes={limit}")
    # Round-trip so what is stored equals what any store will give back. A flat object
    # of texts, integers, booleans and nulls comes back equal: a copy will do.
    if all(type(k) is str and type(v) in FLAT_JSON_TYPES for k, v in plain.items()):
        return plain
    loaded: dict[str, Any] = json.loads(encoded)
    return loaded


def check_ttl(ttl: object) -> int | None:
    """TTL in whole seconds (fractions round up), or None for no expiry."""
    if ttl is None:
        return None
    if isinstance(ttl, bool) or not isinstance(ttl, int | float):
        raise TypeError(f"ttl must be a number of seconds or None, got {type(ttl).__name__}")
    if not math.isfinite(ttl) or ttl <= 0:
        raise ValueError(f"ttl must be a positive finite number of seconds, got {ttl!r}")
    return math.ceil(ttl)


def check_threshold(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError("similarity_threshold must be a number")
    v = float(value)
    if not math.isfinite(v) or not -1.0 <= v <= 1.0:
        raise ValueError(f"similarity_threshold must be finite and in [-1, 1], got {value!r}")
    return v


def unit_vector(vector: object, dim: int) -> npt.NDArray[np.float32]:
    """Validate shape and values, return an L2-normalised float32 copy.

    A zero vector stays zero (it is stored but never found by similarity). Raises
    ``EmbedderDimensionError`` (mentioning "dim") on a wrong shape and ``ValueError``
    on NaN or infinity.
    """
    try:
        arr = np.asarray(vector, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"embedding is not a numeric vector: {exc}") from exc
    if arr.ndim != 1 or arr.shape[0] != dim:
        raise EmbedderDimensionError(f"embedding has shape {arr.shape}, expected 1-D of dim {dim}")
    # One dot product tells a finite vector (NaN and infinity make it NaN or inf) and
    # gives its norm; only a sum that overflows needs the slower checks.
    squared = float(arr @ arr)
    if math.isfinite(squared):
        norm = math.sqrt(squared)
    elif not np.isfinite(arr).all():
        raise ValueError("embedding contains NaN or infinity")
    else:
        norm = float(np.linalg.norm(arr))
    if norm > 0.0:
        arr = arr / norm
    return arr.astype(np.float32)


def unit_vectors(vectors: Sequence[object], dim: int) -> list[npt.NDArray[np.float32]]:
    """``unit_vector`` for a batch: one NumPy pass when every vector is a finite row of
    ``dim`` numbers, else vector by vector (which raises the precise error)."""
    try:
        arr = np.asarray(vectors, dtype=np.float64)
    except (TypeError, ValueError):
        return [unit_vector(v, dim) for v in vectors]
    if arr.ndim != 2 or arr.shape[1] != dim or not np.isfinite(arr).all():
        return [unit_vector(v, dim) for v in vectors]
    norms = np.linalg.norm(arr, axis=1, keepdims=True)
    return list((arr / np.where(norms > 0.0, norms, 1.0)).astype(np.float32))


def to_bytes(vector: npt.NDArray[np.float32]) -> bytes:
    return np.asarray(vector, dtype="<f4").tobytes()


def from_bytes(data: bytes) -> npt.NDArray[np.float32]:
    return np.frombuffer(data, dtype="<f4").astype(np.float32)
