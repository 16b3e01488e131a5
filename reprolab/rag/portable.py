"""The index stage's DVC output, in a form that any engine loads and that rebuilds to the same bytes.

An embedded Qdrant folder is not reproducible byte for byte: Qdrant Edge names its segments with random UUIDs
and keeps a write-ahead log. So the `index` stage writes each collection's points as JSON lines
(`index/collections/<name>.jsonl`: id, payload, vectors; sorted by id, keys sorted), and whoever serves the
index loads them into its Qdrant:
- `make serve` and the tests: `materialize` builds an embedded folder from them once (Qdrant Edge), and reuses
  it while the export is unchanged (its sha256 is stamped in the folder);
- the stage's own evaluation: a folder materialized with qdrant-client's local mode, whose ties break in
  insertion order, so the reports repeat to the byte (Edge breaks ties differently in each process);
- compose: `python -m reprolab.rag.portable load index --qdrant-url URL` loads them into the server.
The served points are the evaluated ones, and both engines give every point the same per-channel scores
(tests/test_rag_speed.py); only the order of exactly tied points may differ.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
from collections.abc import Callable, Iterator
from pathlib import Path

from reprolab.data.atomic import staged_folder, write_text
from reprolab.data.jsonl import read_jsonl, write_jsonl
from reprolab.errors import ConfigError
from reprolab.rag.store import collection_exists, open_client, store_errors

log = logging.getLogger(__name__)

COLLECTIONS = "collections"  # index/collections/<name>.jsonl
STAMP = ".materialized-from"  # the engine and the sha256 of the export a materialized folder was built from
BATCH = 256

# How each collection is created before its points are loaded: collection name -> create(client, name, dim).
Creators = dict[str, Callable[[object, str, int], None]]


def _vector_json(vector) -> object:
    """A point's vectors as plain JSON: a list (one unnamed vector) or {name: list | {"indices", "values"}}."""
    if vector is None:
        return None
    if isinstance(vector, dict):
        return {name: _vector_json(v) for name, v in vector.items()}
    if hasattr(vector, "indices"):  # a sparse vector: pairs sorted by index, whatever order the engine kept
        pairs = sorted(zip(vector.indices, vector.values))
        return {"indices": [int(i) for i, _ in pairs], "values": [float(v) for _, v in pairs]}
    return [float(x) for x in vector]


def _vector_model(vector):
    from qdrant_client import models

    if isinstance(vector, dict) and set(vector) == {"indices", "values"}:
        return models.SparseVector(indices=vector["indices"], values=vector["values"])
    if isinstance(vector, dict):
        return {name: _vector_model(v) for name, v in vector.items()}
    return vector


def _points(client, collection: str) -> Iterator[dict]:
    offset = None
    while True:
        with store_errors(f"read the points of {collection!r}"):
            records, offset = client.scroll(collection, limit=BATCH, offset=offset, with_payload=True,
                                            with_vectors=True)
        for r in records:
            yield {"id": str(r.id), "payload": r.payload or {}, "vector": _vector_json(r.vector)}
        if offset is None:
            return


def export_collections(client, collections: list[str], out: Path) -> dict[str, int]:
    """Write out/collections/<name>.jsonl for each collection; returns the point counts."""
    counts = {}
    for name in collections:
        rows = sorted(_points(client, name), key=lambda p: p["id"])
        write_jsonl(Path(out) / COLLECTIONS / f"{name}.jsonl", rows)
        counts[name] = len(rows)
    return counts


def export_digest(index_dir: Path) -> str:
    """sha256 over the exported collections (names and bytes): what a materialized folder was built from."""
    files = sorted((Path(index_dir) / COLLECTIONS).glob("*.jsonl"))
    if not files:
        raise ConfigError(f"{index_dir} has no exported collections ({COLLECTIONS}/*.jsonl): run the index stage")
    digest = hashlib.sha256()
    for f in files:
        digest.update(f.name.encode() + b"\0" + hashlib.sha256(f.read_bytes()).digest())
    return digest.hexdigest()


