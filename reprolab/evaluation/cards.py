"""Model cards: one markdown page per model with its data snapshot, params, metrics and known limits."""

from __future__ import annotations

from pathlib import Path

import yaml

from reprolab.evaluation.gate import detectable_change
from reprolab.evaluation.summary import ModelSpec, flatten

# What the default (embedded) profile cannot tell you, per model; the card adds limits read off the metrics.
KNOWN_LIMITS = {
    "clip": [
        "Trained and tested on a small sample collection (art images with one description each); recall on "
        "the customer's ticket photos must be measured on their data.",
        "Recall@k assumes one caption per image; repeated captions inside a batch act as false negatives.",
    ],
    "llm": [
        "The default profile fine-tunes a 135M-parameter stand-in (SmolLM2) for Mistral-7B-Instruct; absolute "
        "scores are not those of the production model.",
        "Intents and slots are those of the NLU++ ontology (banking, hotels); unseen domains are out of scope.",
        "In the CPU budget the 135M stand-in learns the intents and the JSON shape; slot values only in part "
        "(slot F1 about 0.2): it gets written-out amounts and 'yesterday', misses names and most times of day "
        "and date ranges (validation sweep in docs/extraction.md). The served default is therefore the hybrid "
        "(classifier intents + slot tagger), chosen on validation.",
        "The hybrid's slot values come from hand-written normalisation rules anchored on NLU++'s fixed "
        "annotation day (15 March 2022); person names are its weakest slot; the LLM rows are evaluated on a "
        "seeded subset of the test split (see the table's n).",
    ],
    "rag": [
        "Evaluated on a handful of questions over one Portuguese document; refusal accuracy on so few "
        "questions moves in large steps.",
    ],
}


# Hugging Face model-card sections that do not come from the numbers: intended use, training data, how to load.
MODEL_INFO = {
    "clip": {
        "intended_use": "Text-to-image and image-to-image search over a collection of pictures with short "
                        "descriptions (the query service's /search endpoints). Not for identifying people.",
        "training_data": "The sample art collection under splits/art (image + one description each), split by a "
                         "stable hash of the record id; see docs/clip.md.",
        "how_to_load": "`reprolab.rag.engine.load_clip(\"models/clip\")` (open_clip weights and config in "
                       "models/clip), or the embedding service `uvicorn services.embed.main:app`.",
    },
    "llm": {
        "intended_use": "Structured extraction from banking customer messages: NLU++ intents (multi-label) and "
                        "slot values (amounts, dates, times, names, shops) as schema-valid JSON, each with a "
                        "calibrated confidence so unsure messages can be routed to a person. English only.",
        "training_data": "NLU++ (PolyAI), banking domain: the train split to fit, the validation split for every "
                         "choice (C, thresholds, tagger, confidence calibration and routing cut); the test split "
                         "only for the figures below. docs/extraction.md describes the dataset design.",
        "how_to_load": "`python -m reprolab.extract --model models/llm IN.jsonl OUT.jsonl`, or "
                       "`reprolab.llm.system.load_served(Path(\"models/llm\")).predict([...])`; "
                       "models/llm/manifest.json names the design (hybrid or llm) and its version. "
                       "Service: `EXTRACT_MODEL_DIR=models/llm uvicorn services.extract.main:app`.",
    },
    "rag": {
        "intended_use": "Answering questions over the shipped documents with citations, or saying plainly that "
                        "the documents do not hold the answer.",
        "training_data": "No trained weights: packaged all-MiniLM-L6-v2 embeddings and BM25 over samples/docs; "
                         "evaluated on samples/qa (docs/rag.md).",
        "how_to_load": "`make serve` or `uvicorn services.query.main:app` over the index the index stage built.",
    },
}


def _fmt(x: float) -> str:
    return f"{x:.4g}" if isinstance(x, float) else str(x)


def comparable_variants(metrics: dict, baseline: str) -> dict[str, dict]:
    """The dict-valued entries that are variants of the baseline (they share a metric name with it), flattened.

    Other dict entries (an `eval` block of settings such as the number of test examples) are not variants:
    a column of them against the baseline would be all dashes.
    """
    variants = {v: flatten(m) for v, m in metrics.items() if isinstance(m, dict)}
    if baseline in variants:
        base = set(variants[baseline])
        variants = {v: flat for v, flat in variants.items() if v == baseline or base & set(flat)}
    return variants


