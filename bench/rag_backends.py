"""Answer backends on the labelled set's reporting half: key-fact recall, declines, p50 latency, in one run.

    python -m bench.rag_backends [--backends extractive local] [--limit N] [--profile K] [--set index.key=value]

It builds the documents collection of the shipped docs (samples/docs) into a temp folder, retrieves once per
reporting-half question, and asks every backend with the same passages and the same grounding (so the declines
are the same and only the answer text differs). A generator's key facts are counted in its own text, not in the
quotes printed beside it. `--limit` keeps the first N questions of each (language, answerable) group: the local
model takes tens of seconds an answer on 2 CPU cores. `--profile K` times, for the first K local answers, the
prompt's forward pass alone (prefill) beside the whole generation, to show where the time goes.
Prints a markdown table; writes the per-question rows to bench/out/rag_backends.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from reprolab.config import load_section, with_overrides
from reprolab.evaluation.rag import key_facts_found, load_labelled_set
from reprolab.rag.build import IndexConfig
from reprolab.rag.engine import RagEngine
from bench.rag_refusal import DOCS, REPO, ingest_samples

OUT = REPO / "bench" / "out" / "rag_backends.json"


def prefill_seconds(answerer, question, passages) -> tuple[int, float]:
    """(prompt tokens, seconds of one forward pass over the prompt) for the local model."""
    import torch

    model, tokenizer = answerer.load_local()
    inputs = tokenizer.apply_chat_template([{"role": "user", "content": answerer.prompt(question, passages)}],
                                           add_generation_prompt=True, return_tensors="pt", return_dict=True)
    t0 = time.perf_counter()
    with torch.inference_mode():
        model(**inputs)
    return int(inputs["input_ids"].shape[1]), time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backends", nargs="+", default=["extractive", "local"])
    parser.add_argument("--limit", type=int, help="first N questions of each (language, answerable) group")
    parser.add_argument("--profile", type=int, default=0, help="time the prefill of the first K local answers")
    parser.add_argument("--set", action="append", default=[], help="index.<key>=<value> override (YAML value)")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(2)
    cfg = with_overrides(load_section("index", IndexConfig, REPO / "params.yaml"),
                         [s.removeprefix("index.") for s in args.set], "--set")
    questions = [q for q in load_labelled_set(REPO / cfg.labelled_set,
                                              (DOCS / Path(cfg.labelled_document).name).read_text())
                 if q.half == "report"]
    if args.limit:
        groups: dict = {}
        for q in questions:
            groups.setdefault((q.lang, q.answerable), []).append(q)
        questions = [q for g in groups.values() for q in g[: args.limit]]
    rows, profile = [], []
    with tempfile.TemporaryDirectory() as tmp:
        engine = RagEngine.open(cfg.rag, qdrant_path=Path(tmp) / "qdrant", engine="local")  # ties repeat
        try:
            ingest_samples(engine)
            for q in questions:
                passages = engine.retriever.retrieve(q.question)
                for backend in args.backends:
                    t0 = time.perf_counter()
                    a = engine.answerer.answer(q.question, passages, backend=backend)
                    ms = (time.perf_counter() - t0) * 1e3
                    scored = a.generated if a.generated is not None else a.text
                    found = key_facts_found(scored, q.key_facts) if q.answerable and a.answerable else 0
                    rows.append({"id": q.id, "lang": q.lang, "answerable": q.answerable, "backend": backend,
                                 "declined": not a.answerable, "key_facts": len(q.key_facts) if q.answerable else 0,
                                 "key_facts_found": found, "ms": round(ms, 1), "generated": a.generated})
                    if backend == "local" and a.answerable and len(profile) < args.profile:
                        tokens, s = prefill_seconds(engine.answerer, q.question, passages)
                        profile.append({"id": q.id, "prompt_tokens": tokens, "prefill_s": round(s, 2),
                                        "generate_s": round(ms / 1e3, 2)})
                    print(json.dumps({k: rows[-1][k] for k in ("id", "backend", "declined", "key_facts_found", "ms")}),
                          flush=True)
        finally:
            engine.close()
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps({"rows": rows, "profile": profile}, ensure_ascii=False, indent=1))
    print("\n| backend | language | answerable asked | declined | key-fact recall | unanswerable asked | declined | "
          "p50 ms (answered) |\n|---|---|---|---|---|---|---|---|")
    for backend in args.backends:
        for lang in sorted({r["lang"] for r in rows}):
            part = [r for r in rows if r["backend"] == backend and r["lang"] == lang]
            ans = [r for r in part if r["answerable"]]
            una = [r for r in part if not r["answerable"]]
            facts = sum(r["key_facts"] for r in ans)
            answered = [r["ms"] for r in part if not r["declined"]]
            print(f"| {backend} | {lang} | {len(ans)} | {sum(r['declined'] for r in ans)} | "
                  f"{sum(r['key_facts_found'] for r in ans) / facts if facts else float('nan'):.3f} "
                  f"({sum(r['key_facts_found'] for r in ans)}/{facts}) | {len(una)} | "
                  f"{sum(r['declined'] for r in una)} | "
                  f"{statistics.median(answered) if answered else float('nan'):.0f} |")
    for p in profile:
        print(f"profile {p['id']}: {p['prompt_tokens']} prompt tokens, prefill {p['prefill_s']} s, "
              f"whole answer {p['generate_s']} s")


if __name__ == "__main__":
    main()
