"""The classical and hybrid extractors end to end: fit on train, tune and calibrate on validation, evaluate on
test, save a self-describing model directory, load whatever design a directory holds.

Model directory (`models/llm`): `manifest.json` names the served `design` ("hybrid" or "llm") and its version
(a content hash of the files the design needs); `hybrid.joblib` holds the intent classifier, the slot tagger,
the calibrator and the routing threshold; `adapter/` the LoRA adapter of the fine-tuned LLM.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from reprolab.config import StrictConfig
from reprolab.data.atomic import replacing
from reprolab.errors import ModelError
from reprolab.evaluation.extraction import Judged, example_row, extraction_metrics
from reprolab.llm.classical import (
    Calibrator, HybridExtractor, IntentClassifier, SentenceEncoder, SlotTagger, TextFeatures, routing_threshold,
    slot_spans, tune_intents,
)
from reprolab.llm.schema import Extraction, Ontology
from reprolab.llm.tasks import Example

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
HYBRID_FILE = "hybrid.joblib"


class ClassicalConfig(StrictConfig):
    intent_c: list[float] = [4.0, 16.0, 64.0]             # grid, chosen on validation micro-F1
    intent_thresholds: list[float] = [0.2, 0.3, 0.4, 0.5]
    tagger_c: list[float] = [4.0, 16.0]                   # grid, chosen on validation slot F1
    hybrid_tfidf: bool = True      # hybrid intents: MiniLM + word n-gram TF-IDF (validation 0.824 -> 0.879)
    route_precision: list[float] = [0.8, 0.9]  # auto-handled messages must be this often exactly right


@dataclass
class Fitted:
    classical: HybridExtractor
    hybrid: HybridExtractor
    calibrator: Calibrator
    route_thresholds: dict[str, float]  # {target precision: confidence cut}, chosen on validation
    tuning: dict  # the validation grid and the chosen values, for the report
    fit_seconds: float


def judged(examples: list[Example], preds: list[Extraction]) -> list[Judged]:
    return [Judged(id=ex.id, gold_intents=frozenset(ex.target.intents), gold_slots=ex.target.slots,
                   pred_intents=frozenset(p.intents), pred_slots=p.slots, json_valid=True, schema_valid=True)
            for ex, p in zip(examples, preds, strict=True)]


def exact(examples: list[Example], preds: list[Extraction]) -> list[bool]:
    return [bool(example_row(j, "x")["exact"]) for j in judged(examples, preds)]


def fit_classical(cfg: ClassicalConfig, ontology: Ontology, data: dict[str, list[Example]], splits: Path,
                  domains: list[str], seed: int = 0) -> Fitted:
    """Both non-LLM systems, every choice made on validation; the test split is not touched here."""
    from reprolab.evaluation.extraction import prf, slot_pairs

    start = time.perf_counter()
    encoder = SentenceEncoder()
    train, val = data["train"], data["validation"]
    texts_train, texts_val = [e.text for e in train], [e.text for e in val]
    emb_train, emb_val = encoder(texts_train), encoder(texts_val)
    labels = sorted(ontology.intents)
    gold_train, gold_val = [e.target.intents for e in train], [e.target.intents for e in val]
    systems = {}
    tuning: dict = {}
    # classical: MiniLM alone (the customer's baseline); hybrid: MiniLM beside word n-gram TF-IDF.
    for name, tfidf in (("classical", False), ("hybrid", cfg.hybrid_tfidf)):
        features = TextFeatures.fit(encoder, texts_train, tfidf)
        x_train, x_val = features(texts_train, emb_train), features(texts_val, emb_val)
        best, grid = tune_intents(x_train, gold_train, x_val, gold_val, labels, cfg.intent_c,
                                  cfg.intent_thresholds, seed)
        systems[name] = (features, IntentClassifier.fit(x_train, gold_train, labels, best["C"],
                                                        best["threshold"], seed))
        tuning[name] = {"intent_grid": grid, "intent_choice": best}
    spans = slot_spans(splits, "train", domains)
    allowed = set(ontology.slots)
    tagger_grid, tagger, best_f1 = [], None, -1.0
    for c in cfg.tagger_c:
        candidate = SlotTagger.fit(texts_train, [spans[e.id] for e in train], c, seed)
        tp = fp = fn = 0
        for e in val:
            gold, pred = slot_pairs(e.target.slots), slot_pairs(candidate.slots(e.text, allowed)[0])
            tp, fp, fn = tp + len(gold & pred), fp + len(pred - gold), fn + len(gold - pred)
        f1 = prf(tp, fp, fn)[2]
        tagger_grid.append({"C": c, "val_slot_f1": round(f1, 4)})
        if f1 > best_f1:
            tagger, best_f1 = candidate, f1
    classical = HybridExtractor(*systems["classical"], None, allowed)
    hybrid = HybridExtractor(*systems["hybrid"], tagger, allowed)
    val_preds = hybrid.predict([e.text for e in val])
    right = exact(val, [p.extraction for p in val_preds])
    calibrator = Calibrator.fit([p.confidence for p in val_preds], right)
    calibrated = calibrator([p.confidence for p in val_preds])
    cuts = {str(p): routing_threshold(calibrated, right, p) for p in cfg.route_precision}
    val_metrics = {
        name: {k: round(v, 4) for k, v in extraction_metrics(
            judged(val, [p.extraction for p in system.predict([e.text for e in val])])).items()}
        for name, system in (("classical", classical), ("hybrid", hybrid))
    }
    tuning |= {"tagger_grid": tagger_grid,
              "tagger_choice": max(tagger_grid, key=lambda g: g["val_slot_f1"]), "route_thresholds": cuts, "validation": val_metrics, "validation_n": len(val)}
    log.info("classical systems fitted", extra={"tagger": tuning["tagger_choice"],
                                                 "route_thresholds": cuts})
    return Fitted(classical, hybrid, calibrator, cuts, tuning, time.perf_counter() - start)


def evaluate_system(system: HybridExtractor, examples: list[Example], variant: str,
                    calibrator: Calibrator | None = None):
    """Per-example evidence rows and the cost of one system over `examples` (wall and CPU seconds)."""
    wall, cpu = time.perf_counter(), time.process_time()
    preds = system.predict([e.text for e in examples])
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    rows = []
    calibrated = calibrator([p.confidence for p in preds]) if calibrator else [None] * len(preds)
    for ex, j, conf in zip(examples, judged(examples, [p.extraction for p in preds]), calibrated, strict=True):
        rows.append(example_row(j, variant, text=ex.text, **({"confidence": conf} if conf is not None else {})))
    cost = {"messages": len(examples), "wall_seconds": round(wall, 3), "cpu_seconds": round(cpu, 3),
            "cpu_seconds_per_1000": round(1000 * cpu / len(examples), 2), "tokens_per_1000": 0}
    return rows, cost


def routing_summary(rows: list[dict], cut: float) -> dict:
    """How many messages a confidence cut sends to a person, and how often the auto-handled rest is exact."""
    kept = [r for r in rows if r["confidence"] >= cut]
    return {"threshold": cut, "messages": len(rows), "routed_to_person": len(rows) - len(kept),
            "routed_share": round((len(rows) - len(kept)) / len(rows), 4) if rows else 0.0,
            "auto_handled": len(kept),
            "auto_precision": round(sum(r["exact"] for r in kept) / len(kept), 4) if kept else None}


# ---- the model directory ------------------------------------------------------------------------------------

def _digest(paths: list[Path]) -> str:
    h = hashlib.sha256()
    for path in sorted(paths):
        for f in sorted(p for p in ([path] if path.is_file() else path.rglob("*")) if p.is_file()):
            h.update(f.name.encode())
            h.update(f.read_bytes())
    return h.hexdigest()[:12]


def without_object_ids(tfidf):
    """A copy of a fitted TfidfVectorizer without `_stop_words_id`: scikit-learn caches `id(self.stop_words)`
    there (a memory address, different in every process), so two identical fits pickled to different bytes."""
    if tfidf is None:
        return None
    tfidf = copy.copy(tfidf)
    vars(tfidf).pop("_stop_words_id", None)  # only a "checked already" marker: transform re-checks without it
    return tfidf


def save_hybrid(model_dir: Path, fitted: Fitted, ontology: Ontology) -> Path:
    """hybrid.joblib: the same bytes for the same fit in any process (no object ids, no compression)."""
    import joblib

    model_dir.mkdir(parents=True, exist_ok=True)
    path = model_dir / HYBRID_FILE
    with replacing(path) as tmp:
        joblib.dump({"intents": fitted.hybrid.intents, "tagger": fitted.hybrid.tagger,
                     "calibrator": fitted.calibrator, "tfidf": without_object_ids(fitted.hybrid.features.tfidf),
                     "route_thresholds": fitted.route_thresholds, "slots": sorted(ontology.slots)}, tmp)
    return path


def write_manifest(model_dir: Path, design: Literal["hybrid", "llm"], ontology: Ontology, details: dict) -> dict:
    """manifest.json (design, version, files) and ontology.json (the labels an LLM design prompts with)."""
    from dataclasses import asdict

    from reprolab.data.atomic import write_json

    write_json(model_dir / "ontology.json", asdict(ontology))
    files = [model_dir / HYBRID_FILE] if design == "hybrid" else [model_dir / "adapter"]
    missing = [str(f) for f in files if not f.exists()]
    if missing:
        raise ModelError(f"design {design} needs {missing}, which the stage did not write")
    manifest = {"design": design, "version": _digest(files), "files": [f.name for f in files], **details}
    write_json(model_dir / MANIFEST, manifest)
    return manifest


@dataclass
class Served:
    """What the CLI and the service call: texts in, (extraction, calibrated confidence or None) out."""

    design: str
    version: str
    predict: object  # Callable[[list[str]], list[tuple[Extraction, float | None]]]


def load_served(model_dir: Path) -> Served:
    """Load the design `models/llm/manifest.json` names; a missing or broken directory is a clear ModelError."""
    path = Path(model_dir) / MANIFEST
    if not path.is_file():
        raise ModelError(f"{path} not found: {model_dir} is not a model directory the finetune_mistral stage wrote")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        design, version = manifest["design"], manifest["version"]
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise ModelError(f"{path} is not a valid manifest ({e})") from e
    if design == "hybrid":
        import joblib

        saved = joblib.load(Path(model_dir) / HYBRID_FILE)
        features = TextFeatures(SentenceEncoder(), saved["tfidf"])
        system = HybridExtractor(features, saved["intents"], saved["tagger"], set(saved["slots"]))
        calibrator = saved["calibrator"]

        def predict(texts):
            preds = system.predict(texts)
            return list(zip([p.extraction for p in preds], calibrator([p.confidence for p in preds]), strict=True))

        return Served(design, version, predict)
    if design == "llm":
        from reprolab.llm.extract import Extractor
        from reprolab.llm.train import load_finetuned

        ontology = Ontology(**json.loads((Path(model_dir) / "ontology.json").read_text(encoding="utf-8")))
        model, tokenizer = load_finetuned(manifest["base_model"], Path(model_dir) / "adapter", device="cpu")
        extractor = Extractor(model, tokenizer, ontology)
        return Served(design, version, lambda texts: [(e, None) for e in extractor.extract(texts)])
    raise ModelError(f"{path}: unknown design {design!r} (expected 'hybrid' or 'llm')")
