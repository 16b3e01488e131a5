"""The document collection: ingest (chunk, embed, upsert), list, get and delete, with stable ids.

An IngestionPipeline with a persisted docstore and DocstoreStrategy.UPSERTS decides what to do: an unchanged
document (same id, same hash) is skipped, a changed one has its old chunks deleted before the new ones are added.
Chunk ids derive from (document id, chunk number), so the same text always gives the same Qdrant points.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from reprolab.rag.config import RagConfig
from reprolab.rag.embedding import token_counter
from reprolab.rag.errors import DocumentNotFound, InputError
from reprolab.rag.store import check_reachable, collection_exists, count_points, store_errors

log = logging.getLogger(__name__)
CHUNK_NAMESPACE = uuid.UUID("6b1e8a52-3c0f-4e53-9d77-2f1f5f0c4a10")
RESERVED_METADATA = {"doc_id", "document_id", "sha256", "chars"}


def chunk_id(doc_id: str, index: int) -> str:
    """Qdrant point ids must be UUIDs; uuid5 of (document, position) keeps them stable across runs."""
    return str(uuid.uuid5(CHUNK_NAMESPACE, f"{doc_id}#{index}"))


def _chunk_id_func(index: int, doc) -> str:
    return chunk_id(doc.id_, index)


def text_doc_id(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


@dataclass
class IngestResult:
    document_id: str
    status: str  # created | updated | unchanged
    chunks: int
    points_total: int


@dataclass
class DocumentInfo:
    document_id: str
    chars: int
    sha256: str
    chunks: int
    metadata: dict = field(default_factory=dict)


class DocumentIndex:
    """One per process: it owns the docstore file and serialises writes."""

    def __init__(self, client, embedder, config: RagConfig, docstore_path: str | Path | None = None):
        from llama_index.core.node_parser import SentenceSplitter
        from llama_index.core.storage.docstore import SimpleDocumentStore

        self.client = client
        self.embedder = embedder
        self.config = config
        self.collection = config.documents_collection
        self.docstore_path = Path(docstore_path) if docstore_path else None
        if self.docstore_path and self.docstore_path.is_file():
            self.docstore = SimpleDocumentStore.from_persist_path(str(self.docstore_path))
        else:
            self.docstore = SimpleDocumentStore()
        self.splitter = SentenceSplitter(
            chunk_size=config.chunking.chunk_size,
            chunk_overlap=config.chunking.chunk_overlap,
            tokenizer=token_counter(embedder),
            id_func=_chunk_id_func,
        )
        self._vector_store = None
        self._write_lock = threading.Lock()
        self._doc_locks: defaultdict[str, threading.Lock] = defaultdict(threading.Lock)
        self._doc_locks_guard = threading.Lock()
        self.version = 0  # bumped on every change; the lexical index rebuilds when it moves

    # --- the vector store, created lazily so a service starts while Qdrant is still down ---
    @property
    def vector_store(self):
        if self._vector_store is None:
            from llama_index.vector_stores.qdrant import QdrantVectorStore

            with store_errors("open the documents collection"):
                # One upsert request per document (batch_size), so a document lands whole or not at all.
                self._vector_store = QdrantVectorStore(
                    collection_name=self.collection, client=self.client, batch_size=4096
                )
        return self._vector_store

    def _pipeline(self):
        from llama_index.core.ingestion import DocstoreStrategy, IngestionPipeline

        return IngestionPipeline(
            transformations=[self.splitter, self.embedder],
            docstore=self.docstore,
            vector_store=self.vector_store,
            docstore_strategy=DocstoreStrategy.UPSERTS,
            disable_cache=True,
        )

    def _lock_for(self, doc_id: str) -> threading.Lock:
        with self._doc_locks_guard:
            return self._doc_locks[doc_id]

    def _persist(self) -> None:
        if self.docstore_path is None:
            return
        self.docstore_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.docstore_path.with_name(self.docstore_path.name + ".tmp")
        self.docstore.persist(str(tmp))
        tmp.replace(self.docstore_path)

    # --- operations ---
    def ingest(self, text: str, doc_id: str | None = None, metadata: dict | None = None) -> IngestResult:
        from llama_index.core import Document

        if not text or not text.strip():
            raise InputError("the document has no text")
        doc_id = doc_id or text_doc_id(text)
        metadata = {k: v for k, v in (metadata or {}).items() if k not in RESERVED_METADATA}
        metadata.update(
            document_id=doc_id, sha256=hashlib.sha256(text.encode("utf-8")).hexdigest(), chars=len(text)
        )
        doc = Document(
            id_=doc_id,
            text=text,
            metadata=metadata,
            excluded_embed_metadata_keys=list(metadata),
            excluded_llm_metadata_keys=list(metadata),
        )
        with self._lock_for(doc_id), self._write_lock:
            check_reachable(self.client)  # fail with 503 before anything is touched
            previous = self.docstore.get_document_hash(doc_id)
            if previous == doc.hash:
                status = "unchanged"
                chunks = self._chunk_count(doc_id)
            else:
                status = "updated" if previous else "created"
                try:
                    nodes = self._pipeline().run(documents=[doc])
                except Exception:
                    self._rollback(doc_id)
                    raise
                chunks = len(nodes)
                self._persist()
                self.version += 1
            total = count_points(self.client, self.collection)
        log.info("ingest", extra={"document_id": doc_id, "status": status, "chunks": chunks, "points": total})
        return IngestResult(doc_id, status, chunks, total)

    def _rollback(self, doc_id: str) -> None:
        """After a failed write leave no trace of the document: neither chunks nor a docstore entry."""
        log.error("ingest failed, removing the document's partial state", extra={"document_id": doc_id})
        try:
            if collection_exists(self.client, self.collection):
                with store_errors("roll back"):
                    self.vector_store.delete(doc_id)
        except Exception:  # the store is down: nothing was written either
            log.exception("rollback could not reach Qdrant", extra={"document_id": doc_id})
        self.docstore.delete_document(doc_id, raise_error=False)
        self._persist()
        self.version += 1

    def _chunk_count(self, doc_id: str) -> int:
        from qdrant_client import models

        if not collection_exists(self.client, self.collection):
            return 0
        with store_errors("count chunks"):
            flt = models.Filter(must=[models.FieldCondition(key="doc_id", match=models.MatchValue(value=doc_id))])
            return self.client.count(self.collection, count_filter=flt, exact=True).count

    def list(self) -> list[DocumentInfo]:
        return [self.get(doc_id) for doc_id in sorted(self.docstore.get_all_document_hashes().values())]

    def get(self, doc_id: str) -> DocumentInfo:
        doc = self.docstore.get_document(doc_id, raise_error=False)
        if doc is None:
            raise DocumentNotFound(f"no document with id {doc_id!r}; GET /documents lists the ids")
        meta = dict(doc.metadata)
        return DocumentInfo(
            document_id=doc_id,
            chars=meta.pop("chars", len(doc.text)),
            sha256=meta.pop("sha256", ""),
            chunks=self._chunk_count(doc_id),
            metadata={k: v for k, v in meta.items() if k != "document_id"},
        )

    def text(self, doc_id: str) -> str:
        doc = self.docstore.get_document(doc_id, raise_error=False)
        if doc is None:
            raise DocumentNotFound(f"no document with id {doc_id!r}")
        return doc.text

    def delete(self, doc_id: str) -> int:
        with self._lock_for(doc_id), self._write_lock:
            if self.docstore.get_document(doc_id, raise_error=False) is None:
                raise DocumentNotFound(f"no document with id {doc_id!r}; GET /documents lists the ids")
            chunks = self._chunk_count(doc_id)
            with store_errors("delete the document's chunks"):
                self.vector_store.delete(doc_id)
            self.docstore.delete_document(doc_id, raise_error=False)
            self._persist()
            self.version += 1
        log.info("delete", extra={"document_id": doc_id, "chunks": chunks})
        return chunks

    def points(self) -> int:
        return count_points(self.client, self.collection)
