"""Structured-output metrics: validity, intent micro/macro F1, slot P/R/F1 on (slot, value) pairs, exact match.

Inputs are plain data (gold and predicted intents/slots plus validity flags), so the metrics are testable
without a model. Slot values compare by canonical JSON (key order and int/float spelling do not matter).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Judged:
    """One example: gold labels, predicted labels, and whether the raw output was valid JSON / schema."""

    id: str
    gold_intents: frozenset[str]
    gold_slots: dict
    pred_intents: frozenset[str]
    pred_slots: dict
    json_valid: bool
    schema_valid: bool


def canonical_value(value) -> str:
    """A value's identity for matching: 600 == 600.0; dict key order is irrelevant."""

    def norm(v):
        if isinstance(v, bool):
            return v
        if isinstance(v, (int, float)):
            return float(v)
        if isinstance(v, str):
            return v.strip().lower()
        if isinstance(v, dict):
            return {k: norm(x) for k, x in v.items()}
        if isinstance(v, list):
            return [norm(x) for x in v]
        return v

    return json.dumps(norm(value), sort_keys=True)


def slot_pairs(slots: dict) -> set[tuple[str, str]]:
    return {(name, canonical_value(value)) for name, value in slots.items()}


def prf(tp: int, fp: int, fn: int) -> tuple[float, float, float]:
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return p, r, f


def intent_counts(examples: Sequence[Judged]) -> dict[str, Counter]:
    """Per intent: tp, fp, fn over the examples (multi-label)."""
    counts: dict[str, Counter] = {}
    for ex in examples:
        for label in ex.gold_intents | ex.pred_intents:
            c = counts.setdefault(label, Counter())
            if label in ex.gold_intents and label in ex.pred_intents:
                c["tp"] += 1
            elif label in ex.pred_intents:
                c["fp"] += 1
            else:
                c["fn"] += 1
    return counts


def extraction_metrics(examples: Sequence[Judged], labels: Sequence[str] | None = None) -> dict[str, float]:
    """The flat metrics of one evaluation row.

    Macro F1 averages over `labels` (the ontology's intents that occur in the gold data) when given, else over
    every intent seen in gold or prediction.
    """
    n = len(examples)
    if n == 0:
        raise ValueError("no examples to evaluate")
    counts = intent_counts(examples)
    tp = sum(c["tp"] for c in counts.values())
    fp = sum(c["fp"] for c in counts.values())
    fn = sum(c["fn"] for c in counts.values())
    ip, ir, if1 = prf(tp, fp, fn)
    gold_labels = sorted({i for ex in examples for i in ex.gold_intents})
    macro_over = list(labels) if labels is not None else sorted(counts)
    macro_over = [label for label in macro_over if label in gold_labels] or gold_labels
    macro = [prf(counts.get(lb, Counter())["tp"], counts.get(lb, Counter())["fp"],
                 counts.get(lb, Counter())["fn"])[2] for lb in macro_over]
    stp = sfp = sfn = 0
    exact = 0
    for ex in examples:
        gold, pred = slot_pairs(ex.gold_slots), slot_pairs(ex.pred_slots)
        stp += len(gold & pred)
        sfp += len(pred - gold)
        sfn += len(gold - pred)
        # An output that is not a schema-valid object is never exact, even when the gold is empty and the
        # failed parse reads as empty.
        exact += int(ex.schema_valid and ex.gold_intents == ex.pred_intents and gold == pred)
    sp, sr, sf1 = prf(stp, sfp, sfn)
    return {
        "n": n,
        "json_valid_rate": sum(ex.json_valid for ex in examples) / n,
        "schema_valid_rate": sum(ex.schema_valid for ex in examples) / n,
        "intent_precision": ip,
        "intent_recall": ir,
        "intent_micro_f1": if1,
        "intent_macro_f1": sum(macro) / len(macro) if macro else 0.0,
        "slot_precision": sp,
        "slot_recall": sr,
        "slot_f1": sf1,
        "exact_match": exact / n,
    }


def per_intent_errors(examples: Sequence[Judged]) -> dict[str, dict]:
    """For the errors report: per intent support, tp/fp/fn, F1, and a few example ids of misses and false alarms."""
    report = {}
    for label, c in sorted(intent_counts(examples).items()):
        missed = [ex.id for ex in examples if label in ex.gold_intents and label not in ex.pred_intents]
        spurious = [ex.id for ex in examples if label in ex.pred_intents and label not in ex.gold_intents]
        report[label] = {
            "support": c["tp"] + c["fn"],
            "tp": c["tp"], "fp": c["fp"], "fn": c["fn"],
            "f1": round(prf(c["tp"], c["fp"], c["fn"])[2], 4),
            "missed": missed[:3],
            "spurious": spurious[:3],
        }
    return report


