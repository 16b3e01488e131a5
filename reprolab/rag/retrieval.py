"""Hybrid retrieval: dense (Qdrant) + lexical (BM25 with Portuguese stemming), fused by reciprocal rank fusion.

The sample document is Portuguese and the packaged embedder is English, so the lexical side carries much of
the signal; RRF combines ranks, not raw scores, so neither scale dominates.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from dataclasses import dataclass, field

import numpy as np

from reprolab.rag.config import RetrievalConfig
from reprolab.rag.store import collection_exists, store_errors

log = logging.getLogger(__name__)


@dataclass
class Passage:
    document_id: str
    chunk_id: str
    text: str
    score: float  # fused RRF score
    dense_score: float | None = None  # cosine similarity, when the dense side found it
    lexical_score: float | None = None  # BM25 score, when the lexical side found it
    start_char: int | None = None
    end_char: int | None = None
    metadata: dict = field(default_factory=dict)


def reciprocal_rank_fusion(rankings: list[list[str]], k: int = 60, weights: list[float] | None = None) -> dict[str, float]:
    """score(d) = sum_i w_i / (k + rank_i(d)), ranks from 1 (Cormack et al., 2009)."""
    weights = weights or [1.0] * len(rankings)
    fused: dict[str, float] = {}
    for ranking, weight in zip(rankings, weights):
        for rank, key in enumerate(ranking, start=1):
            fused[key] = fused.get(key, 0.0) + weight / (k + rank)
    return fused


WORD = re.compile(r"\w\w+", re.UNICODE)
# Interrogatives say what kind of answer is wanted, not where it is: dropped from questions before matching.
QUESTION_WORDS = {
    "qual", "quais", "quanto", "quantos", "quanta", "quantas", "quem", "onde", "quando", "como", "porque",
    "principal", "principais", "atualmente", "what", "which", "how", "who", "where", "when", "why",
}


class LexicalIndex:
    """BM25 (bm25s) over the collection's chunks.

    analyzer "words": PyStemmer stems, stopwords removed. analyzer "chargrams": character n-grams of the
    non-stopword words, which still match where the source glued words together ("oClub Salesdá", an
    artefact of stripped links in the sample) or misspelt them.
    """

    def __init__(self, language: str = "portuguese", analyzer: str = "words", ngram: int = 4):
        import Stemmer
        from bm25s.tokenization import _infer_stopwords

        self.language = language
        self.analyzer = analyzer
        self.ngram = ngram
        self.stemmer = Stemmer.Stemmer(language)
        self.stopwords = set(_infer_stopwords({"portuguese": "pt", "english": "en"}.get(language, language)))
        self.nodes: list = []
        self._bm25 = None

    def words(self, text: str, question: bool = False) -> list[str]:
        drop = self.stopwords | QUESTION_WORDS if question else self.stopwords
        return [w for w in WORD.findall(text.lower()) if w not in drop]

    def analyze(self, text: str, question: bool = False) -> list[str]:
        words = self.words(text, question)
        if self.analyzer == "words":
            return self.stemmer.stemWords(words)
        n = self.ngram
        return [w[i : i + n] for w in words for i in range(max(1, len(w) - n + 1))]

    def terms(self, text: str, question: bool = False) -> set[str]:
        """Stemmed content terms of a text (whatever the analyzer: grounding counts whole terms)."""
        return set(self.stemmer.stemWords(self.words(text, question)))

    def build(self, nodes: list) -> None:
        import bm25s

        self.nodes = list(nodes)
        if not self.nodes:
            self._bm25 = None
            return
        bm25 = bm25s.BM25()
        bm25.index([self.analyze(n.get_content()) or ["<empty>"] for n in self.nodes], show_progress=False)
        self._bm25 = bm25

    def search(self, question: str, k: int, keep=None) -> list[tuple[object, float]]:
        if self._bm25 is None:
            return []
        vocab = self._bm25.vocab_dict
        query = [t for t in self.analyze(question, question=True) if t in vocab]
        if not query:
            return []
        # Filters apply before ranking: score everything, then keep the allowed nodes.
        scores = self._bm25.get_scores(query)
        order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
        hits = []
        for idx in order:
            node, score = self.nodes[idx], float(scores[idx])
            if score <= 0 or len(hits) == k:
                break
            if keep and not keep(node):
                continue
            hits.append((node, score))
        return hits


def _metadata_filters(filters: dict | None):
    from llama_index.core.vector_stores import MetadataFilter, MetadataFilters

    if not filters:
        return None
    return MetadataFilters(filters=[MetadataFilter(key=k, value=v) for k, v in filters.items()])


def _matches(filters: dict | None):
    if not filters:
        return None
    return lambda node: all(node.metadata.get(k) == v for k, v in filters.items())


class HybridRetriever:
    def __init__(self, client, embedder, collection: str, config: RetrievalConfig, documents=None,
                 refresh_s: float = 5.0):
        """`documents` (a DocumentIndex in the same process) tells when to rebuild BM25; without it (a query
        service apart from ingest, as under compose) the lexical index is rebuilt every `refresh_s` seconds."""
        self.client = client
        self.embedder = embedder
        self.collection = collection
        self.config = config
        self.documents = documents
        self.refresh_s = refresh_s
        self.lexical = LexicalIndex(config.language, "words")
        self.chargrams = LexicalIndex(config.language, "chargrams", config.ngram) if config.chargram_weight else None
        self._built_at: tuple | None = None
        self._lock = threading.Lock()
        self._vector_store = None

    @property
    def vector_store(self):
        if self._vector_store is None:
            from llama_index.vector_stores.qdrant import QdrantVectorStore

            with store_errors("open the documents collection"):
                self._vector_store = QdrantVectorStore(collection_name=self.collection, client=self.client)
        return self._vector_store

    def all_nodes(self) -> list:
        from llama_index.core.vector_stores.utils import metadata_dict_to_node

        if not collection_exists(self.client, self.collection):
            return []
        nodes, offset = [], None
        with store_errors("read the chunks for the lexical index"):
            while True:
                points, offset = self.client.scroll(self.collection, limit=512, offset=offset, with_payload=True)
                nodes += [metadata_dict_to_node(p.payload) for p in points]
                if offset is None:
                    break
        nodes.sort(key=lambda n: (n.ref_doc_id or "", n.start_char_idx or 0, n.node_id))
        return nodes

    def _refresh_lexical(self) -> None:
        stamp = (self.documents.version,) if self.documents is not None else (int(time.monotonic() // self.refresh_s),)
        with self._lock:
            if stamp != self._built_at:
                nodes = self.all_nodes()
                self.lexical.build(nodes)
                if self.chargrams is not None:
                    self.chargrams.build(nodes)
                self._built_at = stamp
                log.info("lexical index built", extra={"chunks": len(self.lexical.nodes)})

    def retrieve(self, question: str, top_k: int | None = None, filters: dict | None = None) -> list[Passage]:
        from llama_index.core.vector_stores import VectorStoreQuery

        top_k = top_k or self.config.top_k
        if not collection_exists(self.client, self.collection):
            return []
        self._refresh_lexical()
        n = max(self.config.candidates, top_k)
        embedding = self.embedder.get_query_embedding(question)
        with store_errors("search the documents collection"):
            dense = self.vector_store.query(
                VectorStoreQuery(query_embedding=embedding, similarity_top_k=n, filters=_metadata_filters(filters))
            )
        lexical = self.lexical.search(question, n, keep=_matches(filters))
        grams = self.chargrams.search(question, n, keep=_matches(filters)) if self.chargrams is not None else []
        nodes = {node.node_id: node for node in dense.nodes}
        nodes.update({node.node_id: node for node, _ in lexical + grams})
        dense_scores = {node.node_id: float(s) for node, s in zip(dense.nodes, dense.similarities or [])}
        lexical_scores = {node.node_id: s for node, s in lexical}
        fused = reciprocal_rank_fusion(
            [[node.node_id for node in dense.nodes], [node.node_id for node, _ in lexical],
             [node.node_id for node, _ in grams]],
            k=self.config.rrf_k,
            weights=[self.config.dense_weight, self.config.lexical_weight, self.config.chargram_weight],
        )
        ranked = sorted(fused, key=lambda key: (-fused[key], key))[:top_k]
        return [self._passage(nodes[key], fused[key], dense_scores.get(key), lexical_scores.get(key)) for key in ranked]

    def dense_score(self, question: str, passages: list[Passage]) -> list[float]:
        """Cosine similarity of the question to each passage (for passages the dense side did not rank)."""
        q = np.asarray(self.embedder.get_query_embedding(question))
        return [float(np.dot(q, self.embedder.get_text_embedding(p.text))) for p in passages]

    @staticmethod
    def _passage(node, score, dense_score, lexical_score) -> Passage:
        meta = dict(node.metadata)
        return Passage(
            document_id=node.ref_doc_id or meta.get("document_id", ""),
            chunk_id=node.node_id,
            text=node.get_content(),
            score=score,
            dense_score=dense_score,
            lexical_score=lexical_score,
            start_char=node.start_char_idx,
            end_char=node.end_char_idx,
            metadata={k: v for k, v in meta.items() if k not in ("sha256", "chars", "document_id")},
        )