def metrics_table(metrics: dict, baseline: str) -> list[str]:
    """Rows: metric; columns: variants, plus each non-baseline variant's change against the baseline."""
    variants = comparable_variants(metrics, baseline)
    if not variants:
        flat = flatten(metrics)
        return ["| metric | value |", "|---|---|", *[f"| {k} | {_fmt(v)} |" for k, v in sorted(flat.items())]]
    names = sorted({k for flat in variants.values() for k in flat})
    others = [v for v in variants if v != baseline] if baseline in variants else []
    header = ["metric", *variants, *[f"{v} − {baseline}" for v in others]]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name in names:
        cells = [_fmt(variants[v][name]) if name in variants[v] else "–" for v in variants]
        for v in others:
            a, b = variants[baseline].get(name), variants[v].get(name)
            counted = name.startswith("n_")  # a count (messages evaluated) is not a score to compare
            cells.append(f"{b - a:+.4g}" if a is not None and b is not None and not counted else "–")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def auto_limits(metrics: dict, baseline: str) -> list[str]:
    """Limits read off the numbers: where fine-tuning did not beat the baseline, or recall is near chance."""
    notes = []
    variants = comparable_variants(metrics, baseline)
    base = variants.get(baseline, {})
    for variant, flat in variants.items():
        if variant == baseline:
            continue
        worse = sorted(k for k, v in flat.items() if k in base and "rank" not in k and "tokens" not in k
                       and "chance" not in k and not k.startswith("n_") and v < base[k])
        if worse:
            notes.append(f"`{variant}` scores below `{baseline}` on: {', '.join(worse)}.")
    for variant, flat in variants.items():
        chance = flat.get("chance_recall@5")
        for k in ("i2t_recall@5", "t2i_recall@5"):
            if chance is not None and k in flat and flat[k] <= 2 * chance:
                notes.append(f"`{variant}` {k} = {flat[k]:.3g} is within 2x of chance ({chance:.3g}).")
    return notes


def data_snapshot_hash(dvc_file: Path = Path("data.dvc")) -> str:
    if not dvc_file.is_file():
        return "unknown (no data.dvc)"
    outs = (yaml.safe_load(dvc_file.read_text(encoding="utf-8")) or {}).get("outs", [{}])
    return str(outs[0].get("md5", "unknown"))


def card_metrics(evaluation: dict) -> dict:
    """{variant: {metric: value}} plus the evaluation's extra settings (test-set size, chance level)."""
    variants = {v: {m: e["value"] for m, e in row.items()} for v, row in evaluation.get("variants", {}).items()}
    return {**variants, **{k: v for k, v in evaluation.get("extra", {}).items() if not isinstance(v, dict)}}


def evidence_lines(evidence) -> list[str]:
    """The headline figures with their 95% intervals, and the smallest change the test set can tell from noise."""
    specs = evidence.specs
    lines = ["", f"## Headline figures (`{evidence.variant}`, 95% bootstrap interval over the test examples)", "",
             "| metric | better | value | 95% interval | n | smallest detectable change |", "|---|---|---:|---:|---:|---:|"]
    for name, est in sorted(evidence.headline().items()):
        direction = specs[name].direction if name in specs else "count"
        mde = detectable_change(est) if direction != "count" else float("nan")
        lines.append(f"| {name} | {direction} | {est['value']:.3f} | {est['low']:.3f}–{est['high']:.3f} | {est['n']} | "
                     + ("–" if mde != mde else f"±{mde:.3f}") + " |")
    lines += ["", "A change between two revisions smaller than the last column cannot be told from noise on a "
              "fresh test set of this size (paired comparisons on the same ids can resolve somewhat less)."]
    return lines


def render_card(model: str, spec: ModelSpec, evaluation: dict, params: dict, snapshot: str,
                plots: list[str]) -> str:
    metrics = card_metrics(evaluation)
    lines = [f"# Model card: {spec.title or model}", "",
             f"- Data snapshot (data.dvc md5): `{snapshot}`",
             f"- Metrics file: `{spec.metrics}`", ""]
    info = MODEL_INFO.get(model, {})
    for title, key in (("Intended use", "intended_use"), ("Training data", "training_data")):
        lines += [f"## {title}", "", info.get(key, "(not described)"), ""]
    lines += ["## Parameters", ""]
    shown = {s: params[s] for s in spec.params if s in params}
    if shown:
        lines += ["```yaml", yaml.safe_dump(shown, sort_keys=True).rstrip(), "```"]
    else:
        lines.append("(no params sections configured for this model)")
    variants = comparable_variants(metrics, spec.baseline)
    against = f" (baseline: `{spec.baseline}`)" if spec.baseline in variants else ""
    lines += ["", f"## Evaluation{against}", "", *metrics_table(metrics, spec.baseline)]
    rest = flatten({k: v for k, v in metrics.items() if k not in variants}) if variants else {}
    if rest:  # settings and reference values beside the variants: test-set size, chance level, ...
        lines += ["", *[f"- `{k}`: {_fmt(v)}" for k, v in sorted(rest.items())]]
    if plots:
        lines += ["", "## Plots", "", *[f"![{Path(p).stem}](../plots/{Path(p).name})" for p in plots]]
    lines += ["", "## Limitations", "", *[f"- {t}" for t in KNOWN_LIMITS.get(model, [])],
              *[f"- {t}" for t in auto_limits(metrics, spec.baseline)]]
    lines += ["", "## How to load", "", info.get("how_to_load", "(not described)")]
    return "\n".join(lines) + "\n"
