"""Hybrid retrieval inside Qdrant: one Query API call prefetches the dense and the sparse (stemmed words,
character n-grams) candidates, each with the same filter, and fuses them by reciprocal rank fusion.

The query process holds no corpus state: Qdrant's IDF modifier weighs the sparse terms by the collection as it
is now, so query replicas are stateless and a document ingested is found by the very next query.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
from qdrant_client.http.exceptions import UnexpectedResponse

from reprolab.rag.config import RetrievalConfig
from reprolab.rag.errors import InputError
from reprolab.rag.sparse import CHARGRAMS, WORDS, analyzer_for
from reprolab.rag.store import DENSE, store_errors

log = logging.getLogger(__name__)
# Payload keys that describe the chunk, not the user's metadata.
CHUNK_KEYS = {"doc_id", "chunk", "chunks", "text", "start_char", "end_char", "sha256", "chars", "content_hash",
              "embedder", "metadata_keys"}


FILTER_ALIASES = {"document_id": "doc_id"}  # the name the API shows for the payload's doc_id


@dataclass
class Passage:
    document_id: str
    chunk_id: str
    text: str
    score: float  # fused RRF score
    dense_score: float | None = None  # cosine similarity of the question to the passage
    start_char: int | None = None
    end_char: int | None = None
    metadata: dict = field(default_factory=dict)


def payload_filter(filters: dict | None):
    """Exact match on payload fields (the document's metadata, or doc_id), applied inside every prefetch."""
    from qdrant_client import models

    if not filters:
        return None
    for key, value in filters.items():
        if isinstance(value, float):
            raise InputError(f"filter {key!r}: exact match takes a string, integer or boolean, not {value!r}")
    return models.Filter(must=[models.FieldCondition(key=FILTER_ALIASES.get(k, k), match=models.MatchValue(value=v))
                               for k, v in sorted(filters.items())])


class HybridRetriever:
    def __init__(self, client, embedder, collection: str, config: RetrievalConfig, documents=None, embed_query=None):
        """`documents` (the DocumentIndex of this process) checks the collection against the served embedder;
        `embed_query` (default the embedder's own) lets concurrent questions share one forward pass."""
        self.client = client
        self.embedder = embedder
        self.embed_query = embed_query or embedder.get_query_embedding
        self.collection = collection
        self.config = config
        self.documents = documents
        self.analyzer = analyzer_for(config.language, config.ngram)

    def prefetches(self, dense: list[float], question: str, flt, n: int) -> list:
        from qdrant_client import models

        sparse = self.analyzer.encode(question, question=True)
        channels = [WORDS] + ([CHARGRAMS] if self.config.chargrams else [])
        out = []
        if self.config.dense_candidates:
            out.append(models.Prefetch(query=dense, using=DENSE, limit=max(self.config.dense_candidates, 1), filter=flt))
        for channel in channels:
            if sparse[channel].indices:  # a question of stopwords only has no lexical side
                vector = models.SparseVector(indices=sparse[channel].indices, values=sparse[channel].values)
                out.append(models.Prefetch(query=vector, using=channel, limit=n, filter=flt))
        return out

    def retrieve(self, question: str, top_k: int | None = None, filters: dict | None = None,
                 embedding: list[float] | None = None) -> list[Passage]:
        from qdrant_client import models

        top_k = top_k or self.config.top_k
        if self.documents is not None and not self.documents.check_collection():
            return []
        flt = payload_filter(filters)
        dense = embedding if embedding is not None else self.embed_query(question)
        prefetch = self.prefetches(dense, question, flt, max(self.config.candidates, top_k))
        if not prefetch:
            return []
        try:
            with store_errors("search the documents collection"):
                result = self.client.query_points(
                    self.collection, prefetch=prefetch, query=models.FusionQuery(fusion=models.Fusion.RRF),
                    limit=top_k, with_payload=True, with_vectors=[DENSE],
                )
        except (ValueError, UnexpectedResponse) as e:  # the collection was dropped since it was checked
            if self.documents is None or "not found" not in str(e).lower():
                raise
            self.documents.forget()
            return []
        q = np.asarray(dense, dtype=np.float32)
        return [self._passage(p, float(np.dot(q, np.asarray(p.vector[DENSE], dtype=np.float32))))
                for p in result.points]

    @staticmethod
    def _passage(point, dense_score: float) -> Passage:
        payload = point.payload
        return Passage(
            document_id=payload["doc_id"],
            chunk_id=str(point.id),
            text=payload["text"],
            score=float(point.score),
            dense_score=round(dense_score, 6),
            start_char=payload.get("start_char"),
            end_char=payload.get("end_char"),
            metadata={k: v for k, v in payload.items() if k not in CHUNK_KEYS},
        )
