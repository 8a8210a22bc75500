"""The JSON text the Postgres store writes for metadata: jsonb must give back every
number as it went in, whichever path (the C encoder for flat objects, or the careful
one) wrote it."""

from __future__ import annotations

import json
from typing import Any

import pytest

from mneme.stores.postgres.operations import _exact_json, metadata_json


@pytest.mark.parametrize(
    "value",
    [
        {},
        {"topic": 3, "model": "bench"},
        {"ünï": 'cödé \\ " \n \u2028', "t": True, "f": False, "n": None},
        {"big": 2**70, "neg": -12, "x": 0.1, "y": 2.5, "z": -0.0},
        {"word": "the e-mail 3e5 is text"},  # looks like an exponent: careful path
    ],
)
def test_flat_objects_are_written_as_the_careful_path_writes_them(value: dict[str, Any]) -> None:
    text = metadata_json(value)
    assert text == _exact_json(value)
    assert json.loads(text) == value


@pytest.mark.parametrize("number", [1e16, 1e23, -1e-7, 1.5e300])
def test_floats_in_exponent_form_are_written_in_full(number: float) -> None:
    text = metadata_json({"n": number})
    assert "e" not in text.lower()
    parsed = json.loads(text)["n"]
    assert (parsed, type(parsed)) == (number, float)


def test_nested_and_odd_keys_take_the_careful_path() -> None:
    value: dict[Any, Any] = {"a": {"b": [1e16, 2]}, True: 1, None: 2, 3: "x"}
    assert metadata_json(value) == ('{"a":{"b":[10000000000000000.0,2]},"True":1,"None":2,"3":"x"}')
