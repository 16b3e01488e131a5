"""Structured-output metrics and the output contract, on hand-made predictions (no model)."""

from __future__ import annotations

import pytest

from reprolab.evaluation.extraction import Judged, canonical_value, extraction_metrics, per_intent_errors
from reprolab.llm.schema import Extraction, Ontology, first_json_object, parse_extraction, task_json_schema

DATE = {"day": 1, "month": 12, "year": 2022}


def judged(gold_i, pred_i, gold_s=None, pred_s=None, ok=True, id="x"):
    return Judged(id, frozenset(gold_i), gold_s or {}, frozenset(pred_i), pred_s or {}, ok, ok)


def test_perfect_predictions_score_one():
    exs = [judged(["card"], ["card"], {"date": DATE}, {"date": dict(DATE)}),
           judged(["greet", "card"], ["card", "greet"])]
    m = extraction_metrics(exs)
    assert m["intent_micro_f1"] == m["intent_macro_f1"] == m["slot_f1"] == m["exact_match"] == 1.0
    assert m["json_valid_rate"] == m["schema_valid_rate"] == 1.0


def test_micro_vs_macro_and_slot_counts():
    exs = [
        judged(["card"], ["card"]),
        judged(["card"], ["card"]),
        judged(["card"], ["card"]),
        judged(["loan"], ["card"], {"amount_of_money": {"amount": 5, "currency": "GBP"}},
               {"amount_of_money": {"currency": "GBP", "amount": 5.0}, "date": DATE}),
    ]
    m = extraction_metrics(exs)
    # intents: tp=3, fp=1 (card), fn=1 (loan) -> micro P=R=F1=0.75
    assert m["intent_micro_f1"] == pytest.approx(0.75)
    # per label: card P=3/4 R=1 F1=6/7; loan F1=0 -> macro 3/7
    assert m["intent_macro_f1"] == pytest.approx((6 / 7) / 2)
    # slots: amount matches despite 5 vs 5.0 and key order; date is a false positive
    assert m["slot_precision"] == pytest.approx(0.5) and m["slot_recall"] == 1.0
    assert m["exact_match"] == pytest.approx(0.75)


def test_invalid_outputs_count_against_validity_and_recall():
    m = extraction_metrics([judged(["card"], [], ok=False), judged(["card"], ["card"])])
    assert m["json_valid_rate"] == 0.5 and m["intent_recall"] == 0.5


def test_empty_gold_and_empty_prediction_is_an_exact_match():
    m = extraction_metrics([judged([], [])])
    assert m["exact_match"] == 1.0 and m["intent_micro_f1"] == 0.0


def test_an_unparsable_output_is_never_an_exact_match_even_against_an_empty_gold():
    m = extraction_metrics([judged([], [], ok=False), judged([], [])])
    assert m["exact_match"] == 0.5


def test_canonical_value_ignores_spelling_not_content():
    assert canonical_value({"amount": 5, "currency": "GBP"}) == canonical_value({"currency": "GBP", "amount": 5.0})
    assert canonical_value("Tesco ") == canonical_value("tesco")
    assert canonical_value(DATE) != canonical_value({**DATE, "day": 2})


def test_per_intent_errors_names_misses_and_false_alarms():
    report = per_intent_errors([judged(["loan"], ["card"], id="a"), judged(["card"], ["card"], id="b")])
    assert report["loan"]["missed"] == ["a"] and report["loan"]["support"] == 1
    assert report["card"]["spurious"] == ["a"] and report["card"]["tp"] == 1


ONTO = Ontology(intents={"card": "", "loan": ""}, slots={"date": "", "company_name": ""})
SCHEMA = task_json_schema(ONTO)


@pytest.mark.parametrize("text, json_ok, schema_ok, intents", [
    ('{"intents":["card"],"slots":{"date":{"day":1,"month":12,"year":2022}}}', True, True, ["card"]),
    ('{"intents":["unknown"],"slots":{}}', True, False, ["unknown"]),
    ('{"intents":["card"],"slots":{"date":"tomorrow"}}', True, False, ["card"]),
    ('Sure! {"intents":["loan"],"slots":{}} hope it helps', False, False, ["loan"]),
    ('{"intents":["card"],"slots":{', False, False, []),
    ("", False, False, []),
    ("[1, 2]", False, False, []),
])
def test_parse_extraction_judges_validity(text, json_ok, schema_ok, intents):
    parsed = parse_extraction(text, SCHEMA)
    assert (parsed.json_valid, parsed.schema_valid) == (json_ok, schema_ok)
    assert parsed.extraction.intents == intents


def test_first_json_object_respects_strings():
    assert first_json_object('x {"a": "}{"} y') == '{"a": "}{"}'


def test_completion_json_is_compact_sorted_and_parses_back():
    ex = Extraction(intents=["loan", "card"], slots={"date": DATE})
    text = ex.to_json()
    assert text.startswith('{"intents":["card","loan"]') and " " not in text
    assert parse_extraction(text, SCHEMA).schema_valid


@pytest.mark.parametrize("task", ["nlupp", "viggo"])
def test_gold_targets_of_both_tasks_fit_the_task_schema(task, sample_data):
    from reprolab.llm.tasks import load_task

    corpus, splits = sample_data
    onto, data = load_task(task, splits, corpus, ["banking", "hotels"])
    schema = task_json_schema(onto)
    valid = [parse_extraction(ex.target.to_json(), schema).schema_valid for ex in data["train"]]
    # NLU++ has a handful of off-contract values (currency "ambiguous", a date left as text): < 1%.
    assert sum(valid) / len(valid) > 0.99


def test_viggo_uses_its_official_splits_so_numbers_compare_with_published_ones(sample_data):
    import json

    from reprolab.llm.tasks import load_task

    corpus, splits = sample_data
    _, data = load_task("viggo", splits, corpus, [])
    source = {}
    for name in ("train", "validation", "test"):
        for line in (splits / "viggo" / f"{name}.jsonl").read_text(encoding="utf-8").splitlines():
            rec = json.loads(line)
            source[rec["id"]] = rec["source_split"]
    assert {source[ex.id] for ex in data["test"]} == {"test"}
    assert {source[ex.id] for ex in data["validation"]} == {"valid"}
    assert {source[ex.id] for ex in data["train"]} == {"train"}
    assert len(data["test"]) == sum(v == "test" for v in source.values())


def test_prompted_rows_are_told_nlupps_reference_date_and_the_finetuned_prompt_stays_short(sample_data):
    from reprolab.llm import prompts
    from reprolab.llm.tasks import load_task

    corpus, splits = sample_data
    onto, data = load_task("nlupp", splits, corpus, ["banking"])
    shot = data["train"][0]
    zero = prompts.user_turn("zero_shot", onto, "It was declined yesterday")
    few = prompts.user_turn("few_shot", onto, "It was declined yesterday", [shot])
    tuned = prompts.user_turn("finetuned", onto, "It was declined yesterday")
    assert "15 March 2022" in zero and "15 March 2022" in few
    assert "2022" not in tuned and len(tuned) < 100
    # the shared prefix (KV-cached once per row) still ends before the message
    assert zero.startswith(prompts.shared_prefix("zero_shot", onto)) and "declined" not in prompts.shared_prefix(
        "zero_shot", onto)
