"""The image collection: sample images embedded with the CLIP model, searched by text or by an image.

`embedder` is anything with `.dim`, `.encode_images(list) -> (n, dim)` and `.encode_texts(list) -> (n, dim)`,
L2-normalised float32 (reprolab.clip.embedding.ClipEmbedder in the pipeline, a small fake in unit tests).
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from pathlib import Path

from reprolab.rag.errors import FeatureUnavailable
from reprolab.rag.store import collection_exists, store_errors

log = logging.getLogger(__name__)
IMAGE_NAMESPACE = uuid.UUID("0c7d1f64-5a3e-4a8f-8f63-1c2b9f7e0d21")


@dataclass
class ImageHit:
    id: str
    image: str
    description: str
    score: float


def create_image_collection(client, name: str, dim: int) -> None:
    """The images collection: one unnamed dense vector (cosine) per image."""
    from qdrant_client import models

    with store_errors(f"create collection {name!r}"):
        client.create_collection(name, vectors_config=models.VectorParams(size=dim, distance=models.Distance.COSINE))


def build_image_collection(client, embedder, records: list[dict], image_root: Path, collection: str,
                           batch_size: int = 32) -> int:
    """(Re)create `collection` from records {"id", "image" (relative to image_root), "text"}; returns the count."""
    from qdrant_client import models
    from tqdm import tqdm

    records = sorted(records, key=lambda r: r["id"])
    with store_errors(f"create collection {collection!r}"):
        if client.collection_exists(collection):
            client.delete_collection(collection)
    create_image_collection(client, collection, embedder.dim)
    for start in tqdm(range(0, len(records), batch_size), desc="images", leave=False):
        batch = records[start : start + batch_size]
        vectors = embedder.encode_images([image_root / r["image"] for r in batch])
        points = [
            models.PointStruct(
                id=str(uuid.uuid5(IMAGE_NAMESPACE, r["id"])),
                vector=v.tolist(),
                payload={"id": r["id"], "image": r["image"], "description": r.get("text", "")},
            )
            for r, v in zip(batch, vectors)
        ]
        with store_errors("upsert image points"):
            client.upsert(collection, points=points, wait=True)
    log.info("image collection built", extra={"collection": collection, "images": len(records)})
    return len(records)


class ImageSearch:
    def __init__(self, client, embedder, collection: str):
        self.client = client
        self.embedder = embedder
        self.collection = collection

    def _search(self, vector, top_k: int) -> list[ImageHit]:
        if self.embedder is None:
            raise FeatureUnavailable("image search is not available: no CLIP model was configured (CLIP_MODEL_DIR)")
        if not collection_exists(self.client, self.collection):
            raise FeatureUnavailable(f"image search is not available: the collection {self.collection!r} is not "
                                     "built yet: the index stage exports it, and `make serve` or the images job loads it")
        with store_errors("search the image collection"):
            result = self.client.query_points(self.collection, query=vector.tolist(), limit=top_k, with_payload=True)
        return [ImageHit(p.payload["id"], p.payload["image"], p.payload.get("description", ""), float(p.score))
                for p in result.points]

    def by_text(self, text: str, top_k: int = 5) -> list[ImageHit]:
        if self.embedder is None:
            return self._search(None, top_k)
        return self._search(self.embedder.encode_texts([text])[0], top_k)

    def by_image(self, image, top_k: int = 5) -> list[ImageHit]:
        if self.embedder is None:
            return self._search(None, top_k)
        return self._search(self.embedder.encode_images([image])[0], top_k)
