"""The output contract: `{"intents": [...], "slots": {name: value}}` with NLU++-normalised values.

`Extraction` is the generic pydantic model; `task_json_schema` narrows it to one task's ontology (intent enum,
known slot names, value shapes), which is what constrained decoding enforces and what `schema_valid` checks.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import jsonschema
from pydantic import BaseModel, ConfigDict, Field, ValidationError

# NLU++ value shapes (see corpus/nlupp): dates and times as integer parts, amounts with a currency code.
DATE = {
    "type": "object",
    "properties": {"day": {"type": "integer"}, "month": {"type": "integer"}, "year": {"type": "integer"}},
    "required": ["day", "month", "year"],
    "additionalProperties": False,
}
TIME = {
    "type": "object",
    "properties": {"hour": {"type": "integer"}, "minute": {"type": "integer"}},
    "required": ["hour", "minute"],
    "additionalProperties": False,
}
AMOUNT = {
    "type": "object",
    "properties": {"amount": {"type": "number"}, "currency": {"type": "string", "maxLength": 3}},
    "required": ["amount", "currency"],
    "additionalProperties": False,
}


def _period(point: dict) -> dict:
    return {
        "type": "object",
        "properties": {"type": {"type": "string", "maxLength": 12}, "from": point, "to": point, "days": {"type": "number"}},
        "required": ["type"],
        "additionalProperties": False,
    }


VALUE_SHAPES: dict[str, dict] = {
    "date": DATE, "date_from": DATE, "date_to": DATE,
    "time": TIME, "time_from": TIME, "time_to": TIME,
    "date_period": _period(DATE), "time_period": _period(TIME),
    "amount_of_money": AMOUNT,
    "number": {"type": "integer"}, "adults": {"type": "integer"}, "kids": {"type": "integer"},
    "rooms": {"type": "integer"}, "people": {"type": "integer"},
}
STRING = {"type": "string", "maxLength": 60}  # bounded, so constrained decoding always ends


class Extraction(BaseModel):
    """What the model returns for one message. Intents may be empty (greetings, noise, another language)."""

    model_config = ConfigDict(extra="forbid")

    intents: list[str] = Field(default_factory=list)
    slots: dict[str, Any] = Field(default_factory=dict)

    def to_json(self) -> str:
        """Compact, key-sorted JSON: the exact completion text the model is trained to produce."""
        return json.dumps(
            {"intents": sorted(self.intents), "slots": self.slots},
            sort_keys=True, ensure_ascii=False, separators=(",", ":"),
        )


@dataclass(frozen=True)
class Ontology:
    """The labels of one task: intent and slot names with a short description each."""

    intents: dict[str, str]
    slots: dict[str, str]
    # What a prompted model needs to normalise values, e.g. NLU++'s annotation date that relative dates
    # ("yesterday") resolve against. A fine-tuned model learns it from its targets; a prompted one is told.
    context: str = ""


def task_json_schema(ontology: Ontology) -> dict:
    """JSON schema of one task's Extraction: known intents only, known slot names, NLU++ value shapes."""
    return {
        "type": "object",
        "properties": {
            "intents": {
                "type": "array", "maxItems": 6, "items": {"type": "string", "enum": sorted(ontology.intents)},
            },
            "slots": {
                "type": "object",
                "properties": {name: VALUE_SHAPES.get(name, STRING) for name in sorted(ontology.slots)},
                "additionalProperties": False,
            },
        },
        "required": ["intents", "slots"],
        "additionalProperties": False,
    }


@dataclass(frozen=True)
class Parsed:
    """A generated text judged against the contract: parses as JSON? validates against the task schema?"""

    json_valid: bool
    schema_valid: bool
    extraction: Extraction  # empty when the text does not parse; best effort when it parses but is off-schema


def first_json_object(text: str) -> str | None:
    """The first balanced {...} in `text` (models sometimes add prose around the object)."""
    start = text.find("{")
    if start < 0:
        return None
    depth, in_str, escape = 0, False, False
    for i in range(start, len(text)):
        c = text[i]
        if in_str:
            if escape:
                escape = False
            elif c == "\\":
                escape = True
            elif c == '"':
                in_str = False
        elif c == '"':
            in_str = True
        elif c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return text[start : i + 1]
    return None


def parse_extraction(text: str, schema: dict) -> Parsed:
    """Judge a model output. json_valid: the whole output (stripped) is one JSON object, no surrounding prose."""
    raw = text.strip()
    try:
        data = json.loads(raw)
        json_valid = isinstance(data, dict)
    except json.JSONDecodeError:
        json_valid, data = False, None
        candidate = first_json_object(raw)
        if candidate is not None:
            try:
                data = json.loads(candidate)
            except json.JSONDecodeError:
                data = None
    if not isinstance(data, dict):
        return Parsed(json_valid, False, Extraction())
    # Schema-valid implies JSON-valid: an object fished out of surrounding prose counts for neither.
    schema_valid = json_valid and jsonschema.Draft202012Validator(schema).is_valid(data)
    intents = data.get("intents")
    slots = data.get("slots")
    try:
        extraction = Extraction(
            intents=[i for i in intents if isinstance(i, str)] if isinstance(intents, list) else [],
            slots=slots if isinstance(slots, dict) else {},
        )
    except ValidationError:
        extraction = Extraction()
    return Parsed(json_valid, schema_valid, extraction)
