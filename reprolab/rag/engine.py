"""One process's RAG runtime: a Qdrant client, the embedders, the document index, retrieval and answers.

The ingest and query services (alone, or together in one process for `make serve` and the tests) and the
index stage all go through this object, so they share one Qdrant client: an embedded Qdrant folder admits one.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

from reprolab.rag.answer import Answer, Answerer
from reprolab.rag.config import RagConfig
from reprolab.rag.documents import DocumentIndex
from reprolab.rag.embedding import load_text_embedder
from reprolab.rag.images import ImageSearch
from reprolab.rag.retrieval import HybridRetriever, Passage
from reprolab.rag.store import open_client

log = logging.getLogger(__name__)


@dataclass
class QueryResult:
    question: str
    answer: Answer
    passages: list[Passage]
    timings_ms: dict[str, float]


def load_clip(model_dir: str | Path | None, required: bool = False):
    """The CLIP embedder for image search, or None (logged loudly) when no usable trained model is there."""
    from reprolab.errors import ModelError

    if model_dir is None and not required:
        return None
    if not model_dir or not Path(model_dir).is_dir():
        if required:
            raise ModelError(f"no CLIP model at {model_dir}: run the train_clip stage first")
        log.warning("no CLIP model: image search is disabled", extra={"clip_model_dir": str(model_dir)})
        return None
    from reprolab.clip.embedding import ClipEmbedder

    try:
        return ClipEmbedder.from_dir(Path(model_dir))
    except ModelError:
        if required:
            raise
        log.exception("CLIP model failed to load: image search is disabled", extra={"clip_model_dir": str(model_dir)})
        return None


class RagEngine:
    def __init__(self, config: RagConfig, client, text_embedder, docstore_path=None, image_embedder=None,
                 mistral_api_key: str | None = None, lexical_refresh_s: float = 5.0, shared_documents: bool = True):
        self.config = config
        self.client = client
        self.embedder = text_embedder
        self.documents = DocumentIndex(client, text_embedder, config, docstore_path)
        self.retriever = HybridRetriever(
            client, text_embedder, config.documents_collection, config.retrieval,
            documents=self.documents if shared_documents else None, refresh_s=lexical_refresh_s,
        )
        self.answerer = Answerer(config.answer, mistral_api_key=mistral_api_key)
        self.images = ImageSearch(client, image_embedder, config.images_collection)

    @classmethod
    def open(cls, config: RagConfig, qdrant_url: str | None = None, qdrant_path: str | Path | None = None,
             docstore_path: str | Path | None = None, clip_model_dir: str | Path | None = None,
             mistral_api_key: str | None = None, lexical_refresh_s: float = 5.0,
             shared_documents: bool = True) -> RagEngine:
        client = open_client(url=qdrant_url, path=qdrant_path)
        try:
            return cls(config, client, load_text_embedder(config.text_embedder), docstore_path,
                       load_clip(clip_model_dir), mistral_api_key, lexical_refresh_s, shared_documents)
        except Exception:
            client.close()
            raise

    def query(self, question: str, top_k: int | None = None, filters: dict | None = None,
              generate: bool = True) -> QueryResult:
        t0 = time.perf_counter()
        passages = self.retriever.retrieve(question, top_k, filters)
        t1 = time.perf_counter()
        answer = self.answerer.answer(question, passages, self.retriever.lexical, generate=generate)
        t2 = time.perf_counter()
        timings = {"retrieval": (t1 - t0) * 1e3, "answer": (t2 - t1) * 1e3, "total": (t2 - t0) * 1e3}
        log.info("query", extra={"answerable": answer.answerable, "backend": answer.backend,
                                 **{f"{k}_ms": round(v, 1) for k, v in timings.items()}})
        return QueryResult(question, answer, passages, {k: round(v, 1) for k, v in timings.items()})

    def close(self) -> None:
        self.client.close()
