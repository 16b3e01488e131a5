"""index/manifest.json: what the index stage built and evaluated, read back by the services.

One source for every RAG setting: the stage resolves params.yaml `index.rag` and records it here with the
embedder's name and dimension; a service takes from its environment only where Qdrant is, keys, limits, and an
explicit answer-backend override, and refuses an index whose embedder or dimension differs from the record.
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from reprolab.errors import ConfigError
from reprolab.rag.config import RagConfig

ANSWER_BACKENDS = ("extractive", "local", "mistral")


class EmbedderRecord(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    dim: int = Field(gt=0)


class IndexManifest(BaseModel):
    model_config = ConfigDict(extra="allow")  # collections, documents, images: what was built, for people
    rag: RagConfig
    embedder: EmbedderRecord

    @property
    def evaluated_backend(self) -> str:
        return self.rag.answer.backend


def manifest_record(rag: RagConfig, dim: int, **built) -> dict:
    return {"rag": rag.model_dump(mode="json"), "embedder": {"name": rag.text_embedder, "dim": dim}, **built}


def load_manifest(path: str | Path) -> IndexManifest:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"no index manifest at {path}: run the index stage (`dvc repro index`) or point "
                          "INDEX_MANIFEST at the manifest of the index being served")
    try:
        return IndexManifest.model_validate(json.loads(path.read_text(encoding="utf-8")))
    except (json.JSONDecodeError, ValidationError) as e:
        raise ConfigError(f"index manifest {path} is not valid: {e}") from e


def served_config(manifest: IndexManifest, answer_backend: str | None = None) -> RagConfig:
    """The manifest's settings, with the one override a deployment may make: the answer backend."""
    if not answer_backend or answer_backend == manifest.rag.answer.backend:  # unset or empty: as evaluated
        return manifest.rag
    if answer_backend not in ANSWER_BACKENDS:
        raise ConfigError(f"ANSWER_BACKEND={answer_backend!r}: use one of {ANSWER_BACKENDS}")
    answer = manifest.rag.answer.model_copy(update={"backend": answer_backend})
    return manifest.rag.model_copy(update={"answer": answer})
