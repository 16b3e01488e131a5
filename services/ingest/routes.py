"""POST/GET/DELETE /documents: extract, chunk, embed and upsert documents into Qdrant."""

from __future__ import annotations

import json

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field, ValidationError
from starlette.concurrency import run_in_threadpool

from reprolab.rag.errors import InputError, PayloadTooLarge, UnsupportedType
from reprolab.rag.documents import check_document_id, id_from_filename
from reprolab.rag.extract import extract_text
from services.runtime import EngineDep, MetricsDep, ReadAccess, SettingsDep, WriteAccess

router = APIRouter(tags=["documents"])


class DocumentIn(BaseModel):
    text: str
    metadata: dict = Field(default_factory=dict)
    id: str | None = None


class IngestOut(BaseModel):
    document_id: str
    status: str = Field(description="created | updated | unchanged")
    chunks: int
    points_total: int


class DocumentOut(BaseModel):
    document_id: str
    chars: int
    sha256: str
    chunks: int
    metadata: dict


def _check_id(doc_id: str | None) -> str | None:
    return check_document_id(doc_id)


async def _read_upload(request: Request, limit: int) -> tuple[str, str | None, dict]:
    form = await request.form(max_files=1, max_fields=10, max_part_size=limit + 1)
    upload = form.get("file")
    if upload is None or isinstance(upload, str):
        raise InputError("multipart upload without a 'file' part: send the document as file=@name.txt")
    data = await upload.read(limit + 1)
    if len(data) > limit:
        raise PayloadTooLarge(f"file {upload.filename!r} is over the {limit} byte limit")
    text = await run_in_threadpool(extract_text, data, upload.filename or "", upload.content_type)
    try:
        metadata = json.loads(form.get("metadata") or "{}")
    except json.JSONDecodeError as e:
        raise InputError(f"metadata is not valid JSON: {e}") from None
    if not isinstance(metadata, dict):
        raise InputError("metadata must be a JSON object")
    metadata.setdefault("filename", upload.filename)
    doc_id = form.get("id") or id_from_filename(upload.filename or "")
    return text, doc_id, metadata


async def _read_json(request: Request, limit: int) -> tuple[str, str | None, dict]:
    try:
        body = DocumentIn.model_validate_json(await request.body())
    except ValidationError as e:
        problems = "; ".join(f"{'.'.join(str(p) for p in err['loc']) or 'body'}: {err['msg']}" for err in e.errors())
        raise InputError(f"JSON body must be {{text, metadata?, id?}}: {problems}") from None
    if not body.text.strip():
        raise InputError("'text' is empty")
    return body.text, body.id, body.metadata


@router.post("/documents", response_model=IngestOut, status_code=200, dependencies=[WriteAccess],
             openapi_extra={"requestBody": {"content": {
                 "multipart/form-data": {"schema": {"type": "object", "required": ["file"], "properties": {
                     "file": {"type": "string", "format": "binary", "description": ".txt .md .html .pdf"},
                     "id": {"type": "string"}, "metadata": {"type": "string", "description": "JSON object"}}}},
                 "application/json": {"schema": DocumentIn.model_json_schema()}}}})
async def ingest_document(request: Request, engine: EngineDep, settings: SettingsDep, metrics: MetricsDep):
    """Ingest a document (multipart file upload, or JSON {text, metadata, id}). Same id and content: nothing
    changes (`unchanged`); same id, new content: its chunks are replaced (`updated`)."""
    limit = settings.max_upload_bytes
    declared = request.headers.get("content-length")
    if declared is not None and int(declared) == 0:
        raise InputError("empty request body: upload a file (multipart) or send JSON {text, metadata}")
    if declared is not None and int(declared) > limit + 64 * 1024:  # room for multipart framing
        raise PayloadTooLarge(f"request of {declared} bytes is over the {limit} byte limit")
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "multipart/form-data":
        text, doc_id, metadata = await _read_upload(request, limit)
    elif content_type == "application/json":
        text, doc_id, metadata = await _read_json(request, limit)
        if len(text.encode("utf-8")) > limit:
            raise PayloadTooLarge(f"text of {len(text.encode('utf-8'))} bytes is over the {limit} byte limit")
    else:
        raise UnsupportedType(
            f"content type {content_type or '(none)'!r} is not accepted: use multipart/form-data or application/json"
        )
    result = await run_in_threadpool(engine.documents.ingest, text, _check_id(doc_id), metadata)
    metrics.inc("documents_ingested_total", status=result.status)
    metrics.inc("chunks_ingested_total", result.chunks if result.status != "unchanged" else 0)
    return IngestOut(**result.__dict__)


@router.get("/documents", response_model=list[DocumentOut], dependencies=[ReadAccess])
def list_documents(engine: EngineDep):
    return [DocumentOut(**d.__dict__) for d in engine.documents.list()]


@router.get("/documents/{doc_id:path}", response_model=DocumentOut, dependencies=[ReadAccess])
def get_document(doc_id: str, engine: EngineDep):
    return DocumentOut(**engine.documents.get(doc_id).__dict__)


@router.delete("/documents/{doc_id:path}", dependencies=[WriteAccess])
def delete_document(doc_id: str, engine: EngineDep, metrics: MetricsDep):
    chunks = engine.documents.delete(doc_id)
    metrics.inc("documents_deleted_total")
    return {"document_id": doc_id, "deleted_chunks": chunks}
