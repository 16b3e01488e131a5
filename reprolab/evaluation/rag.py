"""RAG evaluation on a labelled question set: retrieval hit@k and MRR against gold evidence passages, key-fact
recall of the answers, and the share of unanswerable questions the system declines."""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from reprolab.errors import DatasetError


@dataclass
class LabelledQuestion:
    id: str
    question: str
    answerable: bool = True
    evidence: list[str] = field(default_factory=list)
    key_facts: list[list[str]] = field(default_factory=list)  # each fact: accepted spellings


def load_labelled_set(path: Path, document_text: str | None = None) -> list[LabelledQuestion]:
    """Read the set; with the document's text, check that every gold passage is an exact substring of it."""
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise DatasetError(f"labelled QA set {path} cannot be read: {e}") from e
    questions = []
    for item in raw.get("questions", []):
        q = LabelledQuestion(item["id"], item["question"], item.get("answerable", True),
                             item.get("evidence", []), item.get("key_facts", []))
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


def key_fact_recall(answer: str, key_facts: list[list[str]]) -> float:
    if not key_facts:
        return 1.0
    a = _fold(answer)
    return sum(any(_fold(s) in a for s in fact) for fact in key_facts) / len(key_facts)


@dataclass
class RagOutcome:
    """What the system returned for one question."""

    passages: list[str]
    answer: str
    declined: bool
    generated: str | None = None


def evaluate_rag(questions: list[LabelledQuestion], ask: Callable[[str], RagOutcome],
                 ks: tuple[int, ...] = (1, 5)) -> tuple[dict, list[dict]]:
    """Metrics (flat enough for `dvc metrics`) and one row per question."""
    rows = []
    for q in questions:
        out = ask(q.question)
        row = {"id": q.id, "question": q.question, "answerable": q.answerable, "declined": out.declined,
               "answer": out.answer}
        if q.answerable:
            row["rank"] = first_hit_rank(out.passages, q.evidence)
            row["key_fact_recall"] = 0.0 if out.declined else key_fact_recall(out.answer, q.key_facts)
            if out.generated is not None:
                row["generated_key_fact_recall"] = key_fact_recall(out.generated, q.key_facts)
        rows.append(row)
    answerable = [r for r in rows if r["answerable"]]
    unanswerable = [r for r in rows if not r["answerable"]]
    retrieval = {f"hit@{k}": _mean([r["rank"] is not None and r["rank"] <= k for r in answerable]) for k in ks}
    retrieval["mrr"] = _mean([1.0 / r["rank"] if r["rank"] else 0.0 for r in answerable])
    answers = {
        "key_fact_recall": _mean([r["key_fact_recall"] for r in answerable]),
        "refusal_accuracy": _mean([r["declined"] for r in unanswerable]),
        "false_refusal_rate": _mean([r["declined"] for r in answerable]),
    }
    generated = [r["generated_key_fact_recall"] for r in answerable if "generated_key_fact_recall" in r]
    if generated:
        answers["generated_key_fact_recall"] = _mean(generated)
    counts = {"answerable": len(answerable), "unanswerable": len(unanswerable)}
    return {"retrieval": retrieval, "answers": answers, "questions": counts}, rows


def _mean(values) -> float:
    values = [float(v) for v in values]
    return round(sum(values) / len(values), 4) if values else 0.0
