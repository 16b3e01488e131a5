"""Embedded Qdrant on Qdrant Edge (`qdrant-edge-py`, the engine in Rust): the QdrantClient calls this project
makes, on one Edge shard per collection in a folder.

Why: qdrant-client's local mode scores sparse vectors in pure Python, every point, on every query (~90% of a
hybrid retrieval; docs/rag.md "Throughput"), so its cost grows with the corpus. Edge keeps an inverted index for
the sparse channels and HNSW for the dense one, like the Qdrant server of compose, and scores the same: the
per-channel rankings and scores equal local mode's (tests/test_rag_speed.py).

Only what `DocumentIndex`, `HybridRetriever`, `ImageSearch` and the images job call is here; the answers are
qdrant-client models, so the callers cannot tell the engines apart. A collection is the folder `<path>/<name>`
with a `collection.json` of its vector configuration (an Edge shard does not report it).
"""

from __future__ import annotations

import fcntl
import json
import shutil
import threading
from pathlib import Path
from types import SimpleNamespace

import qdrant_edge as qe
from qdrant_client.http import models

from reprolab.errors import ConfigError

CONFIG_FILE = "collection.json"
LOCK_FILE = ".edge.lock"
RRF_K = 2  # qdrant-client's and the server's default RRF constant: 1 / (k + rank)
DISTANCES = {models.Distance.COSINE: qe.Distance.Cosine, models.Distance.DOT: qe.Distance.Dot,
             models.Distance.EUCLID: qe.Distance.Euclid, models.Distance.MANHATTAN: qe.Distance.Manhattan}
PAYLOAD_SCHEMAS = {models.PayloadSchemaType.KEYWORD: qe.PayloadSchemaType.Keyword,
                   models.PayloadSchemaType.INTEGER: qe.PayloadSchemaType.Integer,
                   models.PayloadSchemaType.FLOAT: qe.PayloadSchemaType.Float,
                   models.PayloadSchemaType.BOOL: qe.PayloadSchemaType.Bool}


