"""The query service: `uvicorn services.query.main:app`."""

from fastapi import FastAPI

from services import runtime
from services.query.routes import router

app = FastAPI(title="reprolab query", version="0.1.0", lifespan=runtime.engine_lifespan,
              description="Questions in: hybrid retrieval over Qdrant, cited answers; image search with CLIP.")
runtime.install(app)
app.include_router(router, dependencies=[runtime.ReadAccess])
