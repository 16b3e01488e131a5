"""Ingest and query in ONE process sharing one engine (an embedded Qdrant folder admits one client):
`make serve`, and the end-to-end tests. Compose runs the two apps apart against the Qdrant server."""

from fastapi import FastAPI

from services import runtime
from services.ingest.routes import router as ingest_router
from services.query.routes import router as query_router

app = FastAPI(title="reprolab ingest + query", version="0.1.0", lifespan=runtime.engine_lifespan)
runtime.install(app)
app.include_router(ingest_router)
app.include_router(query_router, dependencies=[runtime.ReadAccess])
