"""What the apps share in a process: settings, metrics (prometheus-client), API keys, the RagEngine; FastAPI plumbing.

Every service calls `install(app)` and gets, for free: error mapping, request counts and latency histograms per
route and status, a model-version info metric, /healthz, /readyz and /metrics. Routes guard themselves with
`dependencies=[WriteAccess]` or `[ReadAccess]`; keys come from WRITE_API_KEYS / READ_API_KEYS (comma-separated,
several at once so a key can rotate) and are compared with hmac.compare_digest. Without WRITE_API_KEYS writes are
refused (503), never open; without READ_API_KEYS reads are open. No key is ever logged.
"""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from reprolab import logs
from reprolab.errors import ReprolabError
from reprolab.rag.engine import RagEngine
from reprolab.rag.manifest import load_manifest
from reprolab.rag.portable import COLLECTIONS, index_creators, materialize
from services.settings import Settings, get_settings

log = logging.getLogger(__name__)

PREFIX = "reprolab"
# Latency buckets (seconds): embedding a batch or answering with a local LLM takes up to tens of seconds.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
# The domain counters a service may increment, declared once: name (without prefix) -> (help, label names).
DOMAIN_COUNTERS: dict[str, tuple[str, tuple[str, ...]]] = {
    "documents_ingested_total": ("Documents ingested, by outcome (created | updated | unchanged)", ("status",)),
    "documents_deleted_total": ("Documents deleted", ()),
    "chunks_ingested_total": ("Chunks written to Qdrant by ingests that changed a document", ()),
    "queries_total": ("Questions answered, by whether the documents held the answer", ("answerable",)),
    "embeddings_total": ("Vectors served by the embedding service, by input kind and model version",
                         ("kind", "version")),
    "extractions_total": ("Messages run through the extractor, by outcome", ("status",)),
}


class Metrics:
    """One Prometheus registry per app: HTTP metrics, the model-version info metric and the domain counters."""

    def __init__(self, service: str) -> None:
        self.service = service
        self.registry = CollectorRegistry()
        self.requests = Counter(f"{PREFIX}_http_requests", "HTTP requests by route and status",
                                ("method", "route", "status"), registry=self.registry)
        self.latency = Histogram(f"{PREFIX}_http_request_duration_seconds", "HTTP request latency by route",
                                 ("method", "route", "status"), buckets=LATENCY_BUCKETS, registry=self.registry)
        self.model = Gauge(f"{PREFIX}_model_info", "The model versions this process serves (value 1 per row)",
                           ("service", "model", "version"), registry=self.registry)
        self.counters = {
            name: Counter(f"{PREFIX}_{name.removesuffix('_total')}", doc, labels, registry=self.registry)
            for name, (doc, labels) in DOMAIN_COUNTERS.items()
        }

    def inc(self, name: str, value: float = 1, **labels) -> None:
        """Increment a declared domain counter (DOMAIN_COUNTERS); an undeclared name is a programming error."""
        if name not in self.counters:
            raise KeyError(f"metric {name!r} is not declared in services.runtime.DOMAIN_COUNTERS")
        counter = self.counters[name]
        (counter.labels(**{k: str(v) for k, v in labels.items()}) if labels else counter).inc(value)

    def serving(self, model: str, version: str) -> None:
        self.model.labels(service=self.service, model=model, version=version).set(1)

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(method, route, str(status)).observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)


# ---- API keys ---------------------------------------------------------------------------------------------

_bearer = HTTPBearer(auto_error=False)


class AuthError(ReprolabError):
    """A request without a valid key: 401 (none given) or 403 (wrong key). The message never holds the key."""

    def __init__(self, message: str, status: int):
        super().__init__(message)
        self.status = status


def key_matches(given: str, allowed: tuple[str, ...]) -> bool:
    """Constant-time comparison against every allowed key (no early exit that would time which one matched)."""
    matched = False
    for key in allowed:
        matched |= hmac.compare_digest(given.encode("utf-8"), key.encode("utf-8"))
    return matched


def _check_key(request: Request, credentials: HTTPAuthorizationCredentials | None, allowed: tuple[str, ...],
               access: str) -> None:
    if not allowed:
        return
    if credentials is None or credentials.scheme.lower() != "bearer" or not credentials.credentials:
        log.warning("request refused", extra={"path": request.url.path, "access": access, "reason": "no key"})
        raise AuthError(f"{access} access needs an API key: send 'Authorization: Bearer <key>'", 401)
    if not key_matches(credentials.credentials, allowed):
        log.warning("request refused", extra={"path": request.url.path, "access": access, "reason": "wrong key"})
        raise AuthError(f"the API key is not valid for {access} access", 403)


WRITES_DISABLED = "writes disabled: set WRITE_API_KEYS (comma-separated bearer keys) to ingest or delete"


def require_write(request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]):
    """Ingest and delete: a key from WRITE_API_KEYS; with none configured every write is refused (503), so a
    forgotten variable closes the service instead of opening it."""
    allowed = request.app.state.settings.write_keys()
    if not allowed:
        log.warning("request refused", extra={"path": request.url.path, "access": "write",
                                               "reason": "WRITE_API_KEYS not set"})
        raise AuthError(WRITES_DISABLED, 503)
    _check_key(request, credentials, allowed, "write")


