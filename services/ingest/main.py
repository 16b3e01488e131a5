"""The ingest service: `uvicorn services.ingest.main:app`."""

from fastapi import FastAPI

from services import runtime
from services.ingest.routes import router

app = FastAPI(title="reprolab ingest", version="0.1.0", lifespan=runtime.engine_lifespan,
              description="Documents in: extract, chunk, embed, upsert into Qdrant.")
runtime.install(app)
app.include_router(router)
