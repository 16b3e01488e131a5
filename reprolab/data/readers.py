"""Readers that turn the raw snapshot into candidate records, one reader per dataset.

A reader yields `Candidate`s: a stable id, a content hash for de-duplication, the record to keep, and the
files it needs. A record that fails validation becomes a candidate with a `problem`, which the corpus
builder quarantines. A file that is wrong as a whole (not UTF-8, not the expected JSON shape) raises
DatasetError: that is a broken upload, not a bad record, and the run stops with one clear message.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image, UnidentifiedImageError
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from reprolab.errors import DatasetError

METADATA_FILES = {"PROVENANCE.md", "README.md", "LICENSE", "LICENSE.txt"}
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp"}
DOC_SUFFIXES = {".txt", ".md", ".markdown", ".html", ".htm"}


@dataclass
class Candidate:
    id: str
    content_hash: str
    record: dict[str, Any]
    files: dict[str, Path] = field(default_factory=dict)  # corpus-relative path -> snapshot path
    problem: str | None = None


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_text(text: str) -> str:
    return sha256_bytes(text.encode("utf-8"))


def read_text_file(path: Path, root: Path) -> str:
    try:
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise DatasetError(f"{path.relative_to(root)} is not UTF-8 text (byte {e.start})") from e
    except OSError as e:
        raise DatasetError(f"cannot read {path.relative_to(root)}: {e.strerror}") from e


def read_json_file(path: Path, root: Path) -> Any:
    try:
        return json.loads(read_text_file(path, root))
    except json.JSONDecodeError as e:
        raise DatasetError(f"{path.relative_to(root)} is not valid JSON: {e}") from e


# --- art: images with descriptions -------------------------------------------------------------------


def check_image(data: bytes, min_side: int) -> tuple[int, int]:
    """Decode the whole image (a truncated JPEG fails here, not at training time); return its size."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            size = im.size
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise ValueError(f"image does not decode: {e}") from e
    if min(size) < min_side:
        raise ValueError(f"image is {size[0]}x{size[1]}, below the minimum side of {min_side}px")
    return size


def read_art(root: Path, min_image_side: int, max_description_chars: int) -> Iterator[Candidate]:
    """`art/descriptions*.json` map image names (under art/images/) to one description each."""
    art = root / "art"
    described: dict[str, tuple[str, Any]] = {}
    for desc_file in sorted(art.glob("descriptions*.json")):
        mapping = read_json_file(desc_file, root)
        if not isinstance(mapping, dict) or not all(isinstance(k, str) for k in mapping):
            raise DatasetError(
                f"{desc_file.relative_to(root)}: expected a JSON object mapping image file names to "
                f"descriptions, got {type(mapping).__name__}"
            )
        for name, text in mapping.items():
            described[name] = (desc_file.name, text)
    images = {p.name: p for p in (art / "images").glob("*") if p.suffix.lower() in IMAGE_SUFFIXES}
    for name in sorted(set(described) | set(images)):
        rid = f"art/{name}"
        if name not in images:
            yield Candidate(rid, "", {}, problem="description names an image that is not in art/images/")
            continue
        data = images[name].read_bytes()
        content_hash = sha256_bytes(data)
        if name not in described:
            yield Candidate(rid, content_hash, {}, problem="image has no description")
            continue
        text = described[name][1]
        problem = None
        if not isinstance(text, str) or not text.strip():
            problem = "description is empty or not a string"
        elif len(text) > max_description_chars:
            problem = f"description has {len(text)} characters, over the limit of {max_description_chars}"
        else:
            try:
                width, height = check_image(data, min_image_side)
            except ValueError as e:
                problem = str(e)
        if problem:
            yield Candidate(rid, content_hash, {}, problem=problem)
            continue
        rel = f"art/images/{name}"
        record = {"id": rid, "image": rel, "text": text.strip(), "width": width, "height": height,
                  "sha256": content_hash}
        yield Candidate(rid, content_hash, record, files={rel: images[name]})


# --- nlupp: customer messages with intents and slots ---------------------------------------------------


class NluSlot(BaseModel):
    model_config = ConfigDict(extra="allow")
    text: str
    span: list[int] | None = None
    value: Any = None
    values: Any = None


