"""Validation of raw records: good ones pass, each kind of bad one is quarantined or refused with a reason."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from PIL import Image

from reprolab.data import readers
from reprolab.errors import DatasetError


def jpeg_bytes(size=(96, 80), color=(200, 30, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def make_art(root: Path, images: dict[str, bytes], descriptions: dict | list | bytes) -> None:
    (root / "art" / "images").mkdir(parents=True)
    for name, data in images.items():
        (root / "art" / "images" / name).write_bytes(data)
    raw = descriptions if isinstance(descriptions, bytes) else json.dumps(descriptions).encode()
    (root / "art" / "descriptions.json").write_bytes(raw)


def art(root: Path, min_side: int = 32):
    return {c.id: c for c in readers.read_art(root, min_image_side=min_side, max_description_chars=1000)}


def test_art_accepts_decodable_images_with_descriptions(tmp_path):
    make_art(tmp_path, {"a.jpg": jpeg_bytes()}, {"a.jpg": "  A red square.\n"})
    cand = art(tmp_path)["art/a.jpg"]
    assert cand.problem is None
    assert cand.record["text"] == "A red square."
    assert (cand.record["width"], cand.record["height"]) == (96, 80)
    assert cand.files == {"art/images/a.jpg": tmp_path / "art/images/a.jpg"}


@pytest.mark.parametrize(
    "images, descriptions, expected",
    [
        ({"a.jpg": jpeg_bytes()[:400]}, {"a.jpg": "truncated"}, "image does not decode"),
        ({"a.jpg": b"not an image at all"}, {"a.jpg": "garbage"}, "image does not decode"),
        ({"a.jpg": jpeg_bytes(size=(20, 200))}, {"a.jpg": "too small"}, "below the minimum side"),
        ({"a.jpg": jpeg_bytes()}, {"a.jpg": "   "}, "description is empty"),
        ({"a.jpg": jpeg_bytes()}, {"a.jpg": 42}, "not a string"),
        ({"a.jpg": jpeg_bytes()}, {"a.jpg": "x" * 1001}, "over the limit"),
        ({"a.jpg": jpeg_bytes()}, {}, "image has no description"),
        ({}, {"a.jpg": "an orphan description"}, "not in art/images"),
    ],
)
def test_art_quarantines_bad_records_with_a_reason(tmp_path, images, descriptions, expected):
    make_art(tmp_path, images, descriptions)
    cand = art(tmp_path)["art/a.jpg"]
    assert cand.problem is not None and expected in cand.problem


def test_art_refuses_a_descriptions_file_that_is_not_utf8(tmp_path):
    make_art(tmp_path, {"a.jpg": jpeg_bytes()}, '{"a.jpg": "caf\xe9"}'.encode("latin-1"))
    with pytest.raises(DatasetError, match=r"art/descriptions.json is not UTF-8"):
        art(tmp_path)


def test_art_refuses_a_descriptions_file_of_the_wrong_shape(tmp_path):
    make_art(tmp_path, {"a.jpg": jpeg_bytes()}, [{"a.jpg": "a list, not a mapping"}])
    with pytest.raises(DatasetError, match="expected a JSON object mapping image file names"):
        art(tmp_path)


def make_nlupp(root: Path, records, ontology=None) -> None:
    (root / "nlupp" / "banking").mkdir(parents=True)
    ontology = ontology or {"intents": {"greet": {}, "pin": {}}, "slots": {"amount": {}}}
    (root / "nlupp" / "ontology.json").write_text(json.dumps(ontology))
    (root / "nlupp" / "banking" / "fold0.json").write_text(json.dumps(records))


def test_nlupp_validates_against_schema_and_ontology(tmp_path):
    make_nlupp(tmp_path, [
        {"text": "hi, my pin", "intents": ["pin", "greet"],
         "slots": {"amount": {"text": "5 quid", "span": [0, 6], "value": {"amount": 5, "currency": "GBP"}}}},
        {"text": "what is this", "intents": ["unknown_intent"]},
        {"text": "", "intents": ["greet"]},
        {"intents": ["greet"]},
        {"text": "extra field", "labels": []},
    ])
    cands = list(readers.read_nlupp(tmp_path))
    assert len(cands) == 5
    good = cands[0]
    assert good.problem is None
    assert good.record["intents"] == ["greet", "pin"]
    assert good.record["slots"] == {"amount": {"text": "5 quid", "value": {"amount": 5, "currency": "GBP"}}}
    problems = [c.problem for c in cands[1:]]
    assert "not in the ontology" in problems[0]
    assert "text is empty" in problems[1]
    assert "text" in problems[2] and "Field required" in problems[2]
    assert "labels" in problems[3]


def test_nlupp_ids_do_not_depend_on_position(tmp_path):
    make_nlupp(tmp_path, [{"text": "first"}, {"text": "second"}])
    before = {c.record["text"]: c.id for c in readers.read_nlupp(tmp_path)}
    (tmp_path / "nlupp" / "banking" / "fold0.json").write_text(json.dumps([{"text": "new"}, {"text": "second"},
                                                                           {"text": "first"}]))
    after = {c.record["text"]: c.id for c in readers.read_nlupp(tmp_path)}
    assert after["first"] == before["first"] and after["second"] == before["second"]


def test_nlupp_refuses_a_fold_that_is_not_a_list(tmp_path):
    make_nlupp(tmp_path, {"text": "an object instead of a list"})
    with pytest.raises(DatasetError, match="expected a JSON list of records"):
        list(readers.read_nlupp(tmp_path))


def test_viggo_parses_meaning_representations(tmp_path):
    (tmp_path / "viggo").mkdir()
    (tmp_path / "viggo" / "train.csv").write_text(
        'mr,ref\n"inform(name[Dirt: Showdown], genres[driving/racing, sport])","Dirt is a racing game."\n'
        '"garbage without parentheses","A sentence."\n'
    )
    good, bad = list(readers.read_viggo(tmp_path))
    assert good.record["dialogue_act"] == "inform"
    assert good.record["slots"] == {"name": "Dirt: Showdown", "genres": "driving/racing, sport"}
    assert "does not parse" in bad.problem


def test_docs_quarantine_binary_and_empty_files(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "good.txt").write_text("Olá, mundo.")
    (tmp_path / "docs" / "binary.txt").write_bytes(b"\xff\xfe\x00\x00binary")
    (tmp_path / "docs" / "empty.md").write_text("  \n")
    (tmp_path / "docs" / "PROVENANCE.md").write_text("metadata, not a document")
    cands = {c.id: c for c in readers.read_docs(tmp_path)}
    assert set(cands) == {"docs/good.txt", "docs/binary.txt", "docs/empty.md"}
    assert cands["docs/good.txt"].problem is None
    assert "not UTF-8" in cands["docs/binary.txt"].problem
    assert "empty" in cands["docs/empty.md"].problem
