"""One process's RAG runtime: a Qdrant client, the embedders, the document index, retrieval and answers.

The ingest and query services (alone, or together in one process for `make serve` and the tests) and the
index stage all go through this object, so they share one Qdrant client: an embedded Qdrant folder admits one.
Nothing here holds corpus state: every query is answered from Qdrant as it is at that moment.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

from reprolab.errors import ConfigError
from reprolab.rag.answer import Answer, Answerer
from reprolab.rag.config import RagConfig
from reprolab.rag.documents import DocumentIndex
from reprolab.rag.embedding import QueryBatcher, embedding_dim, load_text_embedder
from reprolab.rag.errors import StoreUnavailable
from reprolab.rag.images import ImageSearch
from reprolab.rag.manifest import load_manifest, served_config
from reprolab.rag.retrieval import HybridRetriever, Passage
from reprolab.rag.sparse import analyzer_for
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
    def __init__(self, config: RagConfig, client, text_embedder, image_embedder=None,
                 mistral_api_key: str | None = None, mistral_url: str | None = None):
        self.config = config
        self.client = client
        self.embedder = text_embedder
        self.documents = DocumentIndex(client, text_embedder, config)
        self.query_embedder = QueryBatcher(text_embedder)
        self.retriever = HybridRetriever(client, text_embedder, config.documents_collection, config.retrieval,
                                         documents=self.documents, embed_query=self.query_embedder.embed)
        analyzer = analyzer_for(config.retrieval.language, config.retrieval.ngram)
        self.answerer = Answerer(config.answer, analyzer, mistral_api_key=mistral_api_key, mistral_url=mistral_url)
        self.images = ImageSearch(client, image_embedder, config.images_collection)

    @classmethod
    def open(cls, config: RagConfig, qdrant_url: str | None = None, qdrant_path: str | Path | None = None,
             clip_model_dir: str | Path | None = None, mistral_api_key: str | None = None,
             mistral_url: str | None = None, qdrant_api_key: str | None = None, engine: str = "edge") -> RagEngine:
        """`engine`: the embedded engine for `qdrant_path` (reprolab.rag.store.open_client): `local` where figures
        must repeat (ties in insertion order), Edge for serving."""
        client = open_client(url=qdrant_url, path=qdrant_path, api_key=qdrant_api_key, engine=engine)
        try:
            return cls(config, client, load_text_embedder(config.text_embedder), load_clip(clip_model_dir),
                       mistral_api_key, mistral_url)
        except Exception:
            client.close()
            raise

    @classmethod
    def serve(cls, manifest_path: str | Path, answer_backend: str | None = None, **open_args) -> RagEngine:
        """What a service runs: the settings the index stage recorded, checked against the embedder and the
        collection (IndexMismatch when Qdrant already holds another embedder's vectors)."""
        manifest = load_manifest(manifest_path)
        config = served_config(manifest, answer_backend)
        if config.answer.backend == "mistral" and not open_args.get("mistral_api_key"):
            raise ConfigError("answer backend 'mistral' needs MISTRAL_API_KEY")
        engine = cls.open(config, **open_args)
        try:
            dim = embedding_dim(engine.embedder)
            if dim != manifest.embedder.dim:
                raise ConfigError(f"embedder {config.text_embedder!r} gives {dim}-d vectors but the index manifest "
                                  f"{manifest_path} records {manifest.embedder.dim}: rebuild the index")
            try:
                engine.documents.check_collection()
            except StoreUnavailable:  # Qdrant not up yet (compose): checked on first contact instead
                log.warning("qdrant not reachable at start: the collection is checked on first use")
        except Exception:
            engine.close()
            raise
        log.info("serving", extra={"manifest": str(manifest_path), "embedder": config.text_embedder, "dim": dim,
                                   "answer_backend": config.answer.backend,
                                   "evaluated_backend": manifest.evaluated_backend})
        return engine

    def query(self, question: str, top_k: int | None = None, filters: dict | None = None,
              generate: bool = True, backend: str | None = None) -> QueryResult:
        t0 = time.perf_counter()
        passages = self.retriever.retrieve(question, top_k, filters)
        t1 = time.perf_counter()
        answer = self.answerer.answer(question, passages, generate=generate, backend=backend)
        t2 = time.perf_counter()
        timings = {"retrieval": (t1 - t0) * 1e3, "answer": (t2 - t1) * 1e3, "total": (t2 - t0) * 1e3}
        log.info("query", extra={"answerable": answer.answerable, "backend": answer.backend,
                                 **{f"{k}_ms": round(v, 1) for k, v in timings.items()}})
        return QueryResult(question, answer, passages, {k: round(v, 1) for k, v in timings.items()})

    def close(self) -> None:
        self.client.close()
