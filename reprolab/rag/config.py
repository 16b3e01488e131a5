"""Settings of the RAG library; params.yaml `index` (the stage) and the services' environment both fill them."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from reprolab.config import StrictConfig

PACKAGED_TEXT_EMBEDDER = "packaged:all-MiniLM-L6-v2"


class ChunkingConfig(StrictConfig):
    chunk_size: int = Field(128, gt=16, description="tokens of the embedder's own tokenizer")
    chunk_overlap: int = Field(48, ge=0)


class RetrievalConfig(StrictConfig):
    top_k: int = Field(5, ge=1, le=50)
    candidates: int = Field(20, ge=1, description="hits taken from each retriever before fusion")
    rrf_k: int = Field(10, ge=1, description="reciprocal rank fusion constant (small: top ranks dominate)")
    # The packaged embedder is English and the sample Portuguese: the dense ranking counts half.
    dense_weight: float = 0.5
    lexical_weight: float = 1.0
    chargram_weight: float = Field(1.0, ge=0, description="character n-gram BM25 channel; 0 turns it off")
    ngram: int = Field(4, ge=2, le=8)
    language: str = "portuguese"  # PyStemmer language and bm25s stopwords


class AnswerConfig(StrictConfig):
    backend: Literal["extractive", "local", "mistral"] = "local"
    local_model: str = "smollm2-135m-instruct"
    mistral_model: str = "mistral-small-latest"
    max_new_tokens: int = Field(96, ge=1)
    quote_sentences: int = Field(3, ge=1, description="best-matching sentences quoted as grounded evidence")
    # "Not in the documents" is decided from retrieval evidence, never from the generator's text alone:
    # the share of the question's content terms (stemmed) found in the best passage, and the best dense score.
    min_term_coverage: float = Field(0.5, ge=0, le=1)
    min_dense_score: float = Field(0.25, ge=-1, le=1)


class RagConfig(StrictConfig):
    text_embedder: str = PACKAGED_TEXT_EMBEDDER
    documents_collection: str = "documents"
    images_collection: str = "images"
    chunking: ChunkingConfig = ChunkingConfig()
    retrieval: RetrievalConfig = RetrievalConfig()
    answer: AnswerConfig = AnswerConfig()
