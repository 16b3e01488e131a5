"""Constrained decoding: even an adversarial "model" that always prefers to keep going ends with valid JSON."""

from __future__ import annotations

import json

import pytest
import torch

from reprolab.llm.schema import Ontology, parse_extraction, task_json_schema

ONTO = Ontology(intents={"how_much": "", "card": ""}, slots={"amount_of_money": "", "company_name": ""})


@pytest.fixture(scope="module")
def tokenizer_data():
    from transformers import AutoTokenizer

    from reprolab.llm.constrained import enforcer_tokenizer_data
    from reprolab.llm.model import resolve_model_dir

    tok = AutoTokenizer.from_pretrained(resolve_model_dir("smollm2-135m-instruct"))
    return tok, enforcer_tokenizer_data(tok)


@pytest.mark.parametrize("forced", [
    pytest.param(
        '{"intents":["how_much"],"slots":{"amount_of_money":{"amount":10.000',   # a number that never ends
        marks=pytest.mark.xfail(strict=False, reason=(
            "lm-format-enforcer lets '}' follow ',' once every allowed key of an object is used, so an "
            "adversarial picker can write '},}}'; real models did not in the stage (see reports/llm)")),
    ),
    '{"intents":["card","card","card"',                                          # an array that loops
    '{"intents":[],"slots":{"company_name":"aaaaaaaaaaaa',                      # an open string
])
def test_budgeted_constraint_always_closes(tokenizer_data, forced):
    from reprolab.llm.constrained import SchemaConstraint

    tok, data = tokenizer_data
    budget = 64
    schema = task_json_schema(ONTO)
    constraint = SchemaConstraint(data, schema, max_new_tokens=budget)
    prompt = tok("JSON:", add_special_tokens=False).input_ids
    seq = list(prompt)
    allowed = constraint(0, torch.tensor(seq))
    script = tok(forced, add_special_tokens=False).input_ids
    for step in range(budget):
        if step < len(script) and script[step] in allowed:
            nxt = script[step]          # follow the degenerate prefix while the schema allows it
        else:
            # a "model" that never wants to stop: the longest non-EOS token it may take
            options = [t for t in allowed if t != tok.eos_token_id] or allowed
            nxt = max(options, key=lambda t: (len(tok.decode([t]).strip(" \n")), -t))
        if nxt == tok.eos_token_id:
            break
        seq.append(nxt)
        allowed = constraint(0, torch.tensor(seq))
    text = tok.decode(seq[len(prompt):])
    parsed = parse_extraction(text, schema)
    assert parsed.json_valid and parsed.schema_valid, text
    json.loads(text)