def require_read(request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]):
    """Query, extract, embed: a key from READ_API_KEYS or WRITE_API_KEYS when READ_API_KEYS is set."""
    settings = request.app.state.settings
    allowed = settings.read_keys()
    _check_key(request, credentials, allowed + settings.write_keys() if allowed else (), "read")


WriteAccess = Depends(require_write)
ReadAccess = Depends(require_read)


# ---- the RAG engine (ingest, query) ------------------------------------------------------------------------

def open_engine(settings: Settings) -> RagEngine:
    """The index stage's manifest decides what is served; embedded Qdrant unless QDRANT_URL is set. Reaching the
    server is not required to start (/readyz tells); an index of another embedder or dimension is refused."""
    if not settings.qdrant_url:
        materialize_index(settings)
    return RagEngine.serve(
        settings.index_manifest, answer_backend=settings.answer_backend,
        qdrant_url=settings.qdrant_url, qdrant_path=None if settings.qdrant_url else settings.qdrant_path,
        qdrant_api_key=settings.qdrant_api_key, clip_model_dir=settings.clip_model_dir,
        mistral_api_key=settings.mistral_api_key, mistral_url=settings.mistral_url,
    )


def materialize_index(settings: Settings) -> None:
    """Embedded mode serves QDRANT_PATH, built from the collections the index stage exported beside its manifest
    (reprolab.rag.portable): once per export, so documents ingested since then stay until a new index arrives."""
    index_dir = Path(settings.index_manifest).parent
    if not (index_dir / COLLECTIONS).is_dir():
        log.warning("no exported collections beside the index manifest: serving the Qdrant folder as it is",
                    extra={"index_manifest": settings.index_manifest, "qdrant_path": settings.qdrant_path})
        return
    rag = load_manifest(settings.index_manifest).rag
    images = rag.images_collection if (index_dir / COLLECTIONS / f"{rag.images_collection}.jsonl").is_file() else None
    if materialize(index_dir, Path(settings.qdrant_path), index_creators(rag.documents_collection, images)):
        log.info("index materialized", extra={"index": str(index_dir), "qdrant_path": settings.qdrant_path})


def start(app: FastAPI) -> Settings:
    """What every lifespan does first: logging, settings on app.state."""
    logs.configure()
    settings = get_settings()
    app.state.settings = settings
    return settings


@asynccontextmanager
async def engine_lifespan(app: FastAPI):
    """Open the engine once per process (the combined app opens one for both routers) and close it on exit."""
    settings = start(app)
    if not settings.write_keys():  # the RAG apps are where ingest and delete live
        log.warning("WRITE_API_KEYS is not set: ingest and delete answer 503 until it is")
    app.state.engine = open_engine(settings)
    app.state.metrics.serving(app.state.engine.config.text_embedder, "packaged")
    try:
        yield
    finally:
        app.state.engine.close()
        log.info("engine closed")


def get_engine(request: Request) -> RagEngine:
    return request.app.state.engine


def get_app_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_metrics(request: Request) -> Metrics:
    return request.app.state.metrics


EngineDep = Annotated[RagEngine, Depends(get_engine)]
SettingsDep = Annotated[Settings, Depends(get_app_settings)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]


def engine_readiness(request: Request) -> dict:
    """Readiness of the RAG services: Qdrant answers (503 otherwise)."""
    from reprolab.rag.store import check_reachable

    engine = get_engine(request)
    check_reachable(engine.client)
    return {"status": "ready", "points": engine.documents.points()}


def install(app: FastAPI, readiness: Callable[[Request], dict] = engine_readiness, service: str | None = None) -> None:
    """Error mapping (a ReprolabError carries its status; anything else is a 500 without a traceback in the
    body), request metrics, health, readiness and metrics endpoints."""
    app.state.metrics = Metrics(service or app.title.removeprefix("reprolab ").replace(" ", ""))

    @app.exception_handler(ReprolabError)
    async def reprolab_error(request: Request, exc: ReprolabError):
        status = getattr(exc, "status", 500)
        if not isinstance(exc, AuthError):  # refusals are logged where they happen, without the key
            log.warning("request failed", extra={"path": request.url.path, "status": status, "error": str(exc)})
        headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
        return JSONResponse({"detail": str(exc), "error": type(exc).__name__}, status_code=status, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError):
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        return JSONResponse({"detail": f"invalid request: {problems}", "error": "ValidationError"}, status_code=422)

    @app.middleware("http")
    async def observe_requests(request: Request, call_next):
        start_s = time.perf_counter()
        status = 500
        try:
            response = await call_next(request)
            status = response.status_code
            return response
        finally:
            # The route template (/documents/{doc_id:path}), never the raw path: bounded label values.
            route = getattr(request.scope.get("route"), "path", "unmatched")
            app.state.metrics.observe(request.method, route, status, time.perf_counter() - start_s)

    @app.get("/healthz", tags=["ops"])
    def healthz():
        """Liveness: the process answers."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["ops"])
    def readyz(request: Request):
        """Readiness: what the service depends on answers (503 otherwise)."""
        return readiness(request)

    @app.get("/metrics", tags=["ops"])
    def metrics(request: Request):
        """Prometheus text exposition format."""
        return Response(get_metrics(request).render(), media_type=CONTENT_TYPE_LATEST)
