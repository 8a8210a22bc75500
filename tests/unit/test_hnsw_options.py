"""The HNSW settings: their bounds, and ef_search scaled to each graph's size."""

from __future__ import annotations

import pytest

from mneme.stores.postgres.vector import EF_SEARCH_ROWS, WELL_BUILT, HnswOptions


def test_ef_search_is_the_setting_of_a_graph_of_the_reference_size() -> None:
    options = HnswOptions(ef_search=100)
    assert options.ef_for(EF_SEARCH_ROWS) == 100
    assert options.ef_for(EF_SEARCH_ROWS, ef_construction=WELL_BUILT + 72) == 100
    assert options.ef_for(0) == 100  # size not known: as given


def test_a_graph_searches_by_the_root_of_its_size() -> None:
    options = HnswOptions(ef_search=100)
    assert options.ef_for(4 * EF_SEARCH_ROWS) == 200
    assert options.ef_for(261_000) == 162
    assert options.ef_for(122_250) == 111
    assert options.ef_for(EF_SEARCH_ROWS / 4) == 50
    assert HnswOptions(ef_search=40).ef_for(9 * EF_SEARCH_ROWS) == 120


def test_a_small_graph_searches_with_no_less_than_one_tenth() -> None:
    options = HnswOptions(ef_search=100)
    assert options.ef_for(40_000) == 63
    assert options.ef_for(10_000) == 32
    assert options.ef_for(2_500) == 16
    assert options.ef_for(1_000) == 10
    assert options.ef_for(300) == 10
    assert HnswOptions(ef_search=1).ef_for(300) == 1


def test_a_graph_built_with_less_searches_as_if_five_times_larger() -> None:
    options = HnswOptions(ef_search=100)
    assert options.ef_for(261_000, ef_construction=64) == 361
    assert options.ef_for(261_000, ef_construction=64) == options.ef_for(5 * 261_000)
    assert options.ef_for(8_000, ef_construction=WELL_BUILT - 1) == 63


def test_graphs_are_built_well_by_default() -> None:
    assert HnswOptions().ef_construction == WELL_BUILT == 128


def test_the_setting_stays_within_pgvectors_bound() -> None:
    assert HnswOptions(ef_search=900).ef_for(100 * EF_SEARCH_ROWS) == 1000
    assert HnswOptions().ef_for(1_500, at_least=5_000) == 1000


def test_a_walk_is_never_narrower_than_the_rows_asked_for() -> None:
    options = HnswOptions(ef_search=100)
    assert options.ef_for(500, at_least=30) == 30
    assert options.ef_for(500, at_least=3) == 10
    assert options.ef_for(500, at_least=12) == 12
    assert options.ef_for(0, at_least=150) == 150  # size not known


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
