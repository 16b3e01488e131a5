"""Tune the refusal thresholds (index.rag.answer.min_term_coverage, min_dense_score) on the labelled set's TUNE
half only, then show the chosen pair on both halves.

    python -m bench.rag_refusal [--index DIR] [--set index.key=value ...]

It builds the documents collection of the shipped docs (samples/docs) into a temp folder (or reads --index),
retrieves once per question, and records the two grounding signals (term coverage of the best passage, best dense
score); a decision is then a pair of thresholds, so the grid costs nothing. The pick maximises balanced accuracy
on the tune half's questions in the documents' language (mean of answerable-answered and unanswerable-declined),
ties broken by fewer false refusals, then by the lower thresholds. Copy the printed pair into params.yaml.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from reprolab.config import load_section, with_overrides
from reprolab.evaluation.rag import load_labelled_set
from reprolab.rag.build import IndexConfig
from reprolab.rag.engine import RagEngine

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "samples" / "docs"


def ingest_samples(engine: RagEngine) -> None:
    for path in sorted(DOCS.glob("*.txt")):
        engine.documents.ingest(path.read_text(encoding="utf-8"), f"docs/{path.name}", {"title": path.stem})


def signals(cfg: IndexConfig, index: Path | None) -> list[dict]:
    questions = load_labelled_set(REPO / cfg.labelled_set, (DOCS / Path(cfg.labelled_document).name).read_text())
    with tempfile.TemporaryDirectory() as tmp:
        engine = RagEngine.open(cfg.rag, qdrant_path=(index or Path(tmp)) / "qdrant")
        try:
            if index is None:
                ingest_samples(engine)
            rows = []
            for q in questions:
                g = engine.answerer.ground(q.question, engine.retriever.retrieve(q.question))
                rows.append({"id": q.id, "half": q.half, "lang": q.lang, "answerable": q.answerable,
                             "coverage": g.term_coverage, "dense": g.dense_score})
        finally:
            engine.close()
    return rows


def rates(rows: list[dict], cov: float, dense: float) -> tuple[float, float, int, int]:
    """(answerable declined, unanswerable declined, n answerable, n unanswerable)."""
    declined = [not (r["coverage"] >= cov and r["dense"] >= dense) for r in rows]
    ans = [d for d, r in zip(declined, rows) if r["answerable"]]
    una = [d for d, r in zip(declined, rows) if not r["answerable"]]
    return float(np.mean(ans)) if ans else 0.0, float(np.mean(una)) if una else 0.0, len(ans), len(una)


def choose(rows: list[dict]) -> tuple[float, float]:
    best = None
    for cov in np.round(np.arange(0.0, 1.0001, 0.05), 2):
        for dense in np.round(np.arange(-0.1, 0.8001, 0.025), 3):
            fr, ud, _, _ = rates(rows, cov, dense)
            key = ((1 - fr + ud) / 2, -fr, -cov, -dense)
            if best is None or key > best[0]:
                best = (key, float(cov), float(dense))
    return best[1], best[2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--index", type=Path, help="an existing index folder (default: build the samples afresh)")
    parser.add_argument("--set", action="append", default=[], help="index.<key>=<value> override (YAML value)")
    args = parser.parse_args()
    cfg = with_overrides(load_section("index", IndexConfig, REPO / "params.yaml"),
                         [s.removeprefix("index.") for s in args.set], "--set")
    rows = signals(cfg, args.index)
    lang = "pt"
    tune = [r for r in rows if r["half"] == "tune" and r["lang"] == lang]
    cov, dense = choose(tune)
    current = (cfg.rag.answer.min_term_coverage, cfg.rag.answer.min_dense_score)
    print(f"chosen on the tune half ({len(tune)} {lang} questions): min_term_coverage={cov} min_dense_score={dense}"
          f"  (params.yaml now: {current[0]}, {current[1]})")
    print(f"{'slice':<14} {'thresholds':<12} {'answerable declined':>20} {'unanswerable declined':>22}")
    for half in ("tune", "report"):
        for lg in sorted({r["lang"] for r in rows}):
            part = [r for r in rows if r["half"] == half and r["lang"] == lg]
            for name, pair in (("chosen", (cov, dense)), ("params", current)):
                fr, ud, na, nu = rates(part, *pair)
                print(f"{half + '/' + lg:<14} {name:<12} {fr:>14.3f} (n={na:<2}) {ud:>16.3f} (n={nu:<2})")


if __name__ == "__main__":
    main()
