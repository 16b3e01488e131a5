"""The document collection: ingest (chunk, embed, upsert), list, get and delete, with stable ids.

All document state lives in Qdrant, in the chunks' payloads, so separate ingest and query processes (compose)
and several ingest workers see one truth: chunk 0 of a document carries its content hash, so an unchanged
document (same id, same text and metadata) is skipped and a changed one has its chunks replaced. Chunk ids
derive from (document id, chunk number), so the same text always gives the same Qdrant points.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import PurePosixPath, PureWindowsPath

from reprolab.rag.config import RagConfig
from reprolab.rag.embedding import token_counter
from reprolab.rag.errors import DocumentNotFound, IndexMismatch, InputError
from reprolab.rag.sparse import SPARSE_CHANNELS, analyzer_for
from reprolab.rag.store import (DENSE, check_reachable, collection_exists, count_points, create_documents_collection,
                                dense_size, store_errors)

log = logging.getLogger(__name__)
CHUNK_NAMESPACE = uuid.UUID("6b1e8a52-3c0f-4e53-9d77-2f1f5f0c4a10")
# Payload keys the index writes itself; user metadata cannot overwrite them.
RESERVED_METADATA = {"doc_id", "document_id", "chunk", "chunks", "text", "start_char", "end_char", "sha256",
                     "chars", "content_hash", "embedder", "metadata_keys"}


def chunk_id(doc_id: str, index: int) -> str:
    """Qdrant point ids must be UUIDs; uuid5 of (document, position) keeps them stable across runs."""
    return str(uuid.uuid5(CHUNK_NAMESPACE, f"{doc_id}#{index}"))


DOC_ID = re.compile(r"^[\w.:/@+-]{1,256}$")


def check_document_id(doc_id: str | None) -> str | None:
    """An id a URL can address: 1-256 safe characters, and no `.` or `..` path segment (clients normalise those
    away, so such a document could never be fetched or deleted again)."""
    if doc_id is None:
        return None
    if not DOC_ID.match(doc_id):
        raise InputError(f"document id {doc_id[:80]!r} is invalid: use 1-256 letters, digits and . _ : / @ + -")
    if any(part in (".", "..", "") for part in doc_id.split("/")):
        raise InputError(f"document id {doc_id[:80]!r} has an empty, '.' or '..' path segment: use a plain name")
    return doc_id


def id_from_filename(filename: str) -> str:
    """`docs/<base name>` of an uploaded file: any directory part a client sent (`../../etc/passwd.txt`,
    `C:\\Users\\x.txt`) is dropped."""
    base = PureWindowsPath(PurePosixPath(filename or "").name).name
    if base in ("", ".", ".."):
        raise InputError(f"upload file name {filename[:80]!r} has no base name: send an id")
    return f"docs/{base}"


def text_doc_id(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def content_hash(text: str, metadata: dict) -> str:
    return hashlib.sha256(json.dumps([text, metadata], sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def doc_filter(doc_id: str, from_chunk: int | None = None):
    from qdrant_client import models

    must = [models.FieldCondition(key="doc_id", match=models.MatchValue(value=doc_id))]
    if from_chunk is not None:
        must.append(models.FieldCondition(key="chunk", range=models.Range(gte=from_chunk)))
    return models.Filter(must=must)


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

    @classmethod
    def from_payload(cls, payload: dict) -> DocumentInfo:
        return cls(payload["doc_id"], payload["chars"], payload["sha256"], payload["chunks"],
                   {k: payload[k] for k in payload.get("metadata_keys", [])})


class DocumentIndex:
    """Writes of one document are serialised within a process; across processes the last writer wins whole."""

    def __init__(self, client, embedder, config: RagConfig, embedder_name: str | None = None):
        from llama_index.core.node_parser import SentenceSplitter

        self.client = client
        self.embedder = embedder
        self.embedder_name = embedder_name or config.text_embedder
        self.config = config
        self.collection = config.documents_collection
        self.analyzer = analyzer_for(config.retrieval.language, config.retrieval.ngram)
        self.splitter = SentenceSplitter(
            chunk_size=config.chunking.chunk_size,
            chunk_overlap=config.chunking.chunk_overlap,
            tokenizer=token_counter(embedder),
        )
        self._dim: int | None = None
        self._checked = False
        self._doc_locks: defaultdict[str, threading.Lock] = defaultdict(threading.Lock)
        self._doc_locks_guard = threading.Lock()

    @property
    def dim(self) -> int:
        if self._dim is None:
            self._dim = len(self.embedder.get_text_embedding("dimension probe"))
        return self._dim

    def check_collection(self) -> bool:
        """Refuse a collection written by another embedder or of another dimension (IndexMismatch); True when the
        collection exists. Checked once per process, when Qdrant first answers."""
        if self._checked:  # no round trip per query once checked (forget() when the collection went away)
            return True
        if not collection_exists(self.client, self.collection):
            return False
        size = dense_size(self.client, self.collection)
        if size != self.dim:
            raise IndexMismatch(f"collection {self.collection!r} holds dense vectors of size {size}, but the embedder "
                                f"{self.embedder_name!r} gives {self.dim}: rebuild the index or serve its manifest")
        with store_errors("read a chunk of the documents collection"):
            points, _ = self.client.scroll(self.collection, limit=1, with_payload=["embedder"])
        stored = points[0].payload.get("embedder") if points else None
        if stored is not None and stored != self.embedder_name:
            raise IndexMismatch(f"collection {self.collection!r} was embedded with {stored!r}, but this process "
                                f"embeds questions with {self.embedder_name!r}: serve the index's own manifest")
        self._checked = True
        return True

    def forget(self) -> None:
        self._checked = False

    def _ensure_collection(self) -> None:
        self.forget()  # a write looks again: the collection may have been dropped since
        if not self.check_collection():
            create_documents_collection(self.client, self.collection, self.dim)
            self._checked = True

    def _lock_for(self, doc_id: str) -> threading.Lock:
        with self._doc_locks_guard:
            return self._doc_locks[doc_id]

    def _head(self, doc_id: str) -> dict | None:
        """Chunk 0's payload: the document's record (None when there is no such document)."""
        if not collection_exists(self.client, self.collection):
            return None
        with store_errors("read the document record"):
            found = self.client.retrieve(self.collection, [chunk_id(doc_id, 0)], with_payload=True)
        return found[0].payload if found else None

    def _points(self, text: str, doc_id: str, metadata: dict, digest: str) -> list:
        from llama_index.core import Document
        from qdrant_client import models

        nodes = self.splitter.get_nodes_from_documents([Document(id_=doc_id, text=text)])
        vectors = self.embedder.get_text_embedding_batch([n.get_content() for n in nodes])
        record = {**metadata, "doc_id": doc_id, "chunks": len(nodes), "sha256": hashlib.sha256(text.encode()).hexdigest(),
                  "chars": len(text), "content_hash": digest, "embedder": self.embedder_name,
                  "metadata_keys": sorted(metadata)}
        points = []
        for i, (node, vector) in enumerate(zip(nodes, vectors)):
            content = node.get_content()
            sparse = self.analyzer.encode(content)
            named = {DENSE: vector}
            named.update({c: models.SparseVector(indices=sparse[c].indices, values=sparse[c].values)
                          for c in SPARSE_CHANNELS if sparse[c].indices})
            payload = {**record, "chunk": i, "text": content, "start_char": node.start_char_idx,
                       "end_char": node.end_char_idx}
            points.append(models.PointStruct(id=chunk_id(doc_id, i), vector=named, payload=payload))
        return points

    # --- operations ---
    def ingest(self, text: str, doc_id: str | None = None, metadata: dict | None = None) -> IngestResult:
        if not text or not text.strip():
            raise InputError("the document has no text")
        doc_id = doc_id or text_doc_id(text)
        metadata = {k: v for k, v in (metadata or {}).items() if k not in RESERVED_METADATA}
        digest = content_hash(text, metadata)
        with self._lock_for(doc_id):
            check_reachable(self.client)  # fail with 503 before anything is touched
            self._ensure_collection()
            head = self._head(doc_id)
            if head is not None and head.get("content_hash") == digest:
                status, chunks = "unchanged", head["chunks"]
            else:
                status = "updated" if head is not None else "created"
                points = self._points(text, doc_id, metadata, digest)
                try:
                    with store_errors("write the document's chunks"):
                        # One request: the new version lands whole; then the old version's extra chunks go.
                        self.client.upsert(self.collection, points=points, wait=True)
                        self.client.delete(self.collection, points_selector=doc_filter(doc_id, len(points)), wait=True)
                except Exception:
                    self._rollback(doc_id)
                    raise
                chunks = len(points)
            total = count_points(self.client, self.collection)
        log.info("ingest", extra={"document_id": doc_id, "status": status, "chunks": chunks, "points": total})
        return IngestResult(doc_id, status, chunks, total)

    def _rollback(self, doc_id: str) -> None:
        """After a failed write leave no trace of the document: no chunk, old or new."""
        log.error("ingest failed, removing the document's partial state", extra={"document_id": doc_id})
        try:
            with store_errors("roll back"):
                self.client.delete(self.collection, points_selector=doc_filter(doc_id), wait=True)
        except Exception:  # the store is down: nothing was written either
            log.exception("rollback could not reach Qdrant", extra={"document_id": doc_id})

    def list(self) -> list[DocumentInfo]:
        from qdrant_client import models

        if not collection_exists(self.client, self.collection):
            return []
        heads = models.Filter(must=[models.FieldCondition(key="chunk", match=models.MatchValue(value=0))])
        infos, offset = [], None
        with store_errors("list the documents"):
            while True:
                points, offset = self.client.scroll(self.collection, scroll_filter=heads, limit=256, offset=offset,
                                                    with_payload=True)
                infos += [DocumentInfo.from_payload(p.payload) for p in points]
                if offset is None:
                    break
        return sorted(infos, key=lambda d: d.document_id)

    def get(self, doc_id: str) -> DocumentInfo:
        head = self._head(doc_id)
        if head is None:
            raise DocumentNotFound(f"no document with id {doc_id!r}; GET /documents lists the ids")
        return DocumentInfo.from_payload(head)

    def delete(self, doc_id: str) -> int:
        with self._lock_for(doc_id):
            chunks = self.get(doc_id).chunks
            with store_errors("delete the document's chunks"):
                self.client.delete(self.collection, points_selector=doc_filter(doc_id), wait=True)
        log.info("delete", extra={"document_id": doc_id, "chunks": chunks})
        return chunks

    def points(self) -> int:
        return count_points(self.client, self.collection)
