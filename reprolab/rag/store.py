"""Qdrant connection: embedded (Qdrant Edge shards in a folder, one client per process) by default, the server
when a URL is given."""

from __future__ import annotations

import logging
import warnings
from contextlib import contextmanager
from pathlib import Path

from reprolab.errors import ConfigError
from reprolab.rag.errors import StoreUnavailable

log = logging.getLogger(__name__)


def open_client(url: str | None = None, path: str | Path | None = None, timeout: float = 5.0,
                api_key: str | None = None, engine: str = "edge"):
    """QdrantClient for `url` (server, with its API key if any), or for `path` an embedded engine, one process at
    a time: `edge` (EdgeClient: Qdrant Edge, the Rust engine, for serving) or `local` (qdrant-client's local mode:
    scores sparse vectors in Python, point by point, but breaks ties in insertion order, so the index stage's
    evaluation repeats to the byte; Edge orders tied points differently from one process to the next)."""
    from qdrant_client import QdrantClient

    from reprolab.rag.edge import EdgeClient

    if url:
        log.info("qdrant server", extra={"qdrant_url": url})
        return QdrantClient(url=url, api_key=api_key, timeout=int(timeout))
    if path is None:
        raise ConfigError("set QDRANT_URL (server) or a Qdrant folder (embedded mode)")
    Path(path).mkdir(parents=True, exist_ok=True)
    if engine not in ("edge", "local"):
        raise ConfigError(f"embedded Qdrant engine {engine!r}: use 'edge' or 'local'")
    try:
        client = EdgeClient(path) if engine == "edge" else QdrantClient(path=str(path))
    except RuntimeError as e:  # "Storage folder ... is already accessed by another instance"
        raise ConfigError(f"Qdrant folder {path} is in use by another process: {e}") from e
    log.info("qdrant embedded", extra={"qdrant_path": str(path), "engine": engine})
    return client


def _unavailable_errors() -> tuple[type[BaseException], ...]:
    import httpx
    from qdrant_client.http.exceptions import ResponseHandlingException

    return (ResponseHandlingException, httpx.TransportError, ConnectionError, TimeoutError)


@contextmanager
def store_errors(action: str):
    """Turn a connection failure into StoreUnavailable (a 503), naming what could not be done."""
    try:
        yield
    except _unavailable_errors() as e:
        raise StoreUnavailable(f"Qdrant is unreachable, could not {action}: {e}") from e


def check_reachable(client) -> None:
    with store_errors("list collections"):
        client.get_collections()


def collection_exists(client, name: str) -> bool:
    with store_errors(f"look up collection {name!r}"):
        return client.collection_exists(name)


def count_points(client, name: str) -> int:
    if not collection_exists(client, name):
        return 0
    with store_errors(f"count points of {name!r}"):
        return client.count(name, exact=True).count


DENSE = "dense"


def create_documents_collection(client, name: str, dim: int) -> None:
    """The documents collection: a named dense vector (cosine) and the sparse channels with Qdrant's IDF
    modifier, so the lexical weights follow the collection as documents come and go."""
    from qdrant_client import models

    from reprolab.rag.sparse import SPARSE_CHANNELS

    with store_errors(f"create collection {name!r}"):
        client.create_collection(
            name,
            vectors_config={DENSE: models.VectorParams(size=dim, distance=models.Distance.COSINE)},
            sparse_vectors_config={c: models.SparseVectorParams(modifier=models.Modifier.IDF) for c in SPARSE_CHANNELS},
        )
        with warnings.catch_warnings():  # embedded mode warns that payload indexes do nothing there
            warnings.simplefilter("ignore", UserWarning)
            for key, schema in (("doc_id", models.PayloadSchemaType.KEYWORD),
                                ("chunk", models.PayloadSchemaType.INTEGER)):
                client.create_payload_index(name, key, field_schema=schema)
    log.info("documents collection created", extra={"collection": name, "dim": dim})


def dense_size(client, name: str) -> int | None:
    """The dense vector size of an existing documents collection; None when it has no named dense vector."""
    with store_errors(f"read the configuration of {name!r}"):
        vectors = client.get_collection(name).config.params.vectors
    if isinstance(vectors, dict) and DENSE in vectors:
        return vectors[DENSE].size
    return None
