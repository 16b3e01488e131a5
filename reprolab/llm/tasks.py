"""Datasets for the extractor: NLU++ (one or both domains) and ViGGO through the same record shape.

An `Example` is (id, text, target Extraction); an ontology lists the labels the prompt and the schema use.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from reprolab.data import jsonl
from reprolab.errors import DatasetError
from reprolab.llm.schema import Extraction, Ontology

VIGGO_ACTS = {
    "inform": "gives information about a video game",
    "confirm": "asks to confirm a game's attributes",
    "give_opinion": "gives an opinion about a game",
    "recommend": "recommends a game",
    "request": "asks for a game with some attribute",
    "request_attribute": "asks which attribute the user cares about",
    "request_explanation": "asks why the user likes or dislikes something",
    "suggest": "suggests a game",
    "verify_attribute": "checks the user's opinion of an attribute",
}


# NLU++ resolves relative dates against one annotation day (its "today" is 15 March 2022, "yesterday" the
# 14th, "this Sunday" the 20th), so prompted baselines are told that day.
NLUPP_CONTEXT = "Today is Tuesday 15 March 2022; resolve relative dates from it."


@dataclass(frozen=True)
class Example:
    id: str
    text: str
    target: Extraction


def read_jsonl(path: Path) -> list[dict]:
    return jsonl.read_jsonl(path, missing="run the fetch and split stages first (make data repro)")


def nlupp_ontology(corpus: Path, domains: list[str]) -> Ontology:
    """Intents and slots of the given NLU++ domains plus the shared 'general' labels."""
    path = corpus / "nlupp" / "ontology.json"
    if not path.is_file():
        raise DatasetError(f"{path} not found: run the fetch stage first")
    onto = json.loads(path.read_text(encoding="utf-8"))
    wanted = {"general", *domains}

    def pick(section: dict) -> dict[str, str]:
        return {name: spec["description"] for name, spec in section.items() if wanted & set(spec["domain"])}

    return Ontology(intents=pick(onto["intents"]), slots=pick(onto["slots"]), context=NLUPP_CONTEXT)


def nlupp_examples(splits: Path, split: str, domains: list[str]) -> list[Example]:
    rows = read_jsonl(splits / "nlupp" / f"{split}.jsonl")
    return [
        Example(
            id=r["id"],
            text=r["text"],
            target=Extraction(intents=r["intents"], slots={k: v["value"] for k, v in r["slots"].items()}),
        )
        for r in rows
        if r["domain"] in domains
    ]


VIGGO_OFFICIAL = {"train": "train", "validation": "valid", "test": "test"}


def viggo_task(splits: Path) -> tuple[Ontology, dict[str, list[Example]]]:
    """ViGGO on its OFFICIAL split (each record's `source_split`), not the project's hash split: published
    ViGGO numbers are on its official test set, so ours must be too to compare. The split files are read
    once; the slot names are those of the official train split."""
    rows = [r for name in ("train", "validation", "test") for r in read_jsonl(splits / "viggo" / f"{name}.jsonl")]
    data = {
        split: sorted(
            (Example(id=r["id"], text=r["text"], target=Extraction(intents=[r["dialogue_act"]], slots=r["slots"]))
             for r in rows if r.get("source_split") == source),
            key=lambda e: e.id,
        )
        for split, source in VIGGO_OFFICIAL.items()
    }
    slots = sorted({name for ex in data["train"] for name in ex.target.slots})
    onto = Ontology(intents=dict(VIGGO_ACTS), slots={s: f"the game's {s.replace('_', ' ')}" for s in slots})
    return onto, data


def load_task(task: str, splits: Path, corpus: Path, domains: list[str]) -> tuple[Ontology, dict[str, list[Example]]]:
    """(ontology, {split: examples}) for task "nlupp" (restricted to `domains`) or "viggo"."""
    if task == "nlupp":
        onto = nlupp_ontology(corpus, domains)
        data = {s: nlupp_examples(splits, s, domains) for s in ("train", "validation", "test")}
    elif task == "viggo":
        onto, data = viggo_task(splits)
    else:
        raise DatasetError(f"unknown task {task!r}: use nlupp or viggo")
    for split, examples in data.items():
        if not examples:
            raise DatasetError(f"task {task} has no {split} examples (domains={domains})")
    return onto, data
