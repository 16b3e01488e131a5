"""One page on the extractor for readers who will not read code: reports/presentation/extractor.md.

Everything on the page comes from what the finetune_mistral stage wrote (reports/llm/evaluation.json and
examples.jsonl): the table, the intervals, the costs, and the real messages shown as successes and failures.
"""

from __future__ import annotations

import json
from pathlib import Path

from reprolab.data.atomic import write_text
from reprolab.evaluation.evidence import read_examples

ROW_NAMES = {
    "zero_shot": "Small LLM, instructions only",
    "zero_shot_constrained": "Small LLM, instructions only, output forced to the schema",
    "few_shot": "Small LLM, 3 similar examples in the prompt",
    "few_shot_constrained": "Small LLM, 3 examples, output forced to the schema",
    "finetuned": "Small LLM fine-tuned on the training messages (LoRA)",
    "finetuned_constrained": "Fine-tuned small LLM, output forced to the schema",
    "classical": "Sentence embeddings + logistic regression, pattern rules for values",
    "hybrid": "Chosen system: classifier for requests + trained value tagger",
}
ORDER = ("zero_shot", "zero_shot_constrained", "few_shot", "few_shot_constrained", "finetuned",
         "finetuned_constrained", "classical", "hybrid")


# The production profile (Mistral-7B QLoRA, or Mistral's fine-tuning API) was not run here: no GPU was lent.
# What the sources that could be read say (docs/extraction.md lists them and what could not be read).
PRODUCTION_OUTLOOK = [
    "Not measured here: the production profile (Mistral-7B fine-tuned with QLoRA on a GPU, or through Mistral's "
    "fine-tuning API) needs a GPU or an API key this machine did not have. What the published work we could read "
    "suggests:",
    "- NLU++ itself (Casanueva et al., 2022, arXiv 2204.13021) reports that current models find the dataset hard, "
    "above all with little training data; its multi-label requests are where a plain classifier stays strong.",
    "- On a multi-label request task of the same kind (MultiWOZ), Mistral-7B prompted with 20 examples reached a "
    "weighted F1 of about 0.50 and lost to a supervised BERT classifier (TU Berlin, 2025; "
    "chatpaper.com/chatpaper/paper/188023).",
    "- Fine-tuning an instruction-tuned model helps most on *values* (slot filling): ILLUMINER (Mirza et al., 2024, "
    "arXiv 2403.17536; FLAN-T5 11B) reports 11-32 points of slot F1 over GPT-3.5 prompted with examples, on "
    "standard benchmarks (not NLU++).",
    "- So the expectation is: requests no better than the served classifier (0.90), values possibly above its 0.62 "
    "(names and relative dates are where a 7B model should help). The decision rule stays the same: switch only "
    "if the 7B model is better on the same test messages, with the paired interval above zero.",
]


def _ci(est: dict) -> str:
    return f"{est['value']:.2f} ({est['low']:.2f}-{est['high']:.2f})"


def _cost(cost: dict | None, seconds: dict | None) -> str:
    """Tokens per 1,000 messages (deterministic, from evaluation.json) and CPU seconds per 1,000 messages
    (measured, from the gitignored timing.json: "not measured" in a checkout where the stage has not run)."""
    if not cost:
        return "-"
    cpu = (seconds or {}).get("cpu_seconds_per_1000")
    tokens = cost.get("tokens_per_1000") or 0
    parts = [f"{cpu:,.0f} CPU s" if cpu is not None else "CPU s not measured here"]
    if tokens:
        parts.append(f"{tokens / 1000:,.0f}k tokens")
    return ", ".join(parts)


def _show(row: dict) -> str:
    slots = ", ".join(f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in sorted(row["pred_slots"].items()))
    gold = ", ".join(f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in sorted(row["gold_slots"].items()))
    return (f"- \"{row.get('text', row['id'])}\"  \n  found: requests {row['pred_intents'] or '[]'}"
            f"{'; values ' + slots if slots else ''}  \n  expected: {row['gold_intents'] or '[]'}"
            f"{'; values ' + gold if gold else ''}")


def pick_examples(rows: list[dict], variant: str, k: int = 3) -> tuple[list[dict], list[dict]]:
    """k successes (exactly right, with at least one value, most confident first) and k failures (wrong
    values or requests, the most confident first: the mistakes a person would not have been shown)."""
    mine = [r for r in rows if r["variant"] == variant]
    key = lambda r: (-(r.get("confidence") or 0.0), r["id"])  # noqa: E731
    wins = sorted((r for r in mine if r["exact"] and r["gold_slots"]), key=key)[:k]
    losses = sorted((r for r in mine if not r["exact"]), key=key)[:k]
    return wins, losses


