"""Build the collections the query service serves (documents, images), export them with the resolved settings
in the manifest (index/), then evaluate retrieval and answers on the labelled question set."""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from pathlib import Path
from typing import Literal

from pydantic import Field

from reprolab.config import StrictConfig
from reprolab.data.atomic import staged_folder, write_json
from reprolab.data.jsonl import read_jsonl
from reprolab.evaluation.rag import HALVES, RagOutcome, evaluate_rag, load_labelled_set
from reprolab.rag.config import RagConfig
from reprolab.rag.embedding import embedding_dim, load_text_embedder
from reprolab.rag.engine import RagEngine, load_clip
from reprolab.rag.images import build_image_collection
from reprolab.rag.manifest import manifest_record
from reprolab.rag.portable import export_collections, index_creators, load_collections
from reprolab.rag.store import open_client

log = logging.getLogger(__name__)


class IndexConfig(StrictConfig):
    clip_model_dir: str = "models/clip"
    image_splits: list[str] = Field(default_factory=lambda: ["train", "validation", "test"])
    labelled_set: str = "samples/qa/hotmart_labelled.json"
    labelled_document: str = "docs/como-funciona-hotmart.txt"
    # Backends scored beside the configured one (rag.answer.backend), on the reporting half only.
    compare_backends: list[Literal["extractive", "local", "mistral"]] = Field(default_factory=list)
    rag: RagConfig = RagConfig()


def build(cfg: IndexConfig, corpus: Path, splits: Path, out: Path) -> dict:
    """Write `out` from scratch: manifest.json and the collections exported as JSON lines (reprolab.rag.portable),
    built in a folder beside it that is swapped in whole at the end; returns the manifest.

    The points are computed in qdrant-client's local mode with the embedder on torch: an engine folder (Edge's
    segments are named by random UUIDs) and onnxruntime's CPU-chosen kernels would not rebuild to the same bytes."""
    image_embedder = load_clip(cfg.clip_model_dir, required=True)
    with staged_folder(out) as tmp:
        client = open_client(path=tmp / ".build", engine="local")
        engine = RagEngine(cfg.rag, client, load_text_embedder(cfg.rag.text_embedder, runtime="torch"),
                           image_embedder)
        try:
            documents = []
            for rec in sorted(read_jsonl(corpus / "docs" / "records.jsonl"), key=lambda r: r["id"]):
                text = (corpus / rec["path"]).read_text(encoding="utf-8")
                result = engine.documents.ingest(text, rec["id"], {"title": rec.get("title", ""), "path": rec["path"]})
                documents.append({"id": rec["id"], "sha256": rec["sha256"], "chunks": result.chunks})
            art = [r for split in cfg.image_splits for r in read_jsonl(splits / "art" / f"{split}.jsonl")]
            images = build_image_collection(client, image_embedder, art, corpus, cfg.rag.images_collection)
            dim = embedding_dim(engine.embedder)
            counts = export_collections(client, [cfg.rag.documents_collection, cfg.rag.images_collection], tmp)
            manifest = manifest_record(
                cfg.rag, dim,
                collections={
                    cfg.rag.documents_collection: {"points": counts[cfg.rag.documents_collection],
                                                   "embedder": cfg.rag.text_embedder, "dim": dim},
                    cfg.rag.images_collection: {"points": images, "embedder": cfg.clip_model_dir,
                                                "dim": image_embedder.dim},
                },
                documents=documents,
                images=sorted(r["id"] for r in art),
            )
        finally:
            engine.close()
        shutil.rmtree(tmp / ".build")
        write_json(tmp / "manifest.json", manifest)
    return manifest


def evaluate(cfg: IndexConfig, corpus: Path, index_dir: Path) -> tuple[list[dict], list[dict]]:
    """Ask every labelled question of the built index: the configured backend on both halves, the compared
    backends on the reporting half. Returns (evidence rows, timing rows): timing is kept out of the evidence."""
    text = (corpus / cfg.labelled_document).read_text(encoding="utf-8")
    questions = load_labelled_set(Path(cfg.labelled_set), text)
    backends = {cfg.rag.answer.backend: set(HALVES)}
    backends.update({b: {"report"} for b in cfg.compare_backends if b != cfg.rag.answer.backend})
    scratch = Path(tempfile.mkdtemp(prefix="rag-eval-"))
    engine = evaluation_engine(cfg, index_dir, scratch)
    cache: dict[str, list] = {}
    try:
        def ask(q, backend: str) -> RagOutcome:
            if q.id not in cache:  # one retrieval per question, whatever the backends
                cache[q.id] = engine.retriever.retrieve(q.question)
            passages = cache[q.id]
            t0 = time.perf_counter()
            answer = engine.answerer.answer(q.question, passages, backend=backend)
            ms = (time.perf_counter() - t0) * 1e3
            scored = answer.generated if answer.generated is not None else answer.text
            return RagOutcome([p.text for p in passages], scored, not answer.answerable, ms, answer.grounding.confident)

        rows, timings = evaluate_rag(questions, ask, backends)
    finally:
        engine.close()
        shutil.rmtree(scratch, ignore_errors=True)
    return rows, timings


def evaluation_engine(cfg: IndexConfig, index_dir: Path, scratch: Path) -> RagEngine:
    """The built index's documents in qdrant-client's local mode, loaded from its export in id order: its ties
    break in insertion order, so the evaluation repeats to the byte (Qdrant Edge orders tied points differently in
    each process). Questions are embedded on torch, as the documents were (see `build`)."""
    name = cfg.rag.documents_collection
    client = open_client(path=scratch / "qdrant", engine="local")
    try:
        load_collections(client, index_dir, index_creators(name, None))
        return RagEngine(cfg.rag, client, load_text_embedder(cfg.rag.text_embedder, runtime="torch"))
    except Exception:
        client.close()
        raise
