"""RAG evaluation on a labelled question set: one row per (question, answer backend) for the evidence contract
(reprolab.evaluation.evidence), and the metrics declared once here.

Retrieval: the rank of the first passage holding gold evidence (hit@k, MRR). Answers: key-fact recall (a
declined answerable question finds none), and the share of answerable / unanswerable questions declined.
The set has a fixed `half` per question: thresholds are tuned on "tune", figures are reported on "report",
and questions in another language than the documents' are reported apart.
"""

from __future__ import annotations

import json
import statistics
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from reprolab.errors import DatasetError
from reprolab.evaluation.evidence import MetricSpec

HALVES = ("tune", "report")
RAG_SPECS = (
    MetricSpec("hit@5", "higher", "mean", ("hit_at_5",), where="answerable"),
    MetricSpec("hit@1", "higher", "mean", ("hit_at_1",), where="answerable"),
    MetricSpec("mrr", "higher", "mean", ("reciprocal_rank",), where="answerable"),
    MetricSpec("false_refusal_rate", "lower", "mean", ("declined",), where="answerable"),
    MetricSpec("unanswerable_declined_rate", "higher", "mean", ("declined",), where="unanswerable"),
    MetricSpec("key_fact_recall", "higher", "ratio", ("key_facts_found", "key_facts"), where="answerable"),
)


@dataclass
class LabelledQuestion:
    id: str
    question: str
    half: str
    lang: str = "pt"
    answerable: bool = True
    evidence: list[str] = field(default_factory=list)
    key_facts: list[list[str]] = field(default_factory=list)  # each fact: accepted spellings


def load_labelled_set(path: Path, document_text: str | None = None) -> list[LabelledQuestion]:
    """Read the set; with the document's text, check that every gold passage is an exact substring of it."""
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise DatasetError(f"labelled QA set {path} cannot be read: {e}") from e
    questions, seen = [], set()
    for item in raw.get("questions", []):
        try:
            q = LabelledQuestion(item["id"], item["question"], item["half"], item.get("lang", "pt"),
                                 item.get("answerable", True), item.get("evidence", []), item.get("key_facts", []))
        except KeyError as e:
            raise DatasetError(f"{path}: question {item.get('id', '?')} has no {e.args[0]!r}") from None
        if q.id in seen:
            raise DatasetError(f"{path}: question id {q.id} appears twice")
        seen.add(q.id)
        if q.half not in HALVES:
            raise DatasetError(f"{path}: {q.id} has half {q.half!r}; use one of {HALVES}")
        if q.answerable and not q.evidence:
            raise DatasetError(f"{path}: answerable question {q.id} has no gold evidence")
        if document_text is not None:
            missing = [e for e in q.evidence if e not in document_text]
            if missing:
                raise DatasetError(f"{path}: {q.id} evidence is not an exact substring of the document: {missing[0]!r}")
        questions.append(q)
    if not questions:
        raise DatasetError(f"{path} holds no questions")
    return questions


def _fold(text: str) -> str:
    return " ".join(unicodedata.normalize("NFC", text).casefold().split())


def passage_hits_evidence(passage: str, evidence: list[str], min_share: float = 0.5) -> bool:
    """A passage supports the answer when it holds a gold passage, or (a chunk boundary cut it) at least
    `min_share` of one as a contiguous piece."""
    p = _fold(passage)
    for gold in evidence:
        g = _fold(gold)
        if g in p:
            return True
        need = max(1, int(len(g) * min_share))
        if any(g[i : i + need] in p for i in range(0, len(g) - need + 1)):
            return True
    return False


def first_hit_rank(passages: list[str], evidence: list[str]) -> int | None:
    for rank, text in enumerate(passages, start=1):
        if passage_hits_evidence(text, evidence):
            return rank
    return None


def key_facts_found(answer: str, key_facts: list[list[str]]) -> int:
    a = _fold(answer)
    return sum(any(_fold(s) in a for s in fact) for fact in key_facts)


def key_fact_recall(answer: str, key_facts: list[list[str]]) -> float:
    if not key_facts:
        return 1.0
    return key_facts_found(answer, key_facts) / len(key_facts)


@dataclass
class RagOutcome:
    """What the system returned for one question with one backend."""

    passages: list[str]
    answer: str  # the text scored for key facts (a generator's own text, without the quotes beside it)
    declined: bool
    latency_ms: float = 0.0  # goes to the timing rows, never into the evidence rows (those must rebuild bytewise)
    confident: bool = True  # False: answered, marked unsure


def example_row(q: LabelledQuestion, variant: str, out: RagOutcome) -> dict:
    """The per-example row of the evidence contract: only what a rebuild reproduces exactly (no timing)."""
    rank = first_hit_rank(out.passages, q.evidence) if q.answerable else None
    found = 0 if out.declined or not q.answerable else key_facts_found(out.answer, q.key_facts)
    return {
        "id": q.id, "variant": variant, "half": q.half, "lang": q.lang,
        "answerable": q.answerable, "unanswerable": not q.answerable, "declined": out.declined,
        "unsure": not out.declined and not out.confident,
        "gold_rank": rank, "hit_at_1": rank is not None and rank <= 1, "hit_at_5": rank is not None and rank <= 5,
        "reciprocal_rank": 1.0 / rank if rank else 0.0,
        "key_facts_found": found, "key_facts": len(q.key_facts) if q.answerable else 0,
    }


def slice_variant(backend: str, half: str, lang: str, document_lang: str = "pt") -> str:
    """Variant names: the backend on the reporting half in the documents' language is the bare backend name
    (the headline); other slices add the language and/or `_tune`."""
    name = backend if lang == document_lang else f"{backend}_{lang}"
    return name if half == "report" else f"{name}_tune"


def evaluate_rag(questions: list[LabelledQuestion], ask: Callable[[LabelledQuestion, str], RagOutcome],
                 backends: dict[str, set[str]]) -> tuple[list[dict], list[dict]]:
    """(evidence rows, timing rows) for every question and backend; `backends` maps a backend to the halves it
    is run on. Timing is kept apart: it differs on every run, the evidence rows must not."""
    rows, timings = [], []
    for q in questions:
        for backend, halves in backends.items():
            if q.half in halves:
                out = ask(q, backend)
                row = example_row(q, slice_variant(backend, q.half, q.lang), out)
                rows.append(row)
                timings.append({"id": q.id, "variant": row["variant"], "declined": out.declined,
                                "latency_ms": round(out.latency_ms, 1)})
    return rows, timings


def latency_p50(timings: list[dict]) -> dict[str, float]:
    """Median answer latency (ms) per variant, over the questions that got an answer."""
    by: dict[str, list[float]] = {}
    for r in timings:
        if not r["declined"]:
            by.setdefault(r["variant"], []).append(r["latency_ms"])
    return {v: round(statistics.median(ms), 1) for v, ms in sorted(by.items())}