def render_presentation(report_dir: Path = Path("reports/llm"),
                        out: Path = Path("reports/presentation/extractor.md")) -> Path:
    """Write the one-page presentation from the stage's evaluation.json and examples.jsonl; returns `out`."""
    evaluation = json.loads((report_dir / "evaluation.json").read_text(encoding="utf-8"))
    rows = read_examples(report_dir / "examples.jsonl")
    variants, extra = evaluation["variants"], evaluation.get("extra", {})
    headline = evaluation["headline_variant"]
    costs, data, routing = extra.get("costs", {}), extra.get("data", {}), extra.get("routing", {})
    timing_file = report_dir / "timing.json"
    seconds = json.loads(timing_file.read_text(encoding="utf-8")).get("costs", {}) if timing_file.is_file() else {}
    n_test = data.get("test") or max(v["n_messages"]["value"] for v in variants.values())
    lines = [
        "# Reading customer messages automatically: the banking extractor",
        "",
        "## The use case",
        "A bank's support inbox receives free-text messages (\"I was charged twice for 53 dollars at Blues Kitchen "
        "yesterday\"). The extractor reads each one and returns what the customer wants (one or more *requests*, "
        "e.g. `card`, `transfer_payment_deposit`, `wrong_notworking_notshowing`) and the *values* in it (amounts, "
        "dates, times, names, shops) in a fixed machine-readable form. That lets a message be routed to the right "
        "team and a form be pre-filled, instead of an agent re-typing it. Each answer carries a confidence, so "
        "uncertain messages can go to a person.",
        "",
        "## The data and how it was split",
        f"NLU++ (PolyAI, public), banking domain: {data.get('train', '?')} training messages, "
        f"{data.get('validation', '?')} validation messages (every choice of settings was made on these), and "
        f"{n_test} test messages used only for the figures below. Messages are split by a stable hash of the "
        "message, so the same message never lands in two splits.",
        "",
        "## From baseline to final system",
        "Figures on the test messages, with the 95% interval in brackets (bootstrap over messages). "
        "*Requests F1* and *values F1* run from 0 to 1 (1 = every request / value found, nothing invented); "
        "*fully right* is the share of messages where everything is exactly right.",
        "",
        "| system | requests F1 | values F1 | fully right | messages | cost per 1,000 messages (2-core CPU) |",
        "|---|---|---|---|---|---|",
    ]
    for name in ORDER:
        if name not in variants:
            continue
        v = variants[name]
        n = int(v["n_messages"]["value"])
        subset = f"{n} (random subset of the {n_test})" if n < n_test else str(n)
        label = ROW_NAMES.get(name, name) + (" **(served)**" if name == headline else "")
        lines.append(f"| {label} | {_ci(v['intent_micro_f1'])} | {_ci(v['slot_f1'])} | {_ci(v['exact_match'])} "
                     f"| {subset} | {_cost(costs.get(name), seconds.get(name))} |")
    lines.append("")
    paired = extra.get("paired_vs_headline", {})
    if paired:
        lines.append("How much better the served system is than each alternative, on the same messages "
                     "(difference in values F1, 95% interval; above zero means clearly better):")
        lines.append("")
        for name in ORDER:
            if name in paired:
                d = paired[name]["slot_f1"]
                lines.append(f"- vs \"{ROW_NAMES.get(name, name)}\": {d['diff']:+.2f} "
                             f"({d['low']:+.2f} to {d['high']:+.2f}), {d['n_shared']} messages")
        lines.append("")
    if routing:
        lines.append("## Sending unsure messages to a person")
        for precision, r in sorted(routing.items()):
            share = r["routed_share"] * 100
            right = f"{r['auto_precision'] * 100:.0f}%" if r["auto_precision"] is not None else "-"
            lines.append(f"- Aiming at {float(precision) * 100:.0f}% fully-right automatic answers (cut chosen on "
                         f"validation): {r['routed_to_person']} of {r['messages']} test messages ({share:.0f}%) go "
                         f"to a person; the automatic rest was fully right {right} of the time.")
        lines.append("")
    wins, losses = pick_examples(rows, headline)
    lines += ["## Three real successes",
              "Test messages the served system got exactly right, the most confident first. *Expected* is the "
              "dataset's own annotation: NLU++ resolves relative dates against its annotation day (15 March 2022), "
              "so its dates can look odd out of context.", "", *map(_show, wins), "",
              "## Three real failures",
              "The mistakes made with the most confidence, i.e. the ones a person would not have been shown.", "",
              *map(_show, losses), ""]
    lines += ["## What a larger model is expected to reach", *PRODUCTION_OUTLOOK, ""]
    lines += [
        "## What to do next",
        "- Names of people are the weakest value (often lower-case and unseen): add a name list or a "
        "character-level tagger, or let the fine-tuned Mistral-7B fill that one value.",
        "- Train and evaluate the production profile (Mistral-7B QLoRA on a GPU, or Mistral's fine-tuning API) on "
        "the whole test split and compare on the same messages as above.",
        "- Use the message's real timestamp instead of the dataset's fixed \"today\" for relative dates.",
        "- Review the messages routed to people each month and add them to the training data.",
        "",
    ]
    write_text(out, "\n".join(lines))
    return out
