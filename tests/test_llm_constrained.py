"""Constrained decoding: whatever the "model" prefers and however small the token budget, the output validates."""

from __future__ import annotations

import json

import jsonschema
import pytest
import torch

from reprolab.llm.schema import Ontology, parse_extraction, task_json_schema

ONTO = Ontology(intents={"how_much": "", "card": "", "cancel_close_leave_freeze": ""},
                slots={"amount_of_money": "", "company_name": "", "date_period": "", "date": ""})
SCHEMA = task_json_schema(ONTO)


@pytest.fixture(scope="module")
def tokenizer_data():
    from transformers import AutoTokenizer

    from reprolab.llm.constrained import enforcer_tokenizer_data
    from reprolab.llm.model import resolve_model_dir

    tok = AutoTokenizer.from_pretrained(resolve_model_dir("smollm2-135m-instruct"))
    return tok, enforcer_tokenizer_data(tok)


@pytest.mark.parametrize("prefix", [
    "", "{", '{"intents":["ca', '{"intents":["card",', '{"intents":[],"slots":{"amount_of_money":{"amount":1',
    '{"intents":[],"slots":{"date_period":{"ty', '{"intents":[],"slots":{"date":{"day":3,"mon',
    '{"intents":["how_much"],"slots":{"company_name":"a\\"b', '{"intents":[],"slots":{"amo',
])
def test_closing_suffix_completes_any_valid_prefix(prefix):
    from reprolab.llm.constrained import closing_suffix

    full = prefix + closing_suffix(prefix, SCHEMA)
    jsonschema.validate(json.loads(full), SCHEMA)


def test_intent_array_ok_rejects_repeats():
    from reprolab.llm.constrained import intent_array_ok

    names = sorted(ONTO.intents)
    assert intent_array_ok('{"intents":["card","how', names)
    assert not intent_array_ok('{"intents":["card","card"', names)
    assert not intent_array_ok('{"intents":["card","car', names)          # only "card" completes it
    assert not intent_array_ok('{"intents":["card","how_much","cancel_close_leave_freeze",', names)  # none left


def _decode(tok, data, budget, forced, prefer):
    """Run the constraint with an adversarial picker for `budget` steps, then finish the text."""
    from reprolab.llm.constrained import SchemaConstraint

    constraint = SchemaConstraint(data, SCHEMA, max_new_tokens=budget)
    prompt = tok("JSON:", add_special_tokens=False).input_ids
    seq = list(prompt)
    allowed = constraint(0, torch.tensor(seq))
    script = tok(forced, add_special_tokens=False).input_ids
    for step in range(budget):
        if step < len(script) and script[step] in allowed:
            nxt = script[step]          # follow the degenerate prefix while the constraint allows it
        else:
            options = [t for t in allowed if t != tok.eos_token_id] or allowed
            nxt = max(options, key=lambda t: prefer(tok.decode([t]), t))
        if nxt == tok.eos_token_id:
            break
        seq.append(nxt)
        allowed = constraint(0, torch.tensor(seq))
    return constraint.finish(tok.decode(seq[len(prompt):]))


@pytest.mark.parametrize("budget", [1, 3, 7, 16, 48])
@pytest.mark.parametrize("forced", [
    '{"intents":["how_much"],"slots":{"amount_of_money":{"amount":10.000',   # a number that never ends
    '{"intents":["card","card","card"',                                    # an array that loops
    '{"intents":[],"slots":{"company_name":"aaaaaaaaaaaa',                   # an open string
    '{"intents":[],"slots":{"date":{"day":3',                                # required keys still missing
])
def test_output_is_never_cut(tokenizer_data, budget, forced):
    tok, data = tokenizer_data
    # a "model" that never wants to stop: the longest non-EOS token it may take
    text = _decode(tok, data, budget, forced, lambda s, t: (len(s.strip(" \n")), -t))
    parsed = parse_extraction(text, SCHEMA)
    assert parsed.json_valid and parsed.schema_valid, text


def test_looping_model_cannot_repeat_intents(tokenizer_data):
    tok, data = tokenizer_data
    # a "model" that loves the label "card" and never wants to close the array
    text = _decode(tok, data, 48, '{"intents":["card"', lambda s, t: ("card" in s, "]" not in s, -t))
    parsed = parse_extraction(text, SCHEMA)
    assert parsed.schema_valid, text
    intents = json.loads(text)["intents"]
    assert len(intents) == len(set(intents)), text


@pytest.mark.parametrize("prefix", [
    '{"intents":[],"slots":{"date":{"day":1,"month":1,"year":2022},',   # the parser would allow '}' next
    '{"intents":["card",',                                             # closing here would repeat "card"
    '{"intents":[],"slots":{"company_name":"x" ,',
])
def test_finish_drops_a_trailing_comma(tokenizer_data, prefix):
    from reprolab.llm.constrained import SchemaConstraint

    _, data = tokenizer_data
    text = SchemaConstraint(data, SCHEMA).finish(prefix)
    parsed = parse_extraction(text, SCHEMA)
    assert parsed.schema_valid, text
    intents = json.loads(text)["intents"]
    assert len(intents) == len(set(intents)), text


def test_numbers_are_bounded(tokenizer_data):
    tok, data = tokenizer_data
    # a "model" that always wants one more digit
    text = _decode(tok, data, 48, '{"intents":[],"slots":{"amount_of_money":{"amount":10.',
                   lambda s, t: (s.strip().isdigit(), len(s), -t))
    parsed = parse_extraction(text, SCHEMA)
    assert parsed.schema_valid, text
    amount = text.split('"amount":')[1].split(",")[0].split("}")[0]
    assert len(amount.strip()) <= 16, text     # the cap is 12 characters; the last token may end past it
