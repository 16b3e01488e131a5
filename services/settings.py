"""The services' one settings class, read from the environment (and a .env file when present)."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from reprolab.rag.config import AnswerConfig, ChunkingConfig, RagConfig, RetrievalConfig


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    qdrant_url: str | None = Field(None, description="Qdrant server; unset = embedded Qdrant in qdrant_path")
    qdrant_path: str = "index/qdrant"
    docstore_path: str = "index/docstore.json"
    clip_model_dir: str | None = "models/clip"
    mistral_api_key: str | None = None
    answer_backend: str = "local"  # extractive | local (SmolLM2-135M) ; mistral when MISTRAL_API_KEY is set
    answer_max_new_tokens: int = 96
    chunk_size: int = 128
    chunk_overlap: int = 48
    top_k_default: int = 5
    top_k_max: int = 20
    max_upload_bytes: int = 5_000_000
    max_question_chars: int = 2_000
    lexical_refresh_s: float = 5.0

    def rag_config(self) -> RagConfig:
        return RagConfig(
            chunking=ChunkingConfig(chunk_size=self.chunk_size, chunk_overlap=self.chunk_overlap),
            retrieval=RetrievalConfig(top_k=self.top_k_default),
            answer=AnswerConfig(backend=self.answer_backend, max_new_tokens=self.answer_max_new_tokens),
        )


@lru_cache
def get_settings() -> Settings:
    return Settings()
