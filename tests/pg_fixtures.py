"""Postgres store factories for the contract battery (skipped until written)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from mneme import Store


@pytest.fixture
def postgres_store_factory() -> Callable[[], Store]:
    pytest.skip("postgres fixtures not written yet")


@pytest.fixture
def postgres_pgvector_store_factory() -> Callable[[], Store]:
    pytest.skip("postgres fixtures not written yet")


@pytest.fixture
def pg15_store_factory() -> Callable[[], Store]:
    pytest.skip("postgres fixtures not written yet")
