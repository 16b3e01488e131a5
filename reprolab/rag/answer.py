"""Cited answers from retrieved passages.

Two steps, each reported as it is:
1. Grounding (always): decide from retrieval evidence whether the documents hold the answer (the share of the
   question's content terms found in the best passage, and the best dense score; a question in another language
   than the analysis' shares no terms with the documents, so it is decided on the dense score alone; every
   threshold is tuned on the labelled set's tune half, bench/rag_refusal.py), then quote the best-matching
   sentences of the top passages with their numbers. Whether those sentences hold the kind of answer asked for
   (a number for "quantos", answer_type.py) is always reported (`type_gap`) and declines only with
   `answer_type_check` on (off: docs/rag.md). The refusal threshold is set for few false refusals; an answer
   between it and the confident threshold is given, marked as unsure (`confident` false).
2. Generation (backend `local` or `mistral`): the packaged SmolLM2-135M-Instruct or the Mistral API writes a
   short answer from the numbered passages. The response keeps its text (`generated`) apart from the
   extractive quotes so the evaluation can score both. The default backend is `extractive`: on the reporting
   half the local model recalls fewer key facts than the quotes (docs/rag.md).
"""

from __future__ import annotations

import logging
import re
import threading
from dataclasses import dataclass, field

from reprolab.rag.answer_type import answer_type_gap
from reprolab.rag.config import AnswerConfig
from reprolab.rag.errors import GeneratorUnavailable
from reprolab.rag.retrieval import Passage
from reprolab.rag.sparse import Analyzer

log = logging.getLogger(__name__)

NOT_FOUND = "Os documentos não contêm a resposta a esta pergunta."
UNSURE = "Confiança baixa: os trechos abaixo podem não responder à pergunta."
SENTENCE_END = re.compile(r"(?<=[.!?…])\s+|\n+")
MISTRAL_SERVER = "https://api.mistral.ai"


@dataclass
class Grounding:
    answerable: bool
    term_coverage: float
    dense_score: float
    quotes: list[tuple[int, str]] = field(default_factory=list)  # (citation number, sentence)
    confident: bool = False  # answerable and past the confident threshold; an unsure answer says so
    other_language: bool = False  # the question is not in the analysis' language: decided on the dense score
    # Why the quoted sentences cannot hold the kind of answer asked for (answer_type.py), None when nothing is
    # missing or the question is in another language; it declines only with `answer_type_check` on.
    type_gap: str | None = None


@dataclass
class Answer:
    text: str
    answerable: bool
    generated: str | None  # the generator's own text, None when no generator ran
    backend: str  # who wrote `text`: extractive | local | mistral | none (declined)
    citations: list[int]
    grounding: Grounding


def term_coverage(question_terms: set[str], passage_terms: set[str]) -> float:
    """Share of the question's content terms (stems) present in the passage."""
    if not question_terms:
        return 0.0
    return len(question_terms & passage_terms) / len(question_terms)


def split_sentences(text: str) -> list[str]:
    return [s.strip() for s in SENTENCE_END.split(text) if len(s.strip()) > 3]


