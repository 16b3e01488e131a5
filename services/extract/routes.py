"""POST /extract: a batch of messages -> one {intents, slots, confidence} per message, in order."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from reprolab.llm.serving import check_texts
from services.runtime import MetricsDep

router = APIRouter(tags=["extract"])


class ExtractIn(BaseModel):
    messages: list[Any] = Field(description="the customer messages (strings), at most EXTRACT_MAX_BATCH")


class ExtractionOut(BaseModel):
    intents: list[str]
    slots: dict[str, Any]
    confidence: float | None = Field(description="calibrated P(the whole extraction is right); null for the LLM")


class ExtractOut(BaseModel):
    design: str
    version: str
    results: list[ExtractionOut]


@router.post("/extract", response_model=ExtractOut)
async def extract(body: ExtractIn, request: Request, metrics: MetricsDep):
    """Intents and slot values of each message, with the serving model's design and version."""
    settings = request.app.state.extract_settings
    try:
        texts = check_texts(body.messages, settings.max_batch, settings.max_message_chars)
    except Exception:
        metrics.inc("extractions_total", len(body.messages) or 1, status="refused")
        raise
    served = request.app.state.served
    results = await run_in_threadpool(served.predict, texts)
    metrics.inc("extractions_total", len(texts), status="ok")
    return ExtractOut(design=served.design, version=served.version,
                      results=[ExtractionOut(intents=e.intents, slots=e.slots, confidence=c) for e, c in results])
