"""The HNSW settings: their bounds, and ef_search scaled to each graph's size."""

from __future__ import annotations

import pytest

from mneme.stores.postgres.vector import EF_SEARCH_ROWS, HnswOptions


def test_ef_search_is_the_setting_of_graphs_of_the_reference_sizes() -> None:
    options = HnswOptions(ef_search=100)
    sizes = (EF_SEARCH_ROWS // 2, 0.75 * EF_SEARCH_ROWS, EF_SEARCH_ROWS)
    assert [options.ef_for(rows) for rows in sizes] == [100, 100, 100]
    assert options.ef_for(0) == 100  # size not known: as given


def test_a_larger_graph_searches_wider_by_the_root_of_its_size() -> None:
    options = HnswOptions(ef_search=100)
    assert options.ef_for(4 * EF_SEARCH_ROWS) == 200
    assert options.ef_for(2.61 * EF_SEARCH_ROWS) == 162
    assert HnswOptions(ef_search=40).ef_for(9 * EF_SEARCH_ROWS) == 120


def test_a_smaller_graph_searches_narrower_down_to_two_fifths() -> None:
    options = HnswOptions(ef_search=100)
    assert options.ef_for(EF_SEARCH_ROWS / 8) == 50
    assert options.ef_for(1_500) == 40
    assert HnswOptions(ef_search=1).ef_for(1_500) == 1


def test_the_setting_stays_within_pgvectors_bound() -> None:
    assert HnswOptions(ef_search=900).ef_for(100 * EF_SEARCH_ROWS) == 1000


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
