"""Tune the refusal thresholds (index.rag.answer: min_term_coverage, min_dense_score, confident_term_coverage,
min_dense_score_other_language) on the labelled set's TUNE half only, then show them on both halves.

    python -m bench.rag_refusal [--index DIR] [--max-false-refusal 0.10] [--set index.key=value ...]

It builds the documents collection of the shipped docs (samples/docs) into a temp folder (or reads --index),
retrieves once per question, and records the grounding signals (term coverage of the best passage, best dense
score, whether the question is in another language than the analysis'); every decision is then a threshold on
them, so the grids cost nothing. The picks, on the tune half:
- refusal (questions in the documents' language): the (coverage, dense) pair that declines the most
  unanswerable questions while declining at most --max-false-refusal of the answerable ones (the operating point
  favours answering: a wrongly declined question is the complaint the issue measured);
- confident: the coverage that maximises balanced accuracy; answers below it are marked unsure;
- other language: the dense floor, by the same rule as the refusal pair.
How well the refusal rule generalises is estimated by repeated stratified 5-fold cross-validation inside the
tune half (pick on four folds, count on the fifth), with the answer-type check (answer_type_check) as configured
and the other way round. Copy the printed values into params.yaml.
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
COVERAGES = np.round(np.arange(0.0, 1.0001, 0.05), 2)
DENSES = np.round(np.arange(-0.1, 0.9501, 0.025), 3)  # e5's cosines reach 0.94


def ingest_samples(engine: RagEngine) -> None:
    for path in sorted(DOCS.glob("*.txt")):
        engine.documents.ingest(path.read_text(encoding="utf-8"), f"docs/{path.name}", {"title": path.stem})


def signals(cfg: IndexConfig, index: Path | None) -> list[dict]:
    questions = load_labelled_set(REPO / cfg.labelled_set, (DOCS / Path(cfg.labelled_document).name).read_text())
    with tempfile.TemporaryDirectory() as tmp:
        # A fresh index in qdrant-client's local mode: Edge orders tied points differently in each process, which
        # moved this bench's figures from run to run.
        engine = RagEngine.open(cfg.rag, qdrant_path=(index or Path(tmp)) / "qdrant",
                                engine="edge" if index else "local")
        try:
            if index is None:
                ingest_samples(engine)
            rows = [signal_row(q, engine.answerer.ground(q.question, engine.retriever.retrieve(q.question)))
                    for q in questions]
        finally:
            engine.close()
    return rows


def signal_row(q, g) -> dict:
    """One question's grounding signals: every refusal decision below is a threshold on them."""
    return {"id": q.id, "half": q.half, "lang": q.lang, "answerable": q.answerable, "coverage": g.term_coverage,
            "dense": g.dense_score, "other": g.other_language,
            "type_ok": g.type_gap is None}  # reported whether or not the check is on


def declined(rows: list[dict], cov: float, dense: float, other_dense: float) -> np.ndarray:
    """A row's `type_ok` is its answer-type check, or True where the check is off (see `with_type_check`)."""
    return np.array([not (r["dense"] >= other_dense if r["other"] else
                          r["coverage"] >= cov and r["dense"] >= dense and r["type_ok"])
                     for r in rows], dtype=bool)


def with_type_check(rows: list[dict], on: bool) -> list[dict]:
    return rows if on else [dict(r, type_ok=True) for r in rows]


def rates(rows: list[dict], cov: float, dense: float, other_dense: float) -> tuple[float, float, int, int]:
    """(answerable declined, unanswerable declined, n answerable, n unanswerable)."""
    d = declined(rows, cov, dense, other_dense)
    ans = np.array([r["answerable"] for r in rows], dtype=bool)
    return (float(d[ans].mean()) if ans.any() else 0.0, float(d[~ans].mean()) if (~ans).any() else 0.0,
            int(ans.sum()), int((~ans).sum()))


def pick_refusal(rows: list[dict], max_fr: float, covs=COVERAGES, denses=DENSES) -> tuple[float, float]:
    """Most unanswerable declined with at most max_fr answerable declined; then fewer false refusals, then
    the lower thresholds."""
    best = None
    for cov in covs:
        for dense in denses:
            fr, ud, _, _ = rates(rows, cov, dense, -1.0)
            key = (fr <= max_fr + 1e-9, ud if fr <= max_fr + 1e-9 else -fr, -fr, -cov, -dense)
            if best is None or key > best[0]:
                best = (key, float(cov), float(dense))
    return best[1], best[2]


