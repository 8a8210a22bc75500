"""Real embedders for the cache.

* ``MiniLM``: all-MiniLM-L6-v2 offline on onnxruntime, no PyTorch (extra ``minilm``).
* ``OpenAIEmbedder``: any OpenAI-compatible ``/embeddings`` HTTP endpoint (extra
  ``http``).
* ``SentenceTransformerEmbedder``: a sentence-transformers model you already have
  (extra ``sentence-transformers``).

Each imports its dependencies when one is made; without them the constructor raises
``EmbedderUnavailableError`` naming the extra to install. ``default_embedder()`` is
``MiniLM()``, or the test embedder with a warning when the extra is missing.
"""

from mneme.embedders.default import default_embedder
from mneme.embedders.errors import EmbedderUnavailableError, EmbeddingServiceError
from mneme.embedders.http import OpenAIEmbedder
from mneme.embedders.minilm import MiniLM
from mneme.embedders.sentence_transformer import SentenceTransformerEmbedder

__all__ = [
    "EmbedderUnavailableError",
    "EmbeddingServiceError",
    "MiniLM",
    "OpenAIEmbedder",
    "SentenceTransformerEmbedder",
    "default_embedder",
]
