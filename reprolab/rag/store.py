"""Qdrant connection: embedded (local folder, one client per process) by default, the server when a URL is given."""

from __future__ import annotations

import logging
from contextlib import contextmanager
from pathlib import Path

from reprolab.errors import ConfigError
from reprolab.rag.errors import StoreUnavailable

log = logging.getLogger(__name__)


def open_client(url: str | None = None, path: str | Path | None = None, timeout: float = 5.0):
    """QdrantClient for `url` (server) or `path` (embedded folder). A folder admits one client at a time."""
    from qdrant_client import QdrantClient

    if url:
        log.info("qdrant server", extra={"qdrant_url": url})
        return QdrantClient(url=url, timeout=int(timeout))
    if path is None:
        raise ConfigError("set QDRANT_URL (server) or a Qdrant folder (embedded mode)")
    Path(path).mkdir(parents=True, exist_ok=True)
    try:
        client = QdrantClient(path=str(path))
    except RuntimeError as e:  # "Storage folder ... is already accessed by another instance"
        raise ConfigError(f"Qdrant folder {path} is in use by another process: {e}") from e
    log.info("qdrant embedded", extra={"qdrant_path": str(path)})
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
