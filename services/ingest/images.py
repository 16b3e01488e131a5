"""One-shot job: the query service's images collection from the shipped sample images, under compose.

`python -m services.ingest.images --samples samples/art` embeds `<samples>/images/*` (captions from
`<samples>/descriptions.json`) with the CLIP model at CLIP_MODEL_DIR into the collection the index manifest names,
on the Qdrant of QDRANT_URL / QDRANT_API_KEY (embedded QDRANT_PATH when unset). Ids and payloads are the index
stage's (`art/0.jpg`, `art/images/0.jpg`). Idempotent: when the collection already holds exactly these images
embedded by this model (the first image re-embedded matches its stored vector) it exits without writing; otherwise
it rebuilds the collection, so a new month's model replaces the old vectors.
"""

from __future__ import annotations

import argparse
import logging
import uuid
from pathlib import Path

import numpy as np

from reprolab import cli
from reprolab.data.corpus import FetchConfig
from reprolab.data.readers import read_art
from reprolab.errors import DatasetError
from reprolab.rag.engine import load_clip
from reprolab.rag.images import IMAGE_NAMESPACE, build_image_collection
from reprolab.rag.manifest import load_manifest
from reprolab.rag.store import collection_exists, open_client, store_errors
from services.settings import get_settings

log = logging.getLogger("images")
SAME_VECTOR = 0.999  # cosine: the stored vector of the first image came from this model (float32 round trip)


def sample_records(samples: Path) -> list[dict]:
    """{"id", "image", "text"} for every shipped image, read as the fetch stage reads a snapshot's art/
    (reprolab.data.readers.read_art, the fetch defaults), so the ids and captions are the index stage's; a
    sample the fetch stage would quarantine is an error naming it."""
    if samples.name != "art":
        raise DatasetError(f"{samples}: the samples folder is laid out as a snapshot's art/ (descriptions.json, "
                           f"images/) and must be named 'art'")
    fetch = FetchConfig()
    records = []
    for candidate in read_art(samples.parent, fetch.min_image_side, fetch.max_description_chars):
        if candidate.problem:
            raise DatasetError(f"{samples / 'descriptions.json'}: {Path(candidate.id).name!r}: {candidate.problem}")
        records.append({k: candidate.record[k] for k in ("id", "image", "text")})
    if not records:
        raise DatasetError(f"{samples / 'descriptions.json'} describes no image")
    return records


def already_built(client, embedder, records: list[dict], root: Path, collection: str) -> bool:
    """The collection holds exactly `records` (by id) at the model's width, and the first one's vector is what the
    model gives today."""
    if not collection_exists(client, collection):
        return False
    ids = [str(uuid.uuid5(IMAGE_NAMESPACE, r["id"])) for r in records]
    with store_errors(f"read the collection {collection!r}"):
        info = client.get_collection(collection)
        if getattr(info.config.params.vectors, "size", None) != embedder.dim or info.points_count != len(records):
            return False
        found = client.retrieve(collection, ids=ids, with_payload=False, with_vectors=False)
        if {str(p.id) for p in found} != set(ids):
            return False
        stored = client.retrieve(collection, ids=ids[:1], with_vectors=True)[0].vector
    today = embedder.encode_images([root / records[0]["image"]])[0]
    return float(np.dot(np.asarray(stored, dtype=np.float32), today)) >= SAME_VECTOR


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=Path, default=Path("samples/art"),
                        help="folder with descriptions.json and images/ (default: samples/art)")
    args = parser.parse_args()
    settings = get_settings()
    collection = load_manifest(settings.index_manifest).rag.images_collection
    records = sample_records(args.samples)
    embedder = load_clip(settings.clip_model_dir, required=True)
    client = open_client(settings.qdrant_url, None if settings.qdrant_url else settings.qdrant_path,
                         timeout=30, api_key=settings.qdrant_api_key)
    try:
        root = args.samples.parent
        if already_built(client, embedder, records, root, collection):
            log.info("images collection already built", extra={"collection": collection, "images": len(records)})
            print(f"{collection}: {len(records)} images, already built with this model")
            return
        count = build_image_collection(client, embedder, records, root, collection)
        print(f"{collection}: {count} images embedded with {settings.clip_model_dir}")
    finally:
        client.close()


if __name__ == "__main__":
    cli.run(main, "images")
