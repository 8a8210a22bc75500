"""The HNSW settings: their bounds, and the wider ef_search of large graphs."""

from __future__ import annotations

import pytest

from mneme.stores.postgres.vector import LARGE_GRAPH_ROWS, HnswOptions


def test_ef_search_is_used_as_given_up_to_a_large_graph() -> None:
    options = HnswOptions(ef_search=100)
    assert [options.ef_for(rows) for rows in (0, 1_000, LARGE_GRAPH_ROWS)] == [100, 100, 100]


def test_a_large_graph_searches_wider_by_the_root_of_its_size() -> None:
    options = HnswOptions(ef_search=100)
    assert options.ef_for(4 * LARGE_GRAPH_ROWS) == 200
    assert options.ef_for(2.61 * LARGE_GRAPH_ROWS) == 162
    assert HnswOptions(ef_search=40).ef_for(9 * LARGE_GRAPH_ROWS) == 120


def test_the_wider_search_stays_within_pgvectors_bound() -> None:
    assert HnswOptions(ef_search=900).ef_for(100 * LARGE_GRAPH_ROWS) == 1000


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"ef_search": 0}, "ef_search must be an integer from 1 to 1000"),
        ({"ef_search": 1001}, "ef_search must be an integer from 1 to 1000"),
        ({"m": 40, "ef_construction": 64}, "at least twice"),
    ],
)
def test_bad_settings_are_refused_naming_the_option(kwargs: dict[str, int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        HnswOptions(**kwargs)
