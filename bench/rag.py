"""RAG benchmark, one run, one table:

1. Query latency (p50/p95/p99) and throughput of the running query service on loopback (services.app under
   uvicorn, embedded Qdrant) at concurrency 1, 8 and 32: retrieval only (`generate: false`: hybrid retrieval +
   grounded quotes), and with generated answers (the packaged SmolLM2-135M, or Mistral with MISTRAL_API_KEY).
2. Ingest throughput (chunks/s) and retrieval, in-process, against LlamaIndex's default path
   (VectorStoreIndex.from_documents + as_retriever, dense only) on the same document, splitter and embedder,
   plus hit@5 of both on the labelled set.

    python bench/rag.py [--requests 48] [--answer-tokens 32] [--skip-answers]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DOC = REPO / "samples/docs/como-funciona-hotmart.txt"
LABELLED = REPO / "samples/qa/hotmart_labelled.json"
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


def load(url: str, questions: list[str], concurrency: int, requests: int, generate: bool) -> dict:
    def one(i: int) -> float:
        t = time.perf_counter()
        r = httpx.post(url + "/query", json={"question": questions[i % len(questions)], "generate": generate},
                       timeout=1800)
        r.raise_for_status()
        return (time.perf_counter() - t) * 1e3

    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        latencies = list(pool.map(one, range(requests)))
    wall = time.perf_counter() - start
    return {"p50": percentile(latencies, 50), "p95": percentile(latencies, 95), "p99": percentile(latencies, 99),
            "rps": requests / wall, "n": requests}


def start_service(tmp: Path, answer_tokens: int) -> tuple[subprocess.Popen, str]:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "QDRANT_PATH": str(tmp / "qdrant"), "DOCSTORE_PATH": str(tmp / "docstore.json"),
           "CLIP_MODEL_DIR": "", "ANSWER_BACKEND": "local", "ANSWER_MAX_NEW_TOKENS": str(answer_tokens),
           "REPROLAB_LOG_LEVEL": "WARNING", "OMP_NUM_THREADS": "2"}
    proc = subprocess.Popen([sys.executable, "-m", "uvicorn", "services.app:app", "--host", "127.0.0.1",
                             "--port", str(port), "--log-level", "warning"], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=open(tmp / "service.log", "w"))
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                return proc, url
        except httpx.TransportError:
            time.sleep(0.2)
    raise RuntimeError("service did not start; see " + str(tmp / "service.log"))


def in_process(tmp: Path, rounds: int = 2) -> dict:
    """Ours (IngestionPipeline with docstore upserts + hybrid retrieval) vs LlamaIndex's default path.

    The machine is shared, so the two sides alternate (ingest rounds, then question by question) and ingest
    keeps each side's best round: a load spike then hits both rather than one.
    """
    import torch
    from llama_index.core import Document, StorageContext, VectorStoreIndex
    from llama_index.vector_stores.qdrant import QdrantVectorStore
    from qdrant_client import QdrantClient

    from reprolab.evaluation.rag import first_hit_rank, load_labelled_set
    from reprolab.rag.config import RagConfig
    from reprolab.rag.documents import DocumentIndex
    from reprolab.rag.embedding import load_text_embedder
    from reprolab.rag.retrieval import HybridRetriever

    torch.set_num_threads(2)
    cfg = RagConfig()
    embedder = load_text_embedder(cfg.text_embedder)
    text = DOC.read_text(encoding="utf-8")
    questions = [q for q in load_labelled_set(LABELLED, text) if q.answerable]
    ours_client = QdrantClient(path=str(tmp / "ours"))
    base_client = QdrantClient(path=str(tmp / "baseline"))
    ours = DocumentIndex(ours_client, embedder, cfg, tmp / "ours_docstore.json")
    store = QdrantVectorStore(collection_name="baseline", client=base_client)

    def base_ingest(doc_id: str):
        return VectorStoreIndex.from_documents(
            [Document(text=text, id_=doc_id)], storage_context=StorageContext.from_defaults(vector_store=store),
            embed_model=embedder, transformations=[ours.splitter],
        )

    ours_rates, base_rates = [], []
    for r in range(rounds):
        t = time.perf_counter()
        chunks = ours.ingest(text, f"docs/hotmart-{r}.txt").chunks
        ours_rates.append(chunks / (time.perf_counter() - t))
        before = base_client.count("baseline").count if base_client.collection_exists("baseline") else 0
        t = time.perf_counter()
        index = base_ingest(f"docs/hotmart-{r}.txt")
        base_rates.append((base_client.count("baseline").count - before) / (time.perf_counter() - t))
    for r in range(1, rounds):  # keep one copy per side for retrieval
        ours.delete(f"docs/hotmart-{r}.txt")
        store.delete(f"docs/hotmart-{r}.txt")
    out = {"ours_ingest": max(ours_rates), "base_ingest": max(base_rates), "chunks": chunks}

    points = ours.points()
    t = time.perf_counter()
    ours.ingest(text, "docs/hotmart-0.txt")
    out["ours_reingest_ms"] = (time.perf_counter() - t) * 1e3
    out["ours_points_after_reingest"] = f"{points} -> {ours.points()}"
    points = base_client.count("baseline").count
    t = time.perf_counter()
    index = base_ingest("docs/hotmart-0.txt")
    out["base_reingest_ms"] = (time.perf_counter() - t) * 1e3
    out["base_points_after_reingest"] = f"{points} -> {base_client.count('baseline').count}"
    # The default path duplicated the document; measure its retrieval on one clean copy.
    store.delete("docs/hotmart-0.txt")
    index = base_ingest("docs/hotmart-0.txt")

    hybrid = HybridRetriever(ours_client, embedder, cfg.documents_collection, cfg.retrieval, documents=ours)
    base = index.as_retriever(similarity_top_k=5)
    hybrid.retrieve("aquecimento")
    base.retrieve("aquecimento")
    ours_ms, base_ms, ours_ranks, base_ranks = [], [], [], []
    for q in questions:
        t = time.perf_counter()
        ours_ranks.append(first_hit_rank([p.text for p in hybrid.retrieve(q.question, 5)], q.evidence))
        ours_ms.append((time.perf_counter() - t) * 1e3)
        t = time.perf_counter()
        base_ranks.append(first_hit_rank([n.get_content() for n in base.retrieve(q.question)], q.evidence))
        base_ms.append((time.perf_counter() - t) * 1e3)
    out["ours_retrieve_ms"] = statistics.median(ours_ms)
    out["base_retrieve_ms"] = statistics.median(base_ms)
    out["ours_hit5"] = sum(r is not None for r in ours_ranks) / len(ours_ranks)
    out["base_hit5"] = sum(r is not None for r in base_ranks) / len(base_ranks)
    ours_client.close()
    base_client.close()
    return out


class _Skip(Exception):
    pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=48, help="requests per concurrency level, retrieval only")
    parser.add_argument("--answer-tokens", type=int, default=32, help="max new tokens of the local generator")
    parser.add_argument("--skip-answers", action="store_true")
    parser.add_argument("--skip-service", action="store_true", help="only the in-process comparison")
    args = parser.parse_args()
    import json

    questions = [q["question"] for q in json.loads(LABELLED.read_text())["questions"]]
    rows = []
    http_ingest = float("nan")
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        proc, url = start_service(tmp, args.answer_tokens) if not args.skip_service else (None, "")
        try:
            if proc is None:
                raise _Skip
            t = time.perf_counter()
            r = httpx.post(url + "/documents", files={"file": (DOC.name, DOC.read_bytes(), "text/plain")}, timeout=600)
            r.raise_for_status()
            http_ingest = r.json()["chunks"] / (time.perf_counter() - t)
            for c in (1, 8, 32):
                rows.append(("retrieval only", c, load(url, questions, c, max(args.requests, c), False)))
            if not args.skip_answers:
                load(url, questions, 1, 1, True)  # loads the generator
                for c in (1, 8, 32):
                    rows.append((f"with answers ({args.answer_tokens} tok)", c, load(url, questions, c, max(4, c), True)))
        except _Skip:
            pass
        finally:
            if proc is not None:
                proc.terminate()
                proc.wait(timeout=30)
        ip = in_process(tmp)

    print("\n## Query service on loopback (services.app, embedded Qdrant, 2 CPU threads)\n")
    print("| mode | concurrency | requests | p50 ms | p95 ms | p99 ms | req/s |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for mode, c, m in rows:
        print(f"| {mode} | {c} | {m['n']} | {m['p50']:.0f} | {m['p95']:.0f} | {m['p99']:.0f} | {m['rps']:.2f} |")
    print(f"\nHTTP ingest of the sample document: {http_ingest:.1f} chunks/s (upload, extraction, chunking, embedding, upsert)")
    print("\n## In process: ours vs LlamaIndex default (VectorStoreIndex.from_documents + as_retriever)\n")
    print("| measure | ours | LlamaIndex default | ratio ours/default |")
    print("|---|---:|---:|---:|")
    print(f"| ingest, chunks/s | {ip['ours_ingest']:.1f} | {ip['base_ingest']:.1f} | {ip['ours_ingest'] / ip['base_ingest']:.2f} |")
    print(f"| re-ingest same document, ms | {ip['ours_reingest_ms']:.0f} | {ip['base_reingest_ms']:.0f} | "
          f"{ip['ours_reingest_ms'] / ip['base_reingest_ms']:.3f} |")
    print(f"| points, before -> after re-ingest | {ip['ours_points_after_reingest']} | "
          f"{ip['base_points_after_reingest']} | |")
    print(f"| retrieve top-5, median ms/question | {ip['ours_retrieve_ms']:.1f} | {ip['base_retrieve_ms']:.1f} | "
          f"{ip['ours_retrieve_ms'] / ip['base_retrieve_ms']:.2f} |")
    print(f"| hit@5 on the labelled set | {ip['ours_hit5']:.3f} | {ip['base_hit5']:.3f} | |")


if __name__ == "__main__":
    main()
