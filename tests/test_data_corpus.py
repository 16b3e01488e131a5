"""The corpus builder: counts reconcile, duplicates drop, output is stable, failures keep the old corpus."""

from __future__ import annotations

import json

import pytest

from reprolab.data.corpus import FetchConfig, build_corpus, read_records
from reprolab.errors import DatasetError, SourceError
from tests.test_data_readers import jpeg_bytes, make_art

CFG = FetchConfig(min_image_side=32)


def tree_bytes(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def snapshot(tmp_path):
    root = tmp_path / "data"
    red, blue = jpeg_bytes(color=(250, 0, 0)), jpeg_bytes(color=(0, 0, 250))
    make_art(root, {"a.jpg": red, "b.jpg": blue, "copy-of-a.jpg": red, "broken.jpg": red[:300]},
             {"a.jpg": "red", "b.jpg": "blue", "copy-of-a.jpg": "red again", "broken.jpg": "cut short"})
    (root / "docs").mkdir()
    (root / "docs" / "kb.txt").write_text("Texto do documento.")
    return root


def test_counts_reconcile_and_duplicates_are_dropped(snapshot, tmp_path):
    report = build_corpus(snapshot, tmp_path / "corpus", CFG)
    assert report["datasets"]["art"] == {"read": 4, "accepted": 2, "quarantined": 1, "duplicates": 1}
    assert report["totals"]["read"] == report["totals"]["accepted"] + report["totals"]["quarantined"] \
        + report["totals"]["duplicates"]
    reasons = {q["id"]: q["reason"] for q in report["quarantine"]}
    assert "image does not decode" in reasons["art/broken.jpg"]
    assert reasons["art/copy-of-a.jpg"] == "duplicate"
    assert [r["id"] for r in read_records(tmp_path / "corpus", "art")] == ["art/a.jpg", "art/b.jpg"]
    assert (tmp_path / "corpus/art/images/a.jpg").read_bytes() == (snapshot / "art/images/a.jpg").read_bytes()
    manifest = json.loads((tmp_path / "corpus/manifest.json").read_text())
    assert manifest["counts"] == {"art": 2, "docs": 1}


def test_same_snapshot_gives_byte_identical_corpus(snapshot, tmp_path):
    build_corpus(snapshot, tmp_path / "c1", CFG)
    build_corpus(snapshot, tmp_path / "c2", CFG)
    assert tree_bytes(tmp_path / "c1") == tree_bytes(tmp_path / "c2")


def test_a_failed_build_keeps_the_previous_corpus(snapshot, tmp_path):
    corpus = tmp_path / "corpus"
    build_corpus(snapshot, corpus, CFG)
    before = tree_bytes(corpus)
    (snapshot / "art" / "descriptions.json").write_bytes(b'{"a.jpg": "\xe9t\xe9"}')
    with pytest.raises(DatasetError, match="not UTF-8"):
        build_corpus(snapshot, corpus, CFG)
    assert tree_bytes(corpus) == before
    assert not (tmp_path / "corpus.tmp").exists()


def test_a_missing_snapshot_is_a_clear_error(tmp_path):
    with pytest.raises(SourceError, match="does not exist"):
        build_corpus(tmp_path / "nowhere", tmp_path / "corpus", CFG)
