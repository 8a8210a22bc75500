"""OpenAIEmbedder against a stub OpenAI-compatible server on 127.0.0.1.

The stub answers ``POST /v1/embeddings`` with HashingEmbedder vectors, in reverse order
with their ``index`` (as servers may), and records every request. It fails on purpose
for some model names, so each failure mode is seen as the embedder sees it.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np
import pytest

from mneme import SemanticCache
from mneme.embedders import EmbeddingServiceError, OpenAIEmbedder
from mneme.testing import HashingEmbedder

DIM = 16
VECTORS = HashingEmbedder(dim=DIM)


class Stub:
    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, str], dict[str, Any]]] = []
        handler = self._handler()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                stub.requests.append((self.path, dict(self.headers), body))
                model = body.get("model")
                texts = body.get("input", [])
                if model == "fail-500":
                    return self._send(500, {"error": {"message": "overloaded"}})
                if model == "not-json":
                    return self._send(200, None, raw=b"<html>")
                data = [
                    {"object": "embedding", "index": i, "embedding": VECTORS.embed(t).tolist()}
                    for i, t in enumerate(texts)
                ]
                if model == "short":
                    data = data[:-1]
                if model == "wrong-dim":
                    for item in data:
                        item["embedding"] = item["embedding"][:-1]
                self._send(200, {"object": "list", "data": data[::-1], "model": model})

            def _send(self, code: int, payload: Any, raw: bytes | None = None) -> None:
                out = raw if raw is not None else json.dumps(payload).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

        return Handler


@pytest.fixture
def stub() -> Iterator[Stub]:
    s = Stub()
    s.thread.start()
    yield s
    s.server.shutdown()
    s.server.server_close()


def test_embeds_in_order_in_batches(stub: Stub) -> None:
    texts = [f"question number {i}" for i in range(5)]
    with OpenAIEmbedder("text-embed", dim=DIM, base_url=stub.url, batch_size=2) as emb:
        got = emb.embed_many(texts)
        single = emb.embed("hello")
    assert got.shape == (5, DIM) and got.dtype == np.float32
    np.testing.assert_allclose(got, np.stack([VECTORS.embed(t) for t in texts]), atol=1e-6)
    np.testing.assert_allclose(single, VECTORS.embed("hello"), atol=1e-6)
    assert [len(body["input"]) for _, _, body in stub.requests] == [2, 2, 1, 1]
    assert {path for path, _, _ in stub.requests} == {"/v1/embeddings"}
    assert all(body["model"] == "text-embed" for _, _, body in stub.requests)


def test_sends_key_headers_and_dimensions(stub: Stub, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "from-env")
    OpenAIEmbedder("m", dim=DIM, base_url=stub.url + "/").embed("a")
    OpenAIEmbedder(
        "m", dim=DIM, base_url=stub.url, api_key="given", dimensions=DIM, headers={"X-Team": "7"}
    ).embed("b")
    monkeypatch.delenv("OPENAI_API_KEY")
    OpenAIEmbedder("m", dim=DIM, base_url=stub.url).embed("c")
    (_, h1, b1), (_, h2, b2), (_, h3, _) = stub.requests
    assert h1["Authorization"] == "Bearer from-env" and "dimensions" not in b1
    assert h2["Authorization"] == "Bearer given" and h2["X-Team"] == "7"
    assert b2["dimensions"] == DIM
    assert "Authorization" not in h3


@pytest.mark.parametrize(
    ("model", "message"),
    [
        ("fail-500", "HTTP 500"),
        ("not-json", "failed"),
        ("short", "returned 1 embeddings for 2 texts"),
        ("wrong-dim", "expected dim 16"),
    ],
)
def test_service_failures_raise_with_the_reason(stub: Stub, model: str, message: str) -> None:
    emb = OpenAIEmbedder(model, dim=DIM, base_url=stub.url)
    with pytest.raises(EmbeddingServiceError, match=message):
        emb.embed_many(["a", "b"])


def test_unreachable_server_is_a_service_error_and_a_miss_on_get(stub: Stub) -> None:
    url = stub.url
    stub.server.shutdown()
    stub.server.server_close()
    emb = OpenAIEmbedder("m", dim=DIM, base_url=url, timeout=2.0)
    with pytest.raises(EmbeddingServiceError, match="failed") as info:
        emb.embed("a")
    assert info.value.__cause__ is not None
    events: list[tuple[str, dict[str, Any]]] = []
    with SemanticCache(
        store=_memory(), embedder=emb, metrics_hook=lambda e, f: events.append((e, dict(f)))
    ) as cache:
        assert cache.get("anything") is None
    assert ("miss", {"namespace": "default", "reason": "embedder_failure"}) in events


def test_a_cache_on_the_endpoint(stub: Stub) -> None:
    emb = OpenAIEmbedder("text-embed", dim=DIM, base_url=stub.url)
    assert emb.fingerprint == f"mneme.embedders.OpenAIEmbedder(text-embed,dim={DIM})"
    assert OpenAIEmbedder("m", dim=DIM, fingerprint="mine").fingerprint == "mine"
    with SemanticCache(store=_memory(), embedder=emb, similarity_threshold=0.8) as cache:
        cache.put_many(
            [
                {"query": "What is the capital of France?", "response": "Paris."},
                {"query": "How many legs does a spider have?", "response": "Eight."},
            ]
        )
        hit = cache.get("What is the capital city of France?")
        assert hit is not None and hit.response == "Paris." and hit.layer == "semantic"
    # put_many sent both texts in one request.
    assert len(stub.requests[0][2]["input"]) == 2


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="model"):
        OpenAIEmbedder("", dim=DIM)
    with pytest.raises(ValueError, match="dim must be a positive integer"):
        OpenAIEmbedder("m", dim=0)
    with pytest.raises(ValueError, match="dimensions=8"):
        OpenAIEmbedder("m", dim=DIM, dimensions=8)
    with pytest.raises(TypeError, match="text 0 must be a str"):
        OpenAIEmbedder("m", dim=DIM).embed_many([b"bytes"])  # type: ignore[list-item]


def _memory() -> Any:
    from mneme import MemoryStore

    return MemoryStore()
