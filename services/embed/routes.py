"""POST /embed/text and /embed/image: L2-normalised float32 vectors of a named (or the default) model version."""

from __future__ import annotations

import io
import warnings

from fastapi import APIRouter, File, Form, Request, Response, UploadFile
from PIL import Image, UnidentifiedImageError
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from reprolab.rag.errors import InputError, PayloadTooLarge
from services.embed.versions import ModelSet, ServedModel
from services.runtime import MetricsDep, SettingsDep

router = APIRouter(tags=["embeddings"])


class TextsIn(BaseModel):
    texts: list[str] = Field(description="the texts to embed, at most EMBED_MAX_BATCH")
    version: str | None = Field(None, description="the model version the client indexed with; default: newest")


class EmbeddingsOut(BaseModel):
    model: str
    version: str
    dim: int
    vectors: list[list[float]] = Field(description="one L2-normalised float32 vector per input, in input order")


class VersionOut(BaseModel):
    version: str
    model: str
    dim: int
    default: bool
    deprecated_since: str | None = None
    sunset: str | None = None


def _models(request: Request) -> ModelSet:
    return request.app.state.models


def _answer(response: Response, served: ServedModel, vectors) -> EmbeddingsOut:
    response.headers["X-Model-Version"] = served.version
    if served.deprecation is not None:
        response.headers.update(served.deprecation.headers())
    return EmbeddingsOut(model=served.model_name, version=served.version, dim=served.embedder.dim,
                         vectors=vectors.tolist())


def _check_batch(n: int, limit: int, what: str) -> None:
    if n == 0:
        raise InputError(f"empty batch: send at least one {what}")
    if n > limit:
        raise PayloadTooLarge(f"batch of {n} {what}s is over the limit of {limit}: split it")


def decode_image(data: bytes, name: str, max_pixels: int) -> Image.Image:
    """Decode an upload to RGB; the pixel count is checked from the header, before any pixel is decoded."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            width, height = image.size
            if width * height > max_pixels:
                raise PayloadTooLarge(f"image {name!r} is {width}x{height} pixels, over the limit of {max_pixels}")
            return image.convert("RGB")
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise PayloadTooLarge(f"image {name!r} is refused as a decompression bomb: {e}") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        raise InputError(f"file {name!r} is not an image that can be decoded: {e}") from None


@router.post("/embed/text", response_model=EmbeddingsOut)
async def embed_text(body: TextsIn, request: Request, response: Response, settings: SettingsDep,
                     metrics: MetricsDep):
    """Embed texts with the named version (default: the newest served)."""
    _check_batch(len(body.texts), settings.embed_max_batch, "text")
    for i, text in enumerate(body.texts):
        if not text.strip():
            raise InputError(f"texts[{i}] is empty")
        if len(text) > settings.embed_max_text_chars:
            raise PayloadTooLarge(f"texts[{i}] has {len(text)} characters, over the {settings.embed_max_text_chars}")
    served = _models(request).get(body.version)
    vectors = await run_in_threadpool(served.embedder.encode_texts, body.texts)
    metrics.inc("embeddings_total", len(body.texts), kind="text", version=served.version)
    return _answer(response, served, vectors)


@router.post("/embed/image", response_model=EmbeddingsOut)
async def embed_image(request: Request, response: Response, settings: SettingsDep, metrics: MetricsDep,
                      files: list[UploadFile] = File(description="images, at most EMBED_MAX_BATCH"),
                      version: str | None = Form(None)):
    """Embed a batch of uploaded images (multipart, repeated `files` parts) with the named version."""
    _check_batch(len(files), settings.embed_max_batch, "image")
    served = _models(request).get(version)
    images = []
    for upload in files:
        data = await upload.read(settings.embed_max_image_bytes + 1)
        if len(data) > settings.embed_max_image_bytes:
            raise PayloadTooLarge(f"file {upload.filename!r} is over the {settings.embed_max_image_bytes} byte limit")
        images.append(decode_image(data, upload.filename or "(unnamed)", settings.embed_max_image_pixels))
    vectors = await run_in_threadpool(served.embedder.encode_images, images)
    metrics.inc("embeddings_total", len(images), kind="image", version=served.version)
    return _answer(response, served, vectors)


@router.get("/versions", response_model=list[VersionOut])
def versions(request: Request):
    """The versions served here; clients pin one of them."""
    models = _models(request)
    return [VersionOut(version=m.version, model=m.model_name, dim=m.embedder.dim, default=m.version == models.default,
                       deprecated_since=m.deprecation and m.deprecation.since.isoformat(),
                       sunset=m.deprecation and m.deprecation.sunset.isoformat())
            for m in models.models.values()]
