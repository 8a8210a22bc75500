"""The statement form and parameter encoding of the search path sent through libpq."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from mneme.stores.postgres.prepared import encode, numbered


def test_placeholders_are_numbered_in_order_of_first_use() -> None:
    text, names = numbered(b"SELECT %(q)b, %(now)s, 1 - %(q)b WHERE x LIKE 'a%%' AND %(h)s")
    assert text == b"SELECT $1, $2, 1 - $1 WHERE x LIKE 'a%' AND $3"
    assert names == ("q", "now", "h")


def test_a_statement_without_placeholders_is_left_as_it_is() -> None:
    assert numbered(b"SELECT 1") == (b"SELECT 1", ())


@pytest.mark.parametrize(
    ("value", "encoded", "oid"),
    [
        (True, b"\x01", 16),
        (False, b"\x00", 16),
        (3, struct.pack(">q", 3), 20),
        (-(2**63), struct.pack(">q", -(2**63)), 20),
        (0.85, struct.pack(">d", 0.85), 701),
        (float("-inf"), struct.pack(">d", float("-inf")), 701),
        ("tenant é", "tenant é".encode(), 25),
    ],
)
def test_parameters_are_encoded_in_binary(value: object, encoded: bytes, oid: int) -> None:
    assert encode(value, 9999, "utf-8") == (encoded, oid)


def test_a_float32_vector_is_sent_as_pgvector_binary() -> None:
    v = np.array([1.0, -0.5, 0.25], dtype=np.float32)
    data, oid = encode(v, 12345, "utf-8") or (b"", 0)
    assert oid == 12345
    assert data[:4] == struct.pack(">HH", 3, 0)
    assert np.frombuffer(data[4:], dtype=">f4").tolist() == [1.0, -0.5, 0.25]


@pytest.mark.parametrize(
    "value",
    [
        2**63,
        None,
        b"bytes",
        np.zeros(3, dtype=np.float64),
        np.zeros((2, 2), dtype=np.float32),
        [1.0, 2.0],
    ],
    ids=["int-too-large", "none", "bytes", "float64", "matrix", "list"],
)
def test_other_values_are_left_to_a_cursor(value: object) -> None:
    assert encode(value, 12345, "utf-8") is None


def test_text_the_connection_cannot_encode_is_left_to_a_cursor() -> None:
    assert encode("lone surrogate \udc80", 12345, "utf-8") is None
    assert encode("café", 12345, "latin-1") == ("café".encode("latin-1"), 25)


def test_vectors_need_the_vector_type_registered() -> None:
    assert encode(np.zeros(3, dtype=np.float32), None, "utf-8") is None
