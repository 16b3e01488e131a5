"""Drift of a data snapshot against the previous one: caption length, intent mix, image sizes.

`corpus_stats` summarises a corpus into a small JSON (committed under reports/), so the previous month's
stats are read back from git at the base revision and compared without the old corpus itself.
"""

from __future__ import annotations

import json
import statistics
from collections import Counter
from pathlib import Path

from reprolab.config import StrictConfig


class DriftConfig(StrictConfig):
    caption_length_rel: float = 0.2  # relative change of mean/median caption words that warns
    image_side_rel: float = 0.2  # relative change of median/p10 image width or height that warns
    intent_tvd: float = 0.1  # total variation distance between intent distributions that warns


def _quantiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {"count": 0}
    ordered = sorted(values)

    def q(p: float) -> float:
        return float(ordered[min(len(ordered) - 1, int(p * len(ordered)))])

    return {"count": len(values), "mean": round(statistics.fmean(values), 4),
            "p10": q(0.10), "p50": q(0.50), "p90": q(0.90)}


def _records(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def corpus_stats(corpus: Path) -> dict:
    """Distribution summaries of the corpus that drift is judged on."""
    art = _records(corpus / "art" / "records.jsonl")
    nlupp = _records(corpus / "nlupp" / "records.jsonl")
    intents = Counter(intent for r in nlupp for intent in r.get("intents", []))
    return {
        "art": {
            "records": len(art),
            "caption_words": _quantiles([len(r["text"].split()) for r in art]),
            "width": _quantiles([r["width"] for r in art]),
            "height": _quantiles([r["height"] for r in art]),
        },
        "nlupp": {"records": len(nlupp), "intents": dict(sorted(intents.items()))},
    }


def _rel_change(old: float, new: float) -> float:
    return abs(new - old) / abs(old) if old else (0.0 if new == old else float("inf"))


def total_variation(old: dict[str, int], new: dict[str, int]) -> float:
    """Half the L1 distance between two count vectors normalised to distributions (0 = same, 1 = disjoint)."""
    n_old, n_new = sum(old.values()), sum(new.values())
    if not n_old or not n_new:
        return 0.0 if n_old == n_new else 1.0
    keys = set(old) | set(new)
    return 0.5 * sum(abs(old.get(k, 0) / n_old - new.get(k, 0) / n_new) for k in keys)


def drift_warnings(old: dict, new: dict, cfg: DriftConfig) -> list[str]:
    """Human-readable warnings, one per statistic that moved beyond its threshold."""
    warnings = []
    old_art, new_art = old.get("art", {}), new.get("art", {})
    for stat in ("mean", "p50"):
        a = old_art.get("caption_words", {}).get(stat)
        b = new_art.get("caption_words", {}).get(stat)
        if a is not None and b is not None and _rel_change(a, b) > cfg.caption_length_rel:
            warnings.append(f"caption length ({stat} words) moved {a:g} -> {b:g}: "
                            f"{_rel_change(a, b):.0%} change, beyond {cfg.caption_length_rel:.0%}")
    for side in ("width", "height"):
        for stat in ("p50", "p10"):
            a = old_art.get(side, {}).get(stat)
            b = new_art.get(side, {}).get(stat)
            if a is not None and b is not None and _rel_change(a, b) > cfg.image_side_rel:
                warnings.append(f"image {side} ({stat}) moved {a:g} -> {b:g} px: "
                                f"{_rel_change(a, b):.0%} change, beyond {cfg.image_side_rel:.0%}")
    old_int = old.get("nlupp", {}).get("intents")
    new_int = new.get("nlupp", {}).get("intents")
    if old_int is not None and new_int is not None:
        tvd = total_variation(old_int, new_int)
        if tvd > cfg.intent_tvd:
            warnings.append(f"intent distribution moved: total variation {tvd:.3f} > {cfg.intent_tvd}")
        appeared = sorted(set(new_int) - set(old_int))
        vanished = sorted(set(old_int) - set(new_int))
        if appeared:
            warnings.append(f"new intents: {', '.join(appeared)}")
        if vanished:
            warnings.append(f"intents no longer present: {', '.join(vanished)}")
    return warnings