class EdgeClient:
    """QdrantClient's surface used here, on Edge shards under `path` (one process at a time: a lock file)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        if (self.path / "meta.json").is_file():  # qdrant-client local mode's storage
            raise ConfigError(f"{self.path} holds a qdrant-client local-mode store, not Qdrant Edge shards: "
                              f"rebuild it (the index stage) or remove it")
        self._lock_file = open(self.path / LOCK_FILE, "w")
        try:
            fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock_file.close()
            raise RuntimeError(f"Storage folder {self.path} is already accessed by another instance") from None
        self._shards: dict[str, qe.EdgeShard] = {}
        self._configs: dict[str, dict] = {}
        self._lock = threading.Lock()  # creating, dropping and writing collections
        for folder in sorted(p for p in self.path.iterdir() if (p / CONFIG_FILE).is_file()):
            self._configs[folder.name] = json.loads((folder / CONFIG_FILE).read_text())
            self._shards[folder.name] = qe.EdgeShard.load(str(folder))

    # --- collections ---
    def collection_exists(self, name: str) -> bool:
        return name in self._shards

    def get_collections(self) -> models.CollectionsResponse:
        return models.CollectionsResponse(collections=[models.CollectionDescription(name=n) for n in self._shards])

    def create_collection(self, name: str, vectors_config, sparse_vectors_config: dict | None = None) -> bool:
        if isinstance(vectors_config, models.VectorParams):
            dense = {"": vectors_config}
        else:
            dense = dict(vectors_config or {})
        sparse = dict(sparse_vectors_config or {})
        config = {"vectors": {n: {"size": v.size, "distance": v.distance.value} for n, v in dense.items()},
                  "named": not isinstance(vectors_config, models.VectorParams),
                  "sparse": {n: {"idf": p.modifier == models.Modifier.IDF} for n, p in sparse.items()}}
        edge_config = qe.EdgeConfig(
            vectors={n: qe.EdgeVectorParams(size=v.size, distance=DISTANCES[v.distance]) for n, v in dense.items()},
            sparse_vectors={n: qe.EdgeSparseVectorParams(modifier=qe.Modifier.Idf if c["idf"] else None)
                            for n, c in config["sparse"].items()} or None)
        with self._lock:
            if name in self._shards:
                raise ValueError(f"Collection {name} already exists")
            folder = self.path / name
            shutil.rmtree(folder, ignore_errors=True)
            shard = qe.EdgeShard.create(str(folder), edge_config)
            (folder / CONFIG_FILE).write_text(json.dumps(config))
            self._shards[name], self._configs[name] = shard, config
        return True

    def delete_collection(self, name: str) -> bool:
        with self._lock:
            shard = self._shards.pop(name, None)
            self._configs.pop(name, None)
            if shard is None:
                return False
            shard.close()
            shutil.rmtree(self.path / name)
        return True

    def get_collection(self, name: str):
        """What `dense_size` reads: `.config.params.vectors` (a dict of named vectors, or the one unnamed)."""
        config = self._config(name)
        vectors = {n: models.VectorParams(size=v["size"], distance=models.Distance(v["distance"]))
                   for n, v in config["vectors"].items()}
        params = SimpleNamespace(vectors=vectors if config["named"] else vectors[""])
        return SimpleNamespace(config=SimpleNamespace(params=params), points_count=self._shard(name).info().points_count)

    def create_payload_index(self, name: str, field_name: str, field_schema) -> None:
        self._update(name, qe.UpdateOperation.create_field_index(field_name, PAYLOAD_SCHEMAS[field_schema]))

    # --- points ---
    def upsert(self, name: str, points: list[models.PointStruct], wait: bool = True) -> None:
        named = self._config(name)["named"]
        self._update(name, qe.UpdateOperation.upsert_points(
            [qe.Point(p.id, _vectors(p.vector) if named else {"": list(p.vector)}, p.payload) for p in points]))

    def delete(self, name: str, points_selector, wait: bool = True) -> None:
        if isinstance(points_selector, models.FilterSelector):
            points_selector = points_selector.filter
        if isinstance(points_selector, models.Filter):
            op = qe.UpdateOperation.delete_points_by_filter(_filter(points_selector))
        elif isinstance(points_selector, models.PointIdsList):
            op = qe.UpdateOperation.delete_points(list(points_selector.points))
        else:
            op = qe.UpdateOperation.delete_points(list(points_selector))
        self._update(name, op)

    def count(self, name: str, count_filter=None, exact: bool = True) -> models.CountResult:
        return models.CountResult(count=self._shard(name).count(qe.CountRequest(exact=exact,
                                                                                 filter=_filter(count_filter))))

    def retrieve(self, name: str, ids: list, with_payload=True, with_vectors=False) -> list[models.Record]:
        records = self._shard(name).retrieve(list(ids), with_payload=_with(with_payload),
                                             with_vector=_with(with_vectors))
        return [self._record(name, r) for r in records]

    def scroll(self, name: str, scroll_filter=None, limit: int = 10, offset=None, with_payload=True,
               with_vectors=False) -> tuple[list[models.Record], str | None]:
        records, next_offset = self._shard(name).scroll(qe.ScrollRequest(
            offset=offset, limit=limit, filter=_filter(scroll_filter), with_payload=_with(with_payload),
            with_vector=_with(with_vectors)))
        return [self._record(name, r) for r in records], None if next_offset is None else str(next_offset)

    def query_points(self, name: str, query=None, using: str | None = None, prefetch=None, query_filter=None,
                     limit: int = 10, with_payload=True, with_vectors=False) -> models.QueryResponse:
        prefetches = prefetch if isinstance(prefetch, list) else [prefetch] if prefetch else []
        request = qe.QueryRequest(
            limit=limit, query=_query(query, using if using is not None else self._default_vector(name)),
            prefetches=[self._prefetch(name, p) for p in prefetches] or None, filter=_filter(query_filter),
            with_payload=_with(with_payload), with_vector=_with(with_vectors))
        points = self._shard(name).query(request)
        return models.QueryResponse(points=[models.ScoredPoint(id=str(p.id), version=p.version, score=p.score,
                                                               payload=p.payload, vector=self._vector(name, p.vector))
                                            for p in points])

    def close(self) -> None:
        with self._lock:
            for shard in self._shards.values():
                shard.flush()
                shard.close()
            self._shards.clear()
            if not self._lock_file.closed:
                fcntl.flock(self._lock_file, fcntl.LOCK_UN)
                self._lock_file.close()

    # --- helpers ---
    def _shard(self, name: str) -> qe.EdgeShard:
        try:
            return self._shards[name]
        except KeyError:
            raise ValueError(f"Collection {name} not found") from None

    def _config(self, name: str) -> dict:
        self._shard(name)
        return self._configs[name]

    def _update(self, name: str, operation) -> None:
        with self._lock:
            shard = self._shard(name)
            shard.update(operation)
            shard.flush()  # durable once the call returns, as local mode's upsert is

    def _default_vector(self, name: str) -> str | None:
        return None if self._config(name)["named"] else ""

    def _prefetch(self, name: str, p: models.Prefetch) -> qe.Prefetch:
        using = p.using if p.using is not None else self._default_vector(name)
        return qe.Prefetch(limit=p.limit, query=_query(p.query, using), filter=_filter(p.filter),
                           prefetches=[self._prefetch(name, q) for q in _as_list(p.prefetch)] or None)

    def _vector(self, name: str, vector):
        if vector is None:
            return None
        if isinstance(vector, dict):
            vector = {n: models.SparseVector(indices=list(v.indices), values=list(v.values))
                      if isinstance(v, qe.SparseVector) else list(v) for n, v in vector.items()}
            return vector if self._config(name)["named"] else vector.get("")
        return list(vector)

    def _record(self, name: str, r) -> models.Record:
        return models.Record(id=str(r.id), payload=r.payload, vector=self._vector(name, r.vector))


def _as_list(x) -> list:
    return [] if x is None else x if isinstance(x, list) else [x]


def _with(selector):
    """with_payload / with_vectors: a bool or a list of names, as both clients take them."""
    return list(selector) if isinstance(selector, (list, tuple)) else bool(selector)


def _vector(v):
    """One qdrant-client vector (dense list or SparseVector) as Qdrant Edge takes it."""
    if isinstance(v, models.SparseVector):
        return qe.SparseVector(list(v.indices), [float(x) for x in v.values])
    return [float(x) for x in v]


def _vectors(named: dict) -> dict:
    return {n: _vector(v) for n, v in named.items()}


def _query(query, using: str | None):
    if query is None:
        return None
    if isinstance(query, models.FusionQuery):
        if query.fusion != models.Fusion.RRF:
            raise NotImplementedError(f"fusion {query.fusion} is not mapped to Qdrant Edge")
        return qe.Fusion.Rrf(k=RRF_K)
    if isinstance(query, models.NearestQuery):
        query = query.nearest
    return qe.Query.Nearest(_vector(query), using=using)


def _condition(c):
    if isinstance(c, models.Filter):
        return _filter(c)
    if not isinstance(c, models.FieldCondition):
        raise NotImplementedError(f"filter condition {type(c).__name__} is not mapped to Qdrant Edge")
    if c.match is not None:
        if not isinstance(c.match, models.MatchValue):
            raise NotImplementedError(f"match {type(c.match).__name__} is not mapped to Qdrant Edge")
        return qe.FieldCondition(key=c.key, match=qe.MatchValue(c.match.value))
    if c.range is not None:
        r = c.range
        return qe.FieldCondition(key=c.key, range=qe.RangeFloat(gte=r.gte, gt=r.gt, lte=r.lte, lt=r.lt))
    raise NotImplementedError(f"field condition on {c.key!r} has neither match nor range")


def _filter(flt: models.Filter | None):
    if flt is None:
        return None
    return qe.Filter(must=[_condition(c) for c in _as_list(flt.must)] or None,
                     should=[_condition(c) for c in _as_list(flt.should)] or None,
                     must_not=[_condition(c) for c in _as_list(flt.must_not)] or None)
