"""Query throughput, one run, one table: the running query service against LlamaIndex's default in-process
retriever, on the same chunks, vectors and embedder.

1. Builds the documents collection of the shipped documents (samples/docs) with the params.yaml `index`
   settings into a temp folder and writes its manifest, as the index stage does.
2. Starts the service (`services.app:app` under uvicorn, embedded Qdrant (Qdrant Edge), the manifest's settings,
   the packaged MiniLM on onnxruntime) and loads it
   from a separate process (the load generator: one reused HTTP client per worker thread, a warm-up, then
   `--requests` requests per concurrency level), retrieval only (`generate: false`: hybrid search in Qdrant +
   grounded quotes).
3. In this process, after the service has stopped: LlamaIndex's default path (VectorStoreIndex over the same
   chunks with their stored vectors, `as_retriever(similarity_top_k=5)`, dense only, no HTTP) at the same
   concurrency levels, same questions, same embedder object (`load_text_embedder`: onnxruntime).
With --profile, py-spy samples the service during the concurrency-8 level and the table of where its CPU time
went (self time by function, and by library) is printed.

    python -m bench.rag [--requests 500] [--levels 1,8,32] [--profile] [--set index.key=value ...]

The machine is shared: the load average is printed beside the table; compare ratios from one run only.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "samples" / "docs"
LABELLED = REPO / "samples" / "qa" / "hotmart_labelled.json"
ISSUE_RPS_AT_8 = 37.0  # issue 13: the service before this change, concurrency 8, same machine, retrieval only


def questions() -> list[str]:
    return [q["question"] for q in json.loads(LABELLED.read_text(encoding="utf-8"))["questions"]]


def summary(latencies_ms: list[float], wall_s: float) -> dict:
    a = np.asarray(latencies_ms)
    return {"n": len(a), "p50": float(np.percentile(a, 50)), "p95": float(np.percentile(a, 95)),
            "rps": len(a) / wall_s}


def run_level(call, items: list[str], concurrency: int, requests: int, warmup: int) -> dict:
    """`call(worker_state, question)` from `concurrency` threads; each thread keeps its own state (a client)."""
    local = threading.local()
    latencies: list[float] = []

    def one(i: int) -> float:
        t = time.perf_counter()
        call(local, items[i % len(items)])
        return (time.perf_counter() - t) * 1e3

    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(one, range(warmup)))
        start, cpu = time.perf_counter(), time.process_time()
        latencies = list(pool.map(one, range(requests)))
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    return {**summary(latencies, wall), "cpu_ms": 1e3 * cpu / requests}  # this process's CPU per request


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far (/proc: the service is another process)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# --- the load generator (its own process) ---------------------------------------------------------------------
def http_call(url: str):
    import httpx

    def call(local, question: str) -> None:
        if not hasattr(local, "client"):
            local.client = httpx.Client(base_url=url, timeout=120)
        r = local.client.post("/query", json={"question": question, "generate": False})
        r.raise_for_status()

    return call


def load_main(url: str, concurrency: int, requests: int, warmup: int) -> None:
    print(json.dumps(run_level(http_call(url), questions(), concurrency, requests, warmup)))


# --- set-up ---------------------------------------------------------------------------------------------------
def build_index(tmp: Path, overrides: list[str] = ()):
    from reprolab.config import load_section, with_overrides
    from reprolab.rag.build import IndexConfig
    from reprolab.rag.embedding import embedding_dim
    from reprolab.rag.engine import RagEngine
    from reprolab.rag.manifest import manifest_record
    from reprolab.rag.store import DENSE

    cfg = with_overrides(load_section("index", IndexConfig, REPO / "params.yaml"),
                         [s.removeprefix("index.") for s in overrides], "--set")
    engine = RagEngine.open(cfg.rag, qdrant_path=tmp / "qdrant")
    try:
        for path in sorted(DOCS.glob("*.txt")):
            engine.documents.ingest(path.read_text(encoding="utf-8"), f"docs/{path.name}", {"title": path.stem})
        (tmp / "manifest.json").write_text(json.dumps(manifest_record(cfg.rag, embedding_dim(engine.embedder))))
        points, offset = [], None
        while True:
            page, offset = engine.client.scroll(cfg.rag.documents_collection, limit=256, offset=offset,
                                                with_payload=True, with_vectors=[DENSE])
            points += page
            if offset is None:
                break
    finally:
        engine.close()
    return cfg, [(p.payload["text"], p.vector[DENSE], p.payload["doc_id"]) for p in points]


def start_service(tmp: Path) -> tuple[subprocess.Popen, str]:
    import httpx

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "QDRANT_PATH": str(tmp / "qdrant"), "INDEX_MANIFEST": str(tmp / "manifest.json"),
           "CLIP_MODEL_DIR": str(tmp / "no-clip"), "REPROLAB_LOG_LEVEL": "WARNING", "HF_HUB_OFFLINE": "1"}
    log = open(tmp / "service.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "uvicorn", "services.app:app", "--host", "127.0.0.1",
                             "--port", str(port), "--log-level", "warning", "--no-access-log"],
                            cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"service exited: {(tmp / 'service.log').read_text()[-2000:]}")
        try:
            if httpx.get(url + "/readyz", timeout=2).status_code == 200:
                return proc, url
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    raise TimeoutError("service did not start")


def where_time_went(raw: Path, top: int = 12) -> str:
    """Self time by function, and total time by library, from py-spy's collapsed stacks."""
    by_function, by_library, total = Counter(), Counter(), 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        n, frames = int(count), stack.split(";")
        total += n
        by_function[frames[-1]] += n
        for lib in {_library(f) for f in frames}:
            by_library[lib] += n
    lines = [f"py-spy, concurrency 8: {total} samples of the service process"]
    lines += [f"  self {100 * n / total:5.1f}%  {f[:110]}" for f, n in by_function.most_common(top)]
    lines += ["  in a stack that goes through (share of all samples):"]
    lines += [f"    {100 * n / total:5.1f}%  {lib}" for lib, n in by_library.most_common(top)]
    return "\n".join(lines)


