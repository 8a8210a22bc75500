"""Metadata as the Postgres store writes it to jsonb, and as the cache checks it: the
quick way for a flat object of texts, integers, booleans and nulls gives exactly what
the general way gives, and every other shape still takes the general way."""

from __future__ import annotations

import json
from collections import OrderedDict
from typing import Any

import pytest

from mneme._policy import check_metadata
from mneme.stores.postgres.operations import _metadata_json, metadata_json

FLAT: list[dict[str, Any]] = [
    {},
    {"topic": 3, "model": "bench"},
    {"a": True, "b": False, "c": None, "d": -(2**70)},
    {'quote " and \\ backslash': "tab\tnewline\n", "ünï": "çødé ✓ 😀"},
    {"empty": "", "zero": 0},
]


@pytest.mark.parametrize("value", FLAT)
def test_a_flat_object_is_written_as_the_general_way_writes_it(value: dict[str, Any]) -> None:
    assert metadata_json(value) == _metadata_json(value)
    assert json.loads(metadata_json(value)) == value


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ({"big": 1e16}, '{"big":10000000000000000.0}'),
        ({"x": 2.0}, '{"x":2.0}'),
        ({"nested": {"f": 1e23}}, '{"nested":{"f":99999999999999991611392.0}}'),
        ({1: "int key", None: "?"}, '{"1":"int key","None":"?"}'),
        ({"list": [1, 2.5]}, '{"list":[1,2.5]}'),
    ],
)
def test_floats_nesting_and_other_keys_take_the_general_way(
    value: dict[Any, Any], text: str
) -> None:
    assert metadata_json(value) == _metadata_json(value) == text


def test_a_dict_subclass_takes_the_general_way() -> None:
    ordered = OrderedDict([("b", 1), ("a", 2.5)])
    assert metadata_json(ordered) == '{"b":1,"a":2.5}'


@pytest.mark.parametrize("value", FLAT)
def test_a_checked_flat_object_is_an_equal_copy(value: dict[str, Any]) -> None:
    checked = check_metadata(value, 10_000)
    assert checked == value and checked is not value


def test_a_checked_object_with_floats_or_nesting_is_what_json_gives_back() -> None:
    value = {"t": (1, 2), "n": {"k": 1.5}}
    assert check_metadata(value, 10_000) == {"t": [1, 2], "n": {"k": 1.5}}
