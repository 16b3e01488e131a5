"""Unit tests of the non-LLM extractor pieces: value normalisation, BIO spans, routing, per-example evidence."""

from __future__ import annotations

import pytest

from reprolab.evaluation.evidence import evaluate_variants
from reprolab.evaluation.extraction import Judged, confusions, evidence_summary, example_row, metric_specs
from reprolab.llm.classical import bio_labels, routing_threshold, rule_slots, tokenize
from reprolab.llm.values import normalize


@pytest.mark.parametrize("slot, text, value", [
    ("date", "3rd", {"day": 3, "month": 4, "year": 2022}),           # a bare day: its next occurrence
    ("date", "29th", {"day": 29, "month": 3, "year": 2022}),
    ("date", "next Sunday", {"day": 27, "month": 3, "year": 2022}),  # Sunday of next week
    ("date", "2019", {"day": 1, "month": 1, "year": 2019}),
    ("date", "4 months ago", {"day": 15, "month": 11, "year": 2021}),
    ("date", "16th of Apr", {"day": 16, "month": 4, "year": 2022}),
    ("date", "6th of January", {"day": 6, "month": 1, "year": 2023}),
    ("time", "20 past 7", {"hour": 7, "minute": 20}),
    ("time", "2 05 p.m.", {"hour": 14, "minute": 5}),
    ("time", "25 to 7 p.m.", {"hour": 18, "minute": 35}),
    ("time", "9:45 night", {"hour": 21, "minute": 45}),
    ("amount_of_money", "600£", {"amount": 600.0, "currency": "GBP"}),
    ("amount_of_money", "1 thousand dollars", {"amount": 1000.0, "currency": "USD"}),
    ("amount_of_money", "334", {"amount": 334.0, "currency": "ambiguous"}),
    ("date_period", "last week", {"type": "absolute", "from": {"day": 7, "month": 3, "year": 2022},
                                  "to": {"day": 13, "month": 3, "year": 2022}}),
    ("date_period", "last month", {"type": "absolute", "from": {"day": 1, "month": 2, "year": 2022},
                                   "to": {"day": 28, "month": 2, "year": 2022}}),
    ("date_period", "22nd of each month", {"type": "periodic"}),
    ("number", "second", 2),
    ("person_name", "mesha chung", "mesha chung"),
])
def test_normalize_follows_nlupp_conventions(slot, text, value):
    assert normalize(slot, text) == value


def test_normalize_returns_none_for_what_no_rule_reads():
    assert normalize("time", "whenever suits") is None
    assert normalize("date", "") is None


def test_bio_labels_mark_the_span_and_skip_a_missing_one():
    text = "send £20 to anna lee"
    tags = bio_labels(text, {"person_name": {"text": "anna lee"}, "date": {"text": "not in the text"}})
    assert [t for t, _, _ in tokenize(text)] == ["send", "£", "20", "to", "anna", "lee"]
    assert tags == ["O", "O", "O", "O", "B-person_name", "I-person_name"]


def test_rule_slots_find_amount_time_date():
    assert rule_slots("pay 50 dollars at 10:30 on 5th March") == {
        "amount_of_money": {"amount": 50.0, "currency": "USD"}, "time": {"hour": 10, "minute": 30},
        "date": {"day": 5, "month": 3, "year": 2022}}


def test_routing_threshold_reaches_the_precision_or_routes_everything():
    conf = [0.9, 0.8, 0.7, 0.6, 0.5]
    right = [True, True, False, True, False]
    assert routing_threshold(conf, right, 0.75) == 0.6   # top 4: 3 right of 4
    assert routing_threshold(conf, right, 1.0) == 0.8
    assert routing_threshold([0.5], [False], 0.9) == 1.01


def _judged(i, gold, pred, gold_slots=None, pred_slots=None, valid=True):
    return Judged(f"m{i}", frozenset(gold), gold_slots or {}, frozenset(pred), pred_slots or {}, valid, valid)


def test_example_rows_back_the_declared_metrics_with_intervals():
    rows = [example_row(_judged(i, ["card"], ["card"] if i % 2 else [], {"number": 2}, {"number": 2}), "hybrid")
            for i in range(20)]
    rows += [example_row(_judged(i, ["card"], [], {"number": 2}, {}), "classical") for i in range(20)]
    result = evaluate_variants(metric_specs(), rows)
    assert set(result) == {"hybrid", "classical"}
    hybrid = result["hybrid"]
    assert hybrid["intent_micro_f1"]["value"] == pytest.approx(2 * 10 / (2 * 10 + 10))
    assert hybrid["slot_f1"]["value"] == 1.0 and hybrid["n_messages"]["value"] == 20
    assert hybrid["intent_micro_f1"]["low"] < hybrid["intent_micro_f1"]["value"] < hybrid["intent_micro_f1"]["high"]
    assert result["classical"]["slot_f1"]["value"] == 0.0
    paired = evidence_summary(rows, "hybrid")["paired"]["classical"]
    assert paired["slot_f1"]["diff"] == 1.0 and paired["slot_f1"]["low"] > 0 and paired["slot_f1"]["n_shared"] == 20


def test_an_invalid_output_is_never_exact_and_confusions_pair_misses_with_false_alarms():
    row = example_row(_judged(0, [], [], valid=False), "zero_shot")
    assert row["exact"] is False and row["schema_valid"] is False
    rows = [example_row(_judged(i, ["balance"], ["card"]), "x") for i in range(3)]
    assert confusions(rows)[0] == {"gold": "balance", "predicted": "card", "count": 3}