def load_collections(client, index_dir: Path, creators: Creators) -> dict[str, int]:
    """(Re)create every collection named in `creators` from index_dir/collections and upsert its points."""
    from qdrant_client import models

    counts = {}
    for name, create in creators.items():
        path = Path(index_dir) / COLLECTIONS / f"{name}.jsonl"
        rows = read_jsonl(path, missing="the index stage writes it")
        if not rows:
            raise ConfigError(f"{path} has no points")
        first = rows[0]["vector"]
        dense = first if isinstance(first, list) else next(v for v in first.values() if isinstance(v, list))
        with store_errors(f"create collection {name!r}"):
            if collection_exists(client, name):
                client.delete_collection(name)
        create(client, name, len(dense))
        for start in range(0, len(rows), BATCH):
            points = [models.PointStruct(id=r["id"], payload=r["payload"], vector=_vector_model(r["vector"]))
                      for r in rows[start : start + BATCH]]
            with store_errors(f"upsert points into {name!r}"):
                client.upsert(name, points=points, wait=True)
        counts[name] = len(rows)
        log.info("collection loaded", extra={"collection": name, "points": len(rows)})
    return counts


def materialize(index_dir: Path, target: Path, creators: Creators, engine: str = "edge") -> bool:
    """Make `target` an embedded Qdrant folder holding index_dir's exported collections. Reused as it is when it
    was built from the same export (documents ingested since then stay); otherwise rebuilt beside it and swapped
    in whole. Returns True when it was (re)built."""
    index_dir, target = Path(index_dir), Path(target)
    digest = f"{engine} {export_digest(index_dir)}"
    stamp = target / STAMP
    if stamp.is_file() and stamp.read_text().strip() == digest:
        return False
    with staged_folder(target) as tmp:
        client = open_client(path=tmp, engine=engine)
        try:
            load_collections(client, index_dir, creators)
        finally:
            client.close()
        write_text(tmp / STAMP, digest + "\n")
    log.info("embedded qdrant materialized", extra={"index": str(index_dir), "qdrant_path": str(target)})
    return True


def index_creators(documents_collection: str, images_collection: str | None) -> Creators:
    """The project's two collections: documents (dense + sparse channels), images (one dense vector)."""
    from reprolab.rag.images import create_image_collection
    from reprolab.rag.store import create_documents_collection

    creators: Creators = {documents_collection: create_documents_collection}
    if images_collection:
        creators[images_collection] = create_image_collection
    return creators


def main(argv: list[str] | None = None) -> int:
    import os

    from reprolab.logs import configure
    from reprolab.rag.manifest import load_manifest

    parser = argparse.ArgumentParser(prog="python -m reprolab.rag.portable",
                                     description="Load the index stage's exported collections into a Qdrant.")
    parser.add_argument("command", choices=["load"])
    parser.add_argument("index_dir", type=Path, help="the index stage's output folder (index/)")
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--qdrant-url", help="a Qdrant server (its key from QDRANT_API_KEY)")
    where.add_argument("--qdrant-path", type=Path, help="an embedded Qdrant folder")
    parser.add_argument("--engine", choices=["edge", "local"], default="edge", help="embedded engine (--qdrant-path)")
    args = parser.parse_args(argv)
    configure()
    rag = load_manifest(args.index_dir / "manifest.json").rag
    creators = index_creators(rag.documents_collection, rag.images_collection)
    if args.qdrant_path:
        built = materialize(args.index_dir, args.qdrant_path, creators, engine=args.engine)
        print(f"{args.qdrant_path}: {'built' if built else 'already up to date'}")
        return 0
    client = open_client(url=args.qdrant_url, api_key=os.environ.get("QDRANT_API_KEY") or None)
    try:
        counts = load_collections(client, args.index_dir, creators)
    finally:
        client.close()
    print(" ".join(f"{n}: {c} points" for n, c in counts.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
