"""POST /query (cited answers over the documents), POST /search/images and /search/similar (CLIP)."""

from __future__ import annotations

import io

from fastapi import APIRouter, File, Form, Request, UploadFile
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from reprolab.rag.errors import InputError, PayloadTooLarge, UnprocessableDocument
from services.runtime import EngineDep, SettingsDep

router = APIRouter(tags=["query"])


class QueryIn(BaseModel):
    question: str
    top_k: int | None = Field(None, ge=1, description="passages to retrieve (default from settings)")
    filters: dict[str, str | int | float | bool] | None = Field(None, description="exact match on chunk metadata")
    generate: bool = Field(True, description="false: retrieval and grounding only, no generator")


class Citation(BaseModel):
    n: int
    document_id: str
    chunk_id: str
    text: str
    score: float = Field(description="reciprocal rank fusion of the dense and sparse rankings (Qdrant)")
    dense_score: float | None


class QueryOut(BaseModel):
    question: str
    answer: str
    answerable: bool
    backend: str = Field(description="who wrote the answer: extractive (quotes), local, mistral; none when declined")
    served_backend: str = Field(description="the backend this service runs: the index manifest's (what the stage "
                                "evaluated) unless ANSWER_BACKEND overrides it")
    generated: str | None
    cited: list[int] = Field(description="citation numbers the answer uses")
    passages: list[Citation]
    grounding: dict
    timings_ms: dict[str, float]


class ImageQueryIn(BaseModel):
    text: str
    top_k: int = Field(5, ge=1, le=50)


class ImageHitOut(BaseModel):
    id: str
    image: str
    description: str
    score: float


def _check_question(text: str, settings) -> str:
    if not text or not text.strip():
        raise InputError("the question is empty")
    if len(text) > settings.max_question_chars:
        raise PayloadTooLarge(f"the question has {len(text)} characters; the limit is {settings.max_question_chars}")
    return text.strip()


@router.post("/query", response_model=QueryOut)
async def query(body: QueryIn, request: Request):
    """Hybrid retrieval inside Qdrant (dense + sparse, RRF) and an answer that cites its passages as [n], or says plainly that the
    documents do not contain the answer."""
    # One worker-thread hop for the blocking part (embedding, Qdrant, the answer); the app state is read here
    # rather than through sync dependencies, each of which would be a thread hop of its own (bench.rag).
    engine, settings, metrics = request.app.state.engine, request.app.state.settings, request.app.state.metrics
    question = _check_question(body.question, settings)
    top_k = min(body.top_k or engine.config.retrieval.top_k, settings.top_k_max)
    result = await run_in_threadpool(engine.query, question, top_k, body.filters, generate=body.generate)
    metrics.inc("queries_total", answerable=str(result.answer.answerable).lower())
    a = result.answer
    return QueryOut(
        question=question,
        answer=a.text,
        answerable=a.answerable,
        backend=a.backend,
        served_backend=engine.answerer.backend,
        generated=a.generated,
        cited=a.citations,
        passages=[Citation(n=i, document_id=p.document_id, chunk_id=p.chunk_id, text=p.text, score=p.score,
                           dense_score=p.dense_score)
                  for i, p in enumerate(result.passages, start=1)],
        grounding={"term_coverage": a.grounding.term_coverage, "dense_score": a.grounding.dense_score,
                   "quotes": [{"n": n, "sentence": s} for n, s in a.grounding.quotes],
                   "type_gap": a.grounding.type_gap},
        timings_ms=result.timings_ms,
    )


@router.post("/search/images", response_model=list[ImageHitOut])
def search_images(body: ImageQueryIn, engine: EngineDep, settings: SettingsDep):
    """Text to images: the sample images nearest to a description in the CLIP space."""
    text = _check_question(body.text, settings)
    return [ImageHitOut(**h.__dict__) for h in engine.images.by_text(text, body.top_k)]


@router.post("/search/similar", response_model=list[ImageHitOut])
async def search_similar(engine: EngineDep, settings: SettingsDep, file: UploadFile = File(...),
                         top_k: int = Form(5, ge=1, le=50)):
    """Image to images: the sample images most similar to an uploaded one, with their descriptions."""
    from PIL import Image, UnidentifiedImageError

    data = await file.read(settings.max_upload_bytes + 1)
    if not data:
        raise InputError("the uploaded image is empty (0 bytes)")
    if len(data) > settings.max_upload_bytes:
        raise PayloadTooLarge(f"image over the {settings.max_upload_bytes} byte limit")
    try:
        image = Image.open(io.BytesIO(data))  # reads the header only: the size is known before any decoding
        if image.width * image.height > settings.max_image_pixels:
            raise PayloadTooLarge(f"image of {image.width}x{image.height} pixels is over the "
                                  f"{settings.max_image_pixels} pixel limit")
        image = image.convert("RGB")
    except Image.DecompressionBombError as e:  # PIL's own guard, before ours when the header is absurd
        raise PayloadTooLarge(f"file {file.filename!r} is refused as a decompression bomb: {e}") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise UnprocessableDocument(f"file {file.filename!r} is not a readable image: {e}") from None
    hits = await run_in_threadpool(engine.images.by_image, image, top_k)
    return [ImageHitOut(**h.__dict__) for h in hits]
