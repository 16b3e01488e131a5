"""The extraction service: `uvicorn services.extract.main:app`. Customer messages in, intents and slots out.

Serves whatever design models/llm holds (its manifest.json: hybrid or llm), with the model version on every
answer and in the `reprolab_model_info` metric; health, readiness and metrics come from services.runtime.
"""

from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from services import runtime
from services.extract.routes import router


class ExtractSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="EXTRACT_", extra="ignore", protected_namespaces=())

    model_dir: str = Field("models/llm", description="the directory the finetune_mistral stage wrote")
    max_batch: int = Field(64, ge=1, le=256)
    max_message_chars: int = Field(2000, ge=1, le=2000)


@asynccontextmanager
async def lifespan(app: FastAPI):
    from reprolab.llm.system import load_served

    runtime.start(app)
    settings = ExtractSettings()
    app.state.extract_settings = settings
    app.state.served = load_served(Path(settings.model_dir))
    app.state.metrics.serving(f"extractor-{app.state.served.design}", app.state.served.version)
    yield


def readiness(request: Request) -> dict:
    served = request.app.state.served
    return {"status": "ready", "design": served.design, "version": served.version}


app = FastAPI(title="reprolab extract", version="0.1.0", lifespan=lifespan,
              description="Structured extraction (NLU++ intents and slots) from customer messages.")
runtime.install(app, readiness=readiness, service="extract")
app.include_router(router, dependencies=[runtime.ReadAccess])
