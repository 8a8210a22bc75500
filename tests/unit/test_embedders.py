"""Test embedders (mneme.testing) and the sync/async bridges.

HashingEmbedder gives deterministic, case-insensitive, unit-norm float32 vectors, the
same in every process; TableEmbedder returns copies of fixed vectors. The public
bridges ``to_async_embedder`` and ``to_sync_embedder`` wrap an embedder of one kind as
the other and unwrap back to the original.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import numpy as np
import numpy.typing as npt
import pytest

from mneme import AsyncEmbedder, Embedder, to_async_embedder, to_sync_embedder
from mneme.testing import HashingEmbedder, TableEmbedder

TEXT = "What is the capital of France?"


def test_hashing_embedder_shape_dtype_norm() -> None:
    e = HashingEmbedder(dim=96)
    v = e.embed(TEXT)
    assert e.dim == 96
    assert v.shape == (96,)
    assert v.dtype == np.float32
    assert float(np.linalg.norm(v)) == pytest.approx(1.0, abs=1e-6)
    assert isinstance(e, Embedder)
    assert "96" in e.fingerprint


def test_hashing_embedder_is_case_insensitive_and_deterministic() -> None:
    e = HashingEmbedder(dim=64)
    assert np.array_equal(e.embed(TEXT), e.embed(TEXT.upper()))
    assert np.array_equal(e.embed(TEXT), HashingEmbedder(dim=64).embed(TEXT))
    assert not np.array_equal(e.embed(TEXT), e.embed("something else entirely"))


def test_hashing_embedder_paraphrases_are_closer_than_distractors() -> None:
    e = HashingEmbedder(dim=256)
    a = e.embed("what is the capital of france")
    b = e.embed("what is the capital city of france")
    c = e.embed("how do I bake sourdough bread")
    assert float(a @ b) > float(a @ c) + 0.3


def test_hashing_embedder_same_across_processes() -> None:
    code = (
        "from mneme.testing import HashingEmbedder\n"
        f"print(HashingEmbedder(dim=64).embed({TEXT!r}).astype('<f4').tobytes().hex())\n"
    )
    here = HashingEmbedder(dim=64).embed(TEXT).astype("<f4").tobytes().hex()
    for seed in ("1", "12345"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
        ).stdout.strip()
        assert out == here


def test_hashing_embedder_rejects_bad_dim() -> None:
    with pytest.raises(ValueError, match="dim"):
        HashingEmbedder(dim=0)


def test_hashing_embed_many_equals_embed() -> None:
    e = HashingEmbedder(dim=32)
    texts = ["a b c", "hello world", ""]
    m = e.embed_many(texts)
    assert m.shape == (3, 32)
    for row, text in zip(m, texts, strict=True):
        assert np.array_equal(row, e.embed(text))


def test_table_embedder_known_and_unknown() -> None:
    e = TableEmbedder({"a": [1.0, 0.0], "b": [0.0, 2.0]}, dim=2)
    assert e.dim == 2
    assert np.array_equal(e.embed("a"), np.array([1.0, 0.0], dtype=np.float32))
    assert e.embed("b").dtype == np.float32
    with pytest.raises(KeyError, match="zzz"):
        e.embed("zzz")
    assert e.calls == 3


def test_table_embedder_returns_copies() -> None:
    e = TableEmbedder({"a": [1.0, 0.0]}, dim=2)
    v = e.embed("a")
    v[0] = 5.0
    assert e.embed("a")[0] == 1.0


def test_table_embedder_rejects_wrong_length() -> None:
    with pytest.raises(ValueError, match="shape"):
        TableEmbedder({"a": [1.0, 0.0, 0.0]}, dim=2)


class _AsyncEmbedder:
    dim = 8
    fingerprint = "async-test"

    async def embed(self, text: str) -> npt.NDArray[np.float32]:
        await asyncio.sleep(0)
        v = np.zeros(8, dtype=np.float32)
        v[len(text) % 8] = 1.0
        return v


def test_to_async_embedder_runs_sync_embed() -> None:
    sync = HashingEmbedder(dim=16)
    wrapped = to_async_embedder(sync)
    assert isinstance(wrapped, AsyncEmbedder)
    assert wrapped.dim == 16
    assert wrapped.fingerprint == sync.fingerprint
    v = asyncio.run(wrapped.embed(TEXT))
    assert np.array_equal(v, sync.embed(TEXT))


def test_to_sync_embedder_runs_coroutine() -> None:
    inner = _AsyncEmbedder()
    wrapped = to_sync_embedder(inner)
    assert isinstance(wrapped, Embedder)
    assert wrapped.dim == 8
    assert wrapped.fingerprint == "async-test"
    v = wrapped.embed("abc")
    assert v[3] == 1.0
    assert float(v.sum()) == 1.0


def test_round_trips_return_the_original() -> None:
    sync = HashingEmbedder(dim=16)
    assert to_sync_embedder(to_async_embedder(sync)) is sync
    inner = _AsyncEmbedder()
    assert to_async_embedder(to_sync_embedder(inner)) is inner
    # Already the right kind: unchanged.
    assert to_sync_embedder(sync) is sync
    assert to_async_embedder(inner) is inner


def test_to_sync_embedder_inside_running_loop_raises() -> None:
    wrapped = to_sync_embedder(_AsyncEmbedder())

    async def main() -> None:
        with pytest.raises(RuntimeError, match="running event loop"):
            wrapped.embed("abc")

    asyncio.run(main())