# ---- per-example evidence (reprolab.evaluation.evidence) ---------------------------------------------------

def example_row(ex: Judged, variant: str, **extra) -> dict:
    """One line of reports/llm/examples.jsonl: the labels, the per-example counts every metric sums, validity."""
    gold, pred = slot_pairs(ex.gold_slots), slot_pairs(ex.pred_slots)
    exact = bool(ex.schema_valid and ex.gold_intents == ex.pred_intents and gold == pred)
    return {
        "id": ex.id, "variant": variant,
        "gold_intents": sorted(ex.gold_intents), "pred_intents": sorted(ex.pred_intents),
        "gold_slots": ex.gold_slots, "pred_slots": ex.pred_slots,
        "intent_tp": len(ex.gold_intents & ex.pred_intents), "intent_fp": len(ex.pred_intents - ex.gold_intents),
        "intent_fn": len(ex.gold_intents - ex.pred_intents),
        "slot_tp": len(gold & pred), "slot_fp": len(pred - gold), "slot_fn": len(gold - pred),
        "json_valid": ex.json_valid, "schema_valid": ex.schema_valid, "exact": exact, "one": 1,
        **extra,
    }


def metric_specs():
    """The extractor's metrics, declared once (direction and how each is computed from the per-example rows)."""
    from reprolab.evaluation.evidence import MetricSpec

    return [
        MetricSpec("intent_micro_f1", "higher", "f1", ("intent_tp", "intent_fp", "intent_fn")),
        MetricSpec("slot_f1", "higher", "f1", ("slot_tp", "slot_fp", "slot_fn")),
        MetricSpec("exact_match", "higher", "mean", ("exact",)),
        MetricSpec("schema_valid_rate", "higher", "mean", ("schema_valid",)),
        MetricSpec("n_messages", "count", "count", ("one",)),
    ]


def per_label_f1(rows: Sequence[dict]) -> dict[str, dict]:
    """Per intent and per slot name: support, tp/fp/fn and F1 over the rows of one variant."""
    intents: dict[str, Counter] = {}
    slots: dict[str, Counter] = {}
    for row in rows:
        g, p = set(row["gold_intents"]), set(row["pred_intents"])
        for label in g | p:
            c = intents.setdefault(label, Counter())
            c["tp" if label in g and label in p else "fp" if label in p else "fn"] += 1
        gold, pred = slot_pairs(row["gold_slots"]), slot_pairs(row["pred_slots"])
        for name, value in gold | pred:
            c = slots.setdefault(name, Counter())
            c["tp" if (name, value) in gold and (name, value) in pred else
              "fp" if (name, value) in pred else "fn"] += 1

    def table(counts):
        return {k: {"support": c["tp"] + c["fn"], "tp": c["tp"], "fp": c["fp"], "fn": c["fn"],
                    "f1": round(prf(c["tp"], c["fp"], c["fn"])[2], 4)} for k, c in sorted(counts.items())}

    return {"intents": table(intents), "slots": table(slots)}


def confusions(rows: Sequence[dict], top: int = 10) -> list[dict]:
    """The most frequent intent mistakes: (missed gold intent, intent predicted instead) pairs, '-' for none."""
    pairs: Counter = Counter()
    for row in rows:
        g, p = set(row["gold_intents"]), set(row["pred_intents"])
        missed, spurious = sorted(g - p) or ["-"], sorted(p - g) or ["-"]
        if g == p:
            continue
        for m in missed:
            for s in spurious:
                pairs[(m, s)] += 1
    return [{"gold": m, "predicted": s, "count": n} for (m, s), n in pairs.most_common(top)]


def evidence_summary(rows: Sequence[dict], headline: str, seed: int = 0) -> dict:
    """Per variant: per-label F1 and confusions; and the headline's paired difference against every other
    variant (over the ids both evaluated: the LLM rows' subset, or the whole split) for the F1 metrics."""
    from reprolab.evaluation.evidence import by_variant, paired_change

    groups = by_variant(rows)
    specs = {s.name: s for s in metric_specs()}
    paired = {}
    for variant, group in groups.items():
        if variant == headline:
            continue
        paired[variant] = {}
        for name in ("intent_micro_f1", "slot_f1", "exact_match"):
            change = paired_change(specs[name], group, groups[headline], seed)
            paired[variant][name] = {"diff": round(change.diff, 4), "low": round(change.low, 4),
                                     "high": round(change.high, 4), "n_shared": change.n_shared}
    return {"per_label": {v: per_label_f1(g) for v, g in groups.items()},
            "confusions": {v: confusions(g) for v, g in groups.items()}, "paired": paired}
