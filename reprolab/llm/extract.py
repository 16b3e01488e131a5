"""Serving-side extraction: message(s) in, validated `Extraction` out, whatever the message holds.

Constrained decoding makes every output schema-valid (an output the token budget cuts is closed with the shortest
schema-legal suffix); unconstrained output that does not validate becomes an empty Extraction with a warning in
the log (never an exception for bad input).
"""

from __future__ import annotations

import logging

from reprolab.llm import prompts
from reprolab.llm.generate import generate_batched
from reprolab.llm.schema import Extraction, Ontology, parse_extraction, task_json_schema

log = logging.getLogger(__name__)


class Extractor:
    def __init__(self, model, tokenizer, ontology: Ontology, *, style: str = "finetuned",
                 constrained: bool = True, max_new_tokens: int = 96, batch_size: int = 16):
        self.model, self.tokenizer, self.ontology = model, tokenizer, ontology
        self.style, self.constrained = style, constrained
        self.max_new_tokens, self.batch_size = max_new_tokens, batch_size
        self.schema = task_json_schema(ontology)

    def extract(self, messages: list[str]) -> list[Extraction]:
        texts = [
            prompts.chat_prompt(self.tokenizer, prompts.user_turn(self.style, self.ontology, m or ""))
            for m in messages
        ]
        gen = generate_batched(
            self.model, self.tokenizer, texts, self.max_new_tokens, self.batch_size,
            constraint_schema=self.schema if self.constrained else None,
        )
        results = []
        for message, text in zip(messages, gen.texts, strict=True):
            parsed = parse_extraction(text, self.schema)
            if not parsed.schema_valid:
                log.warning("output not schema-valid: returning an empty extraction",
                            extra={"output": text[:200], "message_chars": len(message or "")})
                results.append(Extraction())
            else:
                results.append(parsed.extraction)
        return results
