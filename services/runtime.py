"""What the apps share in a process: settings, the RagEngine (one Qdrant client), metrics; FastAPI plumbing."""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse

from reprolab import logs
from reprolab.errors import ReprolabError
from reprolab.rag.engine import RagEngine
from services.settings import Settings, get_settings

log = logging.getLogger(__name__)


class Metrics:
    """Counters for /metrics, in the Prometheus text format."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counters: Counter = Counter()

    def inc(self, name: str, value: float = 1, **labels) -> None:
        key = name + ("{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}" if labels else "")
        with self._lock:
            self.counters[key] += value

    def render(self) -> str:
        with self._lock:
            return "".join(f"reprolab_{k} {v}\n" for k, v in sorted(self.counters.items()))


def open_engine(settings: Settings) -> RagEngine:
    """Embedded Qdrant unless QDRANT_URL is set. Reaching the server is not required to start: /readyz tells."""
    return RagEngine.open(
        settings.rag_config(),
        qdrant_url=settings.qdrant_url,
        qdrant_path=None if settings.qdrant_url else settings.qdrant_path,
        docstore_path=settings.docstore_path,
        clip_model_dir=settings.clip_model_dir,
        mistral_api_key=settings.mistral_api_key,
        lexical_refresh_s=settings.lexical_refresh_s,
        # Under compose the query service runs apart from ingest: its lexical index refreshes on a timer.
        shared_documents=settings.qdrant_url is None,
    )


@asynccontextmanager
async def engine_lifespan(app: FastAPI):
    """Open the engine once per process (the combined app opens one for both routers) and close it on exit."""
    logs.configure()
    settings = get_settings()
    app.state.settings = settings
    app.state.metrics = Metrics()
    app.state.engine = open_engine(settings)
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


def install(app: FastAPI) -> None:
    """Error mapping (a ReprolabError carries its status; anything else is a 500 without a traceback in the
    body), request metrics, health, readiness and metrics endpoints."""

    @app.exception_handler(ReprolabError)
    async def reprolab_error(request: Request, exc: ReprolabError):
        status = getattr(exc, "status", 500)
        log.warning("request failed", extra={"path": request.url.path, "status": status, "error": str(exc)})
        return JSONResponse({"detail": str(exc), "error": type(exc).__name__}, status_code=status)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError):
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        return JSONResponse({"detail": f"invalid request: {problems}", "error": "ValidationError"}, status_code=422)

    @app.middleware("http")
    async def count_requests(request: Request, call_next):
        start = time.perf_counter()
        response = await call_next(request)
        metrics = getattr(request.app.state, "metrics", None)
        if metrics is not None:
            route = request.scope.get("route")
            path = getattr(route, "path", "unmatched")
            metrics.inc("http_requests_total", method=request.method, path=path, status=response.status_code)
            metrics.inc("http_request_seconds_sum", time.perf_counter() - start, path=path)
        return response

    @app.get("/healthz", tags=["ops"])
    def healthz():
        """Liveness: the process answers."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["ops"])
    def readyz(engine: EngineDep):
        """Readiness: Qdrant answers (503 otherwise)."""
        from reprolab.rag.store import check_reachable

        check_reachable(engine.client)
        return {"status": "ready", "points": engine.documents.points()}

    @app.get("/metrics", tags=["ops"], response_class=PlainTextResponse)
    def metrics(metrics: MetricsDep):
        return metrics.render()