def _library(frame: str) -> str:
    """The top-level package of a py-spy frame "func (path/to/file.py:line)" (paths are relative to site-packages)."""
    path = frame[frame.rfind("(") + 1 : frame.rfind(")")].rsplit(":", 1)[0] if "(" in frame else frame
    for root in ("site-packages/", "lib/python3.11/", "/work/main/", str(REPO) + "/"):
        path = path.split(root, 1)[-1]
    top = path.lstrip("/").split("/", 1)[0]
    return top.removesuffix(".py") or "?"


# --- the baseline: LlamaIndex's default in-process retriever --------------------------------------------------
def llamaindex_retriever(cfg, chunks):
    from llama_index.core import VectorStoreIndex
    from llama_index.core.schema import TextNode

    from reprolab.rag.embedding import load_text_embedder

    embedder = load_text_embedder(cfg.rag.text_embedder)
    nodes = [TextNode(text=text, embedding=list(vector), metadata={"doc_id": doc}) for text, vector, doc in chunks]
    index = VectorStoreIndex(nodes, embed_model=embedder)  # nodes come with their vectors: nothing re-embedded
    retriever = index.as_retriever(similarity_top_k=cfg.rag.retrieval.top_k)
    return lambda local, question: retriever.retrieve(question)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--warmup", type=int, default=40)
    parser.add_argument("--levels", default="1,8,32")
    parser.add_argument("--profile", action="store_true", help="py-spy the service at concurrency 8")
    parser.add_argument("--set", action="append", default=[],
                        help="index.<key>=<value> override (YAML value), e.g. index.rag.text_embedder=...")
    parser.add_argument("--load", help=argparse.SUPPRESS)  # internal: run as the load generator against URL
    parser.add_argument("--concurrency", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.load:
        return load_main(args.load, args.concurrency, args.requests, args.warmup)

    levels = [int(x) for x in args.levels.split(",")]
    rows, profile = [], None
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        cfg, chunks = build_index(tmp, args.set)
        proc, url = start_service(tmp)
        try:
            for c in levels:
                spy = None
                if args.profile and c == 8:
                    spy = subprocess.Popen([str(Path(sys.executable).parent / "py-spy"), "record", "--pid", str(proc.pid), "--format", "raw",
                                            "--output", str(tmp / "profile.txt"), "--rate", "200", "--nonblocking"],
                                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                    time.sleep(1.0)
                service_cpu = process_cpu_s(proc.pid)
                out = subprocess.run([sys.executable, "-m", "bench.rag", "--load", url, "--concurrency", str(c),
                                      "--requests", str(args.requests), "--warmup", str(args.warmup)],
                                     cwd=REPO, capture_output=True, text=True, check=True)
                service_cpu = 1e3 * (process_cpu_s(proc.pid) - service_cpu) / (args.requests + args.warmup)
                if spy is not None:
                    spy.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT, not on SIGTERM
                    spy.wait(timeout=60)
                    profile = where_time_went(tmp / "profile.txt") if (tmp / "profile.txt").exists() else None
                level = json.loads(out.stdout.strip().splitlines()[-1])
                level["cpu_ms"] += service_cpu  # the load generator's CPU per request + the service's
                rows.append(("service (HTTP, hybrid in Qdrant)", c, level))
        finally:
            proc.terminate()
            proc.wait(timeout=30)
        baseline = llamaindex_retriever(cfg, chunks)
        for c in levels:
            rows.append(("LlamaIndex in-process (dense)", c, run_level(baseline, questions(), c, args.requests,
                                                                         args.warmup)))

    load = os.getloadavg()
    print(f"\ntext embedder {cfg.rag.text_embedder}; {len(chunks)} chunks from {len(list(DOCS.glob('*.txt')))} "
          f"documents; {args.requests} requests per "
          f"level after {args.warmup} warm-up; load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f} "
          f"on {os.cpu_count()} CPUs")
    print("| system | concurrency | requests | p50 ms | p95 ms | req/s | CPU ms a request |\n|---|---|---|---|---|---|---|")
    for name, c, r in rows:
        print(f"| {name} | {c} | {r['n']} | {r['p50']:.1f} | {r['p95']:.1f} | {r['rps']:.1f} | {r['cpu_ms']:.1f} |")
    print("(CPU: the service's and its load generator's together, or the in-process retriever's: the machine's "
          f"{os.cpu_count()} cores give at most {os.cpu_count()}000 / CPU ms req/s when idle)")
    ours = {c: r for name, c, r in rows if name.startswith("service")}
    base = {c: r for name, c, r in rows if name.startswith("LlamaIndex")}
    for c in levels:
        print(f"concurrency {c}: service / LlamaIndex in-process = {ours[c]['rps'] / base[c]['rps']:.2f}x req/s")
    if 8 in ours:
        print(f"concurrency 8: service {ours[8]['rps']:.1f} req/s = {ours[8]['rps'] / ISSUE_RPS_AT_8:.2f}x the "
              f"issue's {ISSUE_RPS_AT_8:.0f} req/s (target >= 3x and p95 <= 100 ms: p95 {ours[8]['p95']:.1f} ms)")
    if profile:
        print(profile)


if __name__ == "__main__":
    main()
