"""The embedding service: `uvicorn services.embed.main:app`. CLIP vectors by model version, side by side."""

from contextlib import asynccontextmanager

from fastapi import FastAPI, Request

from services import runtime
from services.embed.routes import router
from services.embed.versions import ModelSet, parse_deprecations


@asynccontextmanager
async def lifespan(app: FastAPI):
    settings = runtime.start(app)
    app.state.models = ModelSet.load(settings.embed_model_dirs(), parse_deprecations(settings.embed_sunsets()),
                                     settings.dvc_lock_path, settings.embed_default_version)
    for served in app.state.models.models.values():
        app.state.metrics.serving(served.model_name, served.version)
    yield


def readiness(request: Request) -> dict:
    models = request.app.state.models
    return {"status": "ready", "versions": list(models.models), "default": models.default}


app = FastAPI(title="reprolab embed", version="0.1.0", lifespan=lifespan,
              description="CLIP image and text embeddings, by model version.")
runtime.install(app, readiness=readiness)
app.include_router(router, dependencies=[runtime.ReadAccess])