class Answerer:
    def __init__(self, config: AnswerConfig, analyzer: Analyzer, mistral_api_key: str | None = None,
                 mistral_url: str | None = None):
        self.config = config
        self.analyzer = analyzer
        self.backend = config.backend
        self.mistral_api_key = mistral_api_key
        self.mistral_url = mistral_url or MISTRAL_SERVER
        self._model = None
        self._mistral = None
        self._lock = threading.Lock()  # one generation at a time: the model is not re-entrant on 2 CPU cores

    def ground(self, question: str, passages: list[Passage]) -> Grounding:
        cfg = self.config
        q_terms = self.analyzer.terms(question, question=True)
        coverage = max((term_coverage(q_terms, self.analyzer.terms(p.text)) for p in passages), default=0.0)
        dense = max((p.dense_score for p in passages if p.dense_score is not None), default=-1.0)
        other = self.analyzer.other_language(question)
        quotes = self.quotes(q_terms, passages) if passages else []
        if other:  # no shared words to count: the (multilingual, in production) embedder's score decides
            gap = None
            answerable = bool(passages) and dense >= cfg.min_dense_score_other_language
            confident = False
        else:
            gap = answer_type_gap(question, " ".join(sentence for _, sentence in quotes), self.analyzer.language)
            answerable = (bool(passages) and coverage >= cfg.min_term_coverage and dense >= cfg.min_dense_score
                          and (gap is None or not cfg.answer_type_check))
            confident = answerable and coverage >= cfg.confident_term_coverage
        quotes = quotes if answerable else []
        return Grounding(answerable, round(coverage, 4), round(dense, 4), quotes, confident, other, gap)

    def quotes(self, q_terms: set[str], passages: list[Passage]) -> list[tuple[int, str]]:
        """The sentences sharing most question terms; none sharing any (another language): the best passage's
        opening sentences."""
        scored = []
        for number, passage in enumerate(passages, start=1):
            for position, sentence in enumerate(split_sentences(passage.text)):
                s = term_coverage(q_terms, self.analyzer.terms(sentence))
                # Earlier passages win ties: they rank higher after fusion.
                scored.append((s, -number, -position, number, sentence))
        scored.sort(reverse=True)
        if not scored or scored[0][0] <= 0:
            return [(1, s) for s in split_sentences(passages[0].text)[: self.config.quote_sentences]]
        quotes, seen = [], set()
        for s, _, _, number, sentence in scored:
            if s <= 0 or sentence in seen:
                continue
            seen.add(sentence)
            quotes.append((number, sentence))
            if len(quotes) == self.config.quote_sentences:
                break
        return quotes

    def answer(self, question: str, passages: list[Passage], generate: bool = True,
               backend: str | None = None) -> Answer:
        """`backend` overrides the configured one for this call (the evaluation scores each backend)."""
        backend = backend or self.backend
        grounding = self.ground(question, passages)
        if not grounding.answerable:
            return Answer(NOT_FOUND, False, None, "none", [], grounding)
        quoted = " ".join(f"\"{sentence}\" [{number}]" for number, sentence in grounding.quotes)
        generated = None
        if generate and backend != "extractive":
            generated = self._generate(question, passages, backend)
        else:
            backend = "extractive"
        text = f"{generated.strip()}\n\nTrechos: {quoted}" if generated else f"Segundo os documentos: {quoted}"
        if not grounding.confident:
            text = f"{UNSURE}\n{text}"
        cited = {int(c) for c in re.findall(r"\[(\d+)\]", generated or "") if 1 <= int(c) <= len(passages)}
        citations = sorted({n for n, _ in grounding.quotes} | cited)
        return Answer(text, True, generated, backend, citations, grounding)

    # --- generators ---
    def prompt(self, question: str, passages: list[Passage]) -> str:
        context = "\n".join(f"[{i}] {p.text}" for i, p in enumerate(passages, start=1))
        return (
            "Responda à pergunta em português usando apenas os trechos abaixo. Cite os trechos usados com [n]. "
            f"Se os trechos não contêm a resposta, diga: \"{NOT_FOUND}\"\n\nTrechos:\n{context}\n\n"
            f"Pergunta: {question}\nResposta:"
        )

    def _generate(self, question: str, passages: list[Passage], backend: str) -> str:
        prompt = self.prompt(question, passages)
        if backend == "mistral":
            return self._generate_mistral(prompt)
        return self._generate_local(prompt)

    def _generate_mistral(self, prompt: str) -> str:
        from mistralai.client import Mistral  # 3.x no longer exports the client at the top level

        if not self.mistral_api_key:
            raise GeneratorUnavailable("the mistral answer backend needs MISTRAL_API_KEY")
        if self._mistral is None:
            self._mistral = Mistral(api_key=self.mistral_api_key, server_url=self.mistral_url,
                                    timeout_ms=int(self.config.mistral_timeout_s * 1000))
        try:
            response = self._mistral.chat.complete(
                model=self.config.mistral_model,
                messages=[{"role": "user", "content": prompt}],
                max_tokens=self.config.max_new_tokens * 4,
                temperature=0.0,
            )
            return response.choices[0].message.content or ""
        except Exception as e:  # the SDK raises SDKError, httpx errors or timeouts: all mean "Mistral is down"
            log.warning("mistral generation failed", extra={"error": str(e)[:300]})
            raise GeneratorUnavailable(f"the Mistral API did not answer ({type(e).__name__}: {str(e)[:200]}); "
                                       "retry, or ask with generate=false for the extractive answer") from e

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
