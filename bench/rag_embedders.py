"""Text embedders for the knowledge QA, compared the way the index stage would use them, in one run.

    python -m bench.rag_embedders [--embedders packaged:all-MiniLM-L6-v2 packaged:multilingual-e5-small]
                                  [--set index.key=value ...]

For each embedder it builds the documents collection of the shipped docs (samples/docs) into a temp folder with
the params.yaml `index` settings, retrieves once per labelled question, picks the refusal thresholds on the TUNE
half only (the rules of bench/rag_refusal.py, and its cross-validation inside the tune half), then answers every
question with the extractive backend under the thresholds picked for that embedder. So each embedder gets its
own operating point, chosen without the reporting half, and the reporting half is read once. It prints, per
slice, every metric with its seeded 95% bootstrap interval (reprolab.evaluation.evidence), the paired change
of each embedder against the first one on the same questions (with its interval: when it holds zero the set
cannot tell the two apart), and the median time to embed one question. Rows go to bench/out/rag_embedders.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from bench.rag_refusal import (
    DOCS,
    REPO,
    cross_validate,
    ingest_samples,
    pick_thresholds,
    signal_row,
    with_type_check,
)
from reprolab.config import load_section, with_overrides
from reprolab.evaluation.evidence import evaluate_variants, paired_change
from reprolab.evaluation.rag import RAG_SPECS, RagOutcome, evaluate_rag, load_labelled_set
from reprolab.rag.answer import Answerer
from reprolab.rag.build import IndexConfig
from reprolab.rag.config import PACKAGED_MULTILINGUAL_EMBEDDER, PACKAGED_TEXT_EMBEDDER
from reprolab.rag.engine import RagEngine

OUT = REPO / "bench" / "out" / "rag_embedders.json"
SHOWN = ("hit@5", "false_refusal_rate", "unanswerable_declined_rate", "key_fact_recall")


def run_embedder(cfg: IndexConfig, questions) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        engine = RagEngine.open(cfg.rag, qdrant_path=Path(tmp) / "qdrant", engine="local")  # ties repeat
        try:
            t0 = time.perf_counter()
            ingest_samples(engine)
            ingest_s = time.perf_counter() - t0
            chunks = engine.client.count(cfg.rag.documents_collection).count
            embed_ms = []
            for q in questions:
                t0 = time.perf_counter()
                engine.embedder.get_query_embedding(q.question)
                embed_ms.append((time.perf_counter() - t0) * 1e3)
            passages = {q.id: engine.retriever.retrieve(q.question) for q in questions}
            signals = [signal_row(q, engine.answerer.ground(q.question, passages[q.id])) for q in questions]
            rows = with_type_check(signals, cfg.rag.answer.answer_type_check)
            tune = [r for r in rows if r["half"] == "tune"]
            picked = pick_thresholds(tune, 0.10)
            cv_fr, cv_ud = cross_validate([r for r in tune if not r["other"]], 0.10)
            answerer = Answerer(cfg.rag.answer.model_copy(update=picked), engine.answerer.analyzer)

            def ask(q, backend: str) -> RagOutcome:
                answer = answerer.answer(q.question, passages[q.id], backend=backend)
                return RagOutcome([p.text for p in passages[q.id]], answer.text, not answer.answerable, 0.0,
                                  answer.grounding.confident)

            evidence, _ = evaluate_rag(questions, ask, {"extractive": {"tune", "report"}})
        finally:
            engine.close()
    return {"picked": picked, "cv_tune": {"false_refusal_rate": cv_fr, "unanswerable_declined_rate": cv_ud},
            "embed_question_ms_p50": round(statistics.median(embed_ms), 2), "ingest_s": round(ingest_s, 1),
            "chunks": chunks, "chunking": cfg.rag.chunking.model_dump(), "rows": evidence}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--embedders", nargs="+", default=[PACKAGED_TEXT_EMBEDDER, PACKAGED_MULTILINGUAL_EMBEDDER])
    parser.add_argument("--set", action="append", default=[], help="index.<key>=<value> override (YAML value)")
    args = parser.parse_args()
    base_cfg = with_overrides(load_section("index", IndexConfig, REPO / "params.yaml"),
                              [s.removeprefix("index.") for s in args.set], "--set")
    questions = load_labelled_set(REPO / base_cfg.labelled_set,
                                  (DOCS / Path(base_cfg.labelled_document).name).read_text(encoding="utf-8"))
    results = {}
    for name in args.embedders:
        cfg = base_cfg.model_copy(update={"rag": base_cfg.rag.model_copy(update={"text_embedder": name})})
        results[name] = run_embedder(cfg, questions)
    base = args.embedders[0]
    specs = {s.name: s for s in RAG_SPECS}
    print("| embedder | slice | " + " | ".join(SHOWN) + " |\n|---|---|" + "---|" * len(SHOWN))
    for name, res in results.items():
        for variant, metrics in sorted(evaluate_variants(RAG_SPECS, res["rows"]).items()):
            cells = [f"{metrics[k]['value']:.3f} [{metrics[k]['low']:.2f}, {metrics[k]['high']:.2f}] (n={metrics[k]['n']})"
                     for k in SHOWN]
            print(f"| {name} | {variant} | " + " | ".join(cells) + " |")
    for name, res in results.items():
        print(f"\n{name}: picked on the tune half {res['picked']}; cross-validated inside the tune half: answerable "
              f"declined {res['cv_tune']['false_refusal_rate']:.3f}, unanswerable declined "
              f"{res['cv_tune']['unanswerable_declined_rate']:.3f}; one question embedded in "
              f"{res['embed_question_ms_p50']} ms (p50); {res['ingest_s']} s to ingest both documents "
              f"as {res['chunks']} chunks of {res['chunking']['chunk_size']} of its tokens")
        if name == base:
            continue
        for variant in sorted({r["variant"] for r in res["rows"]}):
            b = [r for r in results[base]["rows"] if r["variant"] == variant]
            n = [r for r in res["rows"] if r["variant"] == variant]
            changes = []
            for k in SHOWN:
                c = paired_change(specs[k], b, n)
                if c.diff is not None:
                    changes.append(f"{k} {c.diff:+.3f} [{c.low:+.2f}, {c.high:+.2f}]")
            print(f"  {variant} minus {base}: " + "; ".join(changes))
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(results, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
