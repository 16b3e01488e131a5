"""The services' one settings class, read from the environment (and a .env file when present)."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from reprolab.errors import ConfigError


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    qdrant_url: str | None = Field(None, description="Qdrant server; unset = embedded Qdrant in qdrant_path")
    # Embedded mode: the served folder, materialized from the index stage's export (index/collections) at start.
    qdrant_path: str = ".serve/qdrant"
    # What the RAG services serve comes from the index stage's record (embedder, chunking, retrieval, answer);
    # the environment adds only where things are, keys, limits, and an explicit answer-backend override.
    index_manifest: str = "index/manifest.json"
    answer_backend: str | None = Field(None, description="override of the manifest's (evaluated) answer backend")
    clip_model_dir: str | None = "models/clip"
    mistral_api_key: str | None = Field(None, repr=False)
    mistral_url: str | None = Field(None, description="Mistral API server (default the public one)")
    top_k_max: int = 20
    max_upload_bytes: int = 5_000_000
    max_question_chars: int = 2_000
    max_image_pixels: int = Field(25_000_000, ge=1, description="image search uploads over this are refused")
    qdrant_api_key: str | None = Field(None, repr=False, description="the Qdrant server's QDRANT__SERVICE__API_KEY")

    # Who may write (ingest, delete) and read (query, extract, embed): comma-separated bearer keys, several at
    # once so a key can rotate. No write key: writes are refused (503). No read key: reads are open.
    write_api_keys: str = Field("", repr=False)
    read_api_keys: str = Field("", repr=False)

    # The embedding service. EMBED_MODELS="v2026.11.0=/models/clip-a,v2026.12.0=/models/clip-b" serves several
    # versions side by side; unset, it serves CLIP_MODEL_DIR as EMBED_MODEL_VERSION (else the md5 of
    # models/clip in DVC_LOCK_PATH). EMBED_DEPRECATED="v2026.11.0=2026-12-01/2027-01-31" marks a version deprecated
    # since a date, with its sunset date (Deprecation and Sunset headers on its answers).
    embed_models: str = ""
    embed_model_version: str | None = None
    embed_default_version: str | None = None
    embed_deprecated: str = ""
    dvc_lock_path: str = "dvc.lock"
    embed_max_batch: int = Field(32, ge=1)
    embed_max_text_chars: int = Field(2_000, ge=1)
    embed_max_image_bytes: int = Field(10_000_000, ge=1)
    embed_max_image_pixels: int = Field(25_000_000, ge=1)  # 5000x5000; a decompression bomb is refused before decoding

    def write_keys(self) -> tuple[str, ...]:
        return _keys(self.write_api_keys)

    def read_keys(self) -> tuple[str, ...]:
        return _keys(self.read_api_keys)

    def embed_model_dirs(self) -> dict[str, str]:
        """{version: model dir} from EMBED_MODELS, or {"": CLIP_MODEL_DIR} (version to be resolved) when unset."""
        if not self.embed_models.strip():
            return {self.embed_model_version or "": self.clip_model_dir or "models/clip"}
        return _pairs("EMBED_MODELS", self.embed_models)

    def embed_sunsets(self) -> dict[str, str]:
        return _pairs("EMBED_DEPRECATED", self.embed_deprecated) if self.embed_deprecated.strip() else {}


def _keys(value: str) -> tuple[str, ...]:
    return tuple(k.strip() for k in value.split(",") if k.strip())


def _pairs(name: str, value: str) -> dict[str, str]:
    """'a=x,b=y' -> {a: x, b: y}; a malformed item is a ConfigError naming the variable and the item."""
    pairs = {}
    for item in (i.strip() for i in value.split(",")):
        key, sep, val = item.partition("=")
        if not item or not sep or not key.strip() or not val.strip():
            raise ConfigError(f"{name}: item {item!r} is not NAME=VALUE (e.g. v2026.12.0=/models/clip)")
        if key.strip() in pairs:
            raise ConfigError(f"{name}: {key.strip()!r} is listed twice")
        pairs[key.strip()] = val.strip()
    return pairs


@lru_cache
def get_settings() -> Settings:
    return Settings()
