"""doctor's check that shared_buffers holds what a search reads."""

from __future__ import annotations

from mneme.cli.doctor_pg import search_memory

MB = 1024 * 1024


def test_buffers_that_hold_the_graphs_and_side_table_pass() -> None:
    level, detail, fix = search_memory(8192 * MB, 2000 * MB, 1900 * MB)
    assert level == "ok"
    assert fix is None
    assert detail == (
        "8192MB: holds the HNSW graphs and the side table (graphs 2000MB + side table 1900MB)"
    )


def test_buffers_smaller_than_both_warn_with_the_sizes() -> None:
    level, detail, fix = search_memory(2048 * MB, 2000 * MB, 1900 * MB)
    assert level == "warn"
    assert fix is not None and fix.startswith("ALTER SYSTEM SET shared_buffers = '3900MB' or more")
    assert detail.startswith("2048MB, smaller than the HNSW graphs and the side table")
    assert "(graphs 2000MB + side table 1900MB = 3900MB)" in detail


def test_exactly_enough_is_enough() -> None:
    assert search_memory(3900 * MB, 2000 * MB, 1900 * MB)[0] == "ok"