class NluRecord(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str
    intents: list[str] = []
    slots: dict[str, NluSlot] = {}

    @field_validator("text")
    @classmethod
    def _non_empty(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("text is empty")
        return v


def read_nlupp(root: Path) -> Iterator[Candidate]:
    """`nlupp/<domain>/*.json`: lists of NLU++ records; `nlupp/ontology.json` names the intents and slots."""
    base = root / "nlupp"
    ontology_path = base / "ontology.json"
    if not ontology_path.exists():
        raise DatasetError("nlupp/ontology.json is missing: records cannot be checked without it")
    ontology = read_json_file(ontology_path, root)
    if not isinstance(ontology, dict) or not {"intents", "slots"} <= set(ontology):
        raise DatasetError("nlupp/ontology.json: expected an object with 'intents' and 'slots'")
    known_intents, known_slots = set(ontology["intents"]), set(ontology["slots"])
    for domain_dir in sorted(p for p in base.iterdir() if p.is_dir()):
        domain = domain_dir.name
        for fold in sorted(domain_dir.glob("*.json")):
            items = read_json_file(fold, root)
            if not isinstance(items, list):
                raise DatasetError(
                    f"{fold.relative_to(root)}: expected a JSON list of records, got {type(items).__name__}"
                )
            for i, item in enumerate(items):
                source = f"{fold.relative_to(root)}#{i}"
                text = item.get("text") if isinstance(item, dict) else None
                rid = f"nlupp/{domain}/{sha256_text(text)[:16]}" if isinstance(text, str) else f"nlupp/{source}"
                try:
                    rec = NluRecord.model_validate(item)
                except ValidationError as e:
                    err = e.errors()[0]
                    where = ".".join(str(p) for p in err["loc"])
                    yield Candidate(rid, "", {}, problem=f"{source}: {where}: {err['msg']}")
                    continue
                unknown = [x for x in rec.intents if x not in known_intents]
                unknown += [s for s in rec.slots if s not in known_slots]
                if unknown:
                    yield Candidate(rid, "", {}, problem=f"{source}: not in the ontology: {unknown}")
                    continue
                slots = {
                    name: {"text": s.text, "value": s.value if s.value is not None else s.values}
                    for name, s in sorted(rec.slots.items())
                }
                record = {"id": rid, "domain": domain, "text": rec.text, "intents": sorted(rec.intents),
                          "slots": slots}
                yield Candidate(rid, sha256_text(domain + "\n" + rec.text), record)


def nlupp_files(root: Path) -> dict[str, Path]:
    ontology = root / "nlupp" / "ontology.json"
    return {"nlupp/ontology.json": ontology} if ontology.exists() else {}


# --- viggo: meaning representations and sentences ------------------------------------------------------

MR_PATTERN = re.compile(r"^(?P<act>[a-z_]+)\((?P<body>.*)\)$", re.S)
SLOT_PATTERN = re.compile(r"(?P<name>[a-z_]+)\[(?P<value>[^\]]*)\]")


def parse_viggo_mr(mr: str) -> dict[str, Any]:
    """`inform(name[Dirt: Showdown], genres[driving/racing, sport])` -> {"dialogue_act", "slots"}."""
    m = MR_PATTERN.match(mr.strip())
    if not m:
        raise ValueError(f"meaning representation does not parse: {mr[:60]!r}")
    slots = {s["name"]: s["value"] for s in SLOT_PATTERN.finditer(m["body"])}
    if m["body"].strip() and not slots:
        raise ValueError(f"meaning representation has no slots: {mr[:60]!r}")
    return {"dialogue_act": m["act"], "slots": slots}


def read_viggo(root: Path) -> Iterator[Candidate]:
    """`viggo/{train,valid,test}.csv` with columns mr,ref (the original split is kept as `source_split`)."""
    for path in sorted((root / "viggo").glob("*.csv")):
        reader = csv.DictReader(io.StringIO(read_text_file(path, root)))
        if reader.fieldnames is None or not {"mr", "ref"} <= set(reader.fieldnames):
            raise DatasetError(f"{path.relative_to(root)}: expected CSV columns 'mr' and 'ref'")
        for i, row in enumerate(reader):
            ref, mr = (row.get("ref") or "").strip(), (row.get("mr") or "").strip()
            rid = f"viggo/{sha256_text(ref)[:16]}"
            if not ref:
                yield Candidate(rid, "", {}, problem=f"{path.name}#{i}: empty sentence")
                continue
            try:
                target = parse_viggo_mr(mr)
            except ValueError as e:
                yield Candidate(rid, "", {}, problem=f"{path.name}#{i}: {e}")
                continue
            record = {"id": rid, "text": ref, "mr": mr, "source_split": path.stem, **target}
            yield Candidate(rid, sha256_text(ref), record)


# --- docs: knowledge documents -------------------------------------------------------------------------


def read_docs(root: Path) -> Iterator[Candidate]:
    for path in sorted((root / "docs").rglob("*")):
        if not path.is_file() or path.name in METADATA_FILES:
            continue
        rel = path.relative_to(root).as_posix()
        if path.suffix.lower() not in DOC_SUFFIXES:
            yield Candidate(rel, "", {}, problem=f"unsupported document type '{path.suffix}'")
            continue
        data = path.read_bytes()
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as e:
            yield Candidate(rel, "", {}, problem=f"document is not UTF-8 text (byte {e.start})")
            continue
        if not text.strip():
            yield Candidate(rel, "", {}, problem="document is empty")
            continue
        record = {"id": rel, "path": rel, "title": path.stem, "chars": len(text), "sha256": sha256_bytes(data)}
        yield Candidate(rel, sha256_bytes(data), record, files={rel: path})