def pick_confident(rows: list[dict]) -> float:
    """The coverage of the best balanced accuracy, ties to the lower threshold. Coverage alone: "unsure" marks
    an answer given on little of the question's wording, whatever the answer-type check declined."""
    rows = with_type_check(rows, False)
    best = max(COVERAGES, key=lambda c: ((1 - rates(rows, c, -1.0, -1.0)[0] + rates(rows, c, -1.0, -1.0)[1]) / 2, -c))
    return float(best)


def pick_thresholds(tune: list[dict], max_fr: float) -> dict:
    """The four `index.rag.answer` thresholds picked on the tune half's rows (see the module's docstring)."""
    same, other = [r for r in tune if not r["other"]], [r for r in tune if r["other"]]
    cov, dense = pick_refusal(same, max_fr)
    # Another language's questions are decided on the dense score alone: the same rule with no coverage floor.
    other_dense = pick_refusal([dict(r, other=False) for r in other], max_fr, covs=[0.0])[1] if other else -1.0
    return {"min_term_coverage": cov, "min_dense_score": dense, "confident_term_coverage": pick_confident(same),
            "min_dense_score_other_language": other_dense}


def cross_validate(rows: list[dict], max_fr: float, repeats: int = 20, folds: int = 5) -> tuple[float, float]:
    """(answerable declined, unanswerable declined) on held-out folds of `rows` when the pair is picked on the
    others: an estimate of the refusal rule's error on questions it was not tuned on."""
    from sklearn.model_selection import RepeatedStratifiedKFold

    y = np.array([r["answerable"] for r in rows], dtype=int)
    fr, ud = [], []
    for train, test in RepeatedStratifiedKFold(n_splits=folds, n_repeats=repeats, random_state=0).split(y, y):
        cov, dense = pick_refusal([rows[i] for i in train], max_fr)
        d = declined([rows[i] for i in test], cov, dense, -1.0)
        fr += list(d[y[test] == 1])
        ud += list(d[y[test] == 0])
    return float(np.mean(fr)), float(np.mean(ud))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--index", type=Path, help="an existing index folder (default: build the samples afresh)")
    parser.add_argument("--max-false-refusal", type=float, default=0.10,
                        help="the share of answerable tune questions the refusal pair may decline")
    parser.add_argument("--set", action="append", default=[], help="index.<key>=<value> override (YAML value)")
    args = parser.parse_args()
    cfg = with_overrides(load_section("index", IndexConfig, REPO / "params.yaml"),
                         [s.removeprefix("index.") for s in args.set], "--set")
    checked = signals(cfg, args.index)
    type_check = cfg.rag.answer.answer_type_check
    rows = with_type_check(checked, type_check)
    tune = [r for r in rows if r["half"] == "tune"]
    same, other = [r for r in tune if not r["other"]], [r for r in tune if r["other"]]
    picked = pick_thresholds(tune, args.max_false_refusal)
    cov, dense, confident, other_dense = picked.values()
    cv_fr, cv_ud = cross_validate(same, args.max_false_refusal)
    # The same estimate with the answer-type check the other way round, to show what it adds or costs.
    flipped = [r for r in with_type_check(checked, not type_check) if r["half"] == "tune" and not r["other"]]
    cv_fr_flip, cv_ud_flip = cross_validate(flipped, args.max_false_refusal)
    a = cfg.rag.answer
    now = (a.min_term_coverage, a.min_dense_score, a.min_dense_score_other_language)
    print(f"picked on the tune half ({len(same)} questions in the documents' language, {len(other)} in another):\n"
          f"  min_term_coverage: {cov}  min_dense_score: {dense}  confident_term_coverage: {confident}  "
          f"min_dense_score_other_language: {other_dense}\n"
          f"  (params.yaml now: {now[0]}, {now[1]}, {a.confident_term_coverage}, {now[2]})\n"
          f"cross-validated inside the tune half (5 folds x 20), answer-type check {'on' if type_check else 'off'}: "
          f"answerable declined {cv_fr:.3f}, unanswerable declined {cv_ud:.3f}\n"
          f"  the same with the check {'off' if type_check else 'on'}: answerable declined {cv_fr_flip:.3f}, "
          f"unanswerable declined {cv_ud_flip:.3f}")
    print(f"{'slice':<14} {'thresholds':<12} {'answerable declined':>20} {'unanswerable declined':>22}")
    for half in ("tune", "report"):
        for lg in sorted({r["lang"] for r in rows}):
            part = [r for r in rows if r["half"] == half and r["lang"] == lg]
            for name, triple in (("picked", (cov, dense, other_dense)), ("params", now)):
                fr, ud, na, nu = rates(part, *triple)
                print(f"{half + '/' + lg:<14} {name:<12} {fr:>14.3f} (n={na:<2}) {ud:>16.3f} (n={nu:<2})")


if __name__ == "__main__":
    main()
