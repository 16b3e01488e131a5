"""Cited answers from retrieved passages.

Two steps, each reported as it is:
1. Grounding (always): decide from retrieval evidence whether the documents hold the answer (the IDF-weighted
   share of the question's content terms found in the best passage, and the best dense score), then quote the
   best-matching sentences of the top passages with their citation numbers.
2. Generation (optional): the Mistral API when a key is configured, else the packaged SmolLM2-135M-Instruct,
   writes a short answer from the numbered passages. A 135M model answers Portuguese poorly; the response keeps
   its text (`generated`) apart from the extractive quotes so the evaluation can score both.
"""

from __future__ import annotations

import logging
import math
import re
import threading
from dataclasses import dataclass, field

from reprolab.rag.config import AnswerConfig
from reprolab.rag.retrieval import LexicalIndex, Passage

log = logging.getLogger(__name__)

NOT_FOUND = "Os documentos não contêm a resposta a esta pergunta."
SENTENCE_END = re.compile(r"(?<=[.!?…])\s+|\n+")


@dataclass
class Grounding:
    answerable: bool
    term_coverage: float
    dense_score: float
    quotes: list[tuple[int, str]] = field(default_factory=list)  # (citation number, sentence)


@dataclass
class Answer:
    text: str
    answerable: bool
    generated: str | None  # the generator's own text, None when no generator ran
    backend: str
    citations: list[int]
    grounding: Grounding


def idf_table(lexical: LexicalIndex) -> tuple[dict[str, float], int]:
    df: dict[str, int] = {}
    for node in lexical.nodes:
        for term in lexical.terms(node.get_content()):
            df[term] = df.get(term, 0) + 1
    return {t: math.log((len(lexical.nodes) + 1) / (c + 0.5)) for t, c in df.items()}, len(lexical.nodes)


def term_coverage(question_terms: set[str], passage_terms: set[str], idf: dict[str, float], n_docs: int) -> float:
    """IDF-weighted share of the question's terms present in the passage; unseen terms weigh the most."""
    unseen = math.log((n_docs + 1) / 0.5)
    total = sum(idf.get(t, unseen) for t in question_terms)
    if total == 0:
        return 0.0
    return sum(idf.get(t, unseen) for t in question_terms & passage_terms) / total


def split_sentences(text: str) -> list[str]:
    return [s.strip() for s in SENTENCE_END.split(text) if len(s.strip()) > 3]


class Answerer:
    def __init__(self, config: AnswerConfig, mistral_api_key: str | None = None):
        self.config = config
        self.mistral_api_key = mistral_api_key
        self.backend = "mistral" if mistral_api_key else config.backend
        self._model = None
        self._lock = threading.Lock()  # one generation at a time: the model is not re-entrant on 2 CPU cores
        self._idf_for: int | None = None
        self._idf: tuple[dict[str, float], int] = ({}, 0)

    def ground(self, question: str, passages: list[Passage], lexical: LexicalIndex) -> Grounding:
        if id(lexical.nodes) != self._idf_for:
            self._idf, self._idf_for = idf_table(lexical), id(lexical.nodes)
        idf, n = self._idf
        q_terms = lexical.terms(question, question=True)
        coverage = max((term_coverage(q_terms, lexical.terms(p.text), idf, n) for p in passages), default=0.0)
        dense = max((p.dense_score for p in passages if p.dense_score is not None), default=-1.0)
        answerable = bool(passages) and coverage >= self.config.min_term_coverage and dense >= self.config.min_dense_score
        quotes = []
        if answerable:
            scored = []
            for number, passage in enumerate(passages, start=1):
                for position, sentence in enumerate(split_sentences(passage.text)):
                    s = term_coverage(q_terms, lexical.terms(sentence), idf, n)
                    # Earlier passages win ties: they rank higher after fusion.
                    scored.append((s, -number, -position, number, sentence))
            scored.sort(reverse=True)
            seen = set()
            for s, _, _, number, sentence in scored:
                if s <= 0 or sentence in seen:
                    continue
                seen.add(sentence)
                quotes.append((number, sentence))
                if len(quotes) == self.config.quote_sentences:
                    break
        return Grounding(answerable, round(coverage, 4), round(dense, 4), quotes)

    def answer(self, question: str, passages: list[Passage], lexical: LexicalIndex, generate: bool = True) -> Answer:
        grounding = self.ground(question, passages, lexical)
        if not grounding.answerable:
            return Answer(NOT_FOUND, False, None, "none", [], grounding)
        quoted = " ".join(f"\"{sentence}\" [{number}]" for number, sentence in grounding.quotes)
        generated = None
        backend = "extractive"
        if generate and self.backend != "extractive":
            generated = self._generate(question, passages)
            backend = self.backend
        text = f"{generated.strip()}\n\nTrechos: {quoted}" if generated else f"Segundo os documentos: {quoted}"
        citations = sorted({n for n, _ in grounding.quotes} | set(int(c) for c in re.findall(r"\[(\d+)\]", generated or "")
                                                                   if 1 <= int(c) <= len(passages)))
        return Answer(text, True, generated, backend, citations, grounding)

    # --- generators ---
    def prompt(self, question: str, passages: list[Passage]) -> str:
        context = "\n".join(f"[{i}] {p.text}" for i, p in enumerate(passages, start=1))
        return (
            "Responda à pergunta em português usando apenas os trechos abaixo. Cite os trechos usados com [n]. "
            f"Se os trechos não contêm a resposta, diga: \"{NOT_FOUND}\"\n\nTrechos:\n{context}\n\n"
            f"Pergunta: {question}\nResposta:"
        )

    def _generate(self, question: str, passages: list[Passage]) -> str:
        prompt = self.prompt(question, passages)
        if self.backend == "mistral":
            return self._generate_mistral(prompt)
        return self._generate_local(prompt)

    def _generate_mistral(self, prompt: str) -> str:
        from mistralai import Mistral

        client = Mistral(api_key=self.mistral_api_key)
        response = client.chat.complete(
            model=self.config.mistral_model,
            messages=[{"role": "user", "content": prompt}],
            max_tokens=self.config.max_new_tokens * 4,
            temperature=0.0,
        )
        return response.choices[0].message.content or ""

    def load_local(self):
        if self._model is None:
            import torch

            from reprolab.llm.model import load_chat_model

            torch.manual_seed(0)
            self._model = load_chat_model(self.config.local_model)
        return self._model

    def _generate_local(self, prompt: str) -> str:
        import torch

        with self._lock:
            model, tokenizer = self.load_local()
            inputs = tokenizer.apply_chat_template(
                [{"role": "user", "content": prompt}], add_generation_prompt=True, return_tensors="pt", return_dict=True
            )
            with torch.inference_mode():
                out = model.generate(**inputs, max_new_tokens=self.config.max_new_tokens, do_sample=False,
                                     repetition_penalty=1.2, pad_token_id=tokenizer.pad_token_id)
            return tokenizer.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True).strip()
