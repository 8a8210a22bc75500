"""The side table's copy of each embedding: the canonical copy when it is a unit
vector, normalised when it is not, and None where cosine is undefined."""

from __future__ import annotations

import numpy as np

from mneme._policy import to_bytes, unit_vectors
from mneme.stores.postgres.vector import side_vector, side_vectors


def test_unit_embeddings_are_taken_as_stored() -> None:
    rng = np.random.default_rng(3)
    stored = unit_vectors(list(rng.standard_normal((50, 16)).astype(np.float32)), 16)
    sides = side_vectors([to_bytes(v) for v in stored], 16)
    for side, vector in zip(sides, stored, strict=True):
        assert side is not None and side.dtype == np.float32
        assert side.tobytes() == vector.tobytes()


def test_a_vector_within_rounding_of_unit_length_is_not_normalised_again() -> None:
    nearly = np.array([0.6, 0.8], np.float32) * np.float32(1 + 2e-6)
    sides = side_vectors([to_bytes(nearly), to_bytes(np.array([1.0, 0.0], np.float32))], 2)
    assert sides[0] is not None and sides[0].tobytes() == nearly.tobytes()


def test_a_batch_with_one_longer_vector_normalises_it() -> None:
    batch = [np.array([0.6, 0.8], np.float32), np.array([3.0, 4.0], np.float32)]
    sides = side_vectors([to_bytes(v) for v in batch], 2)
    assert [s.tolist() for s in sides if s is not None] == [
        np.array([0.6, 0.8], np.float32).tolist(),
        np.array([0.6, 0.8], np.float32).tolist(),
    ]


def test_zero_and_non_finite_embeddings_have_no_side_vector() -> None:
    batch = [
        np.zeros(2, np.float32),
        np.array([np.nan, 1.0], np.float32),
        np.array([np.inf, 0.0], np.float32),
        np.array([1e30, 1e30], np.float32),
    ]
    sides = side_vectors([to_bytes(v) for v in batch], 2)
    assert sides[:3] == [None, None, None]
    assert sides[3] is not None
    assert np.allclose(sides[3], [2**-0.5, 2**-0.5])
    assert side_vector(to_bytes(batch[3]), 2) is not None


def test_embeddings_of_another_size_have_none() -> None:
    sides = side_vectors([to_bytes(np.ones(3, np.float32)), to_bytes(np.ones(2, np.float32))], 2)
    assert sides[0] is None
    assert sides[1] is not None and np.allclose(sides[1], [2**-0.5, 2**-0.5])
