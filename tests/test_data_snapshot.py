"""The raw snapshot: incremental by content tag, resumable after an interruption, never half-written."""

from __future__ import annotations

import json
import os

import pytest

from reprolab.data.snapshot import INDEX_NAME, update_snapshot
from reprolab.data.sources import LocalSource, open_source
from reprolab.errors import SourceError


class CountingSource(LocalSource):
    """A local source that records downloads and can fail after a number of them."""

    def __init__(self, root, fail_after=None):
        super().__init__(root)
        self.downloads, self.fail_after = [], fail_after

    def download(self, key, dest):
        if self.fail_after is not None and len(self.downloads) >= self.fail_after:
            raise SourceError(f"connection reset while downloading {key}")
        self.downloads.append(key)
        super().download(key, dest)


def files(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.name != INDEX_NAME}


@pytest.fixture
def upstream(tmp_path):
    root = tmp_path / "upstream"
    for i in range(5):
        (root / "art").mkdir(parents=True, exist_ok=True)
        (root / "art" / f"{i}.txt").write_text(f"object {i}")
    return root


def test_only_new_and_changed_objects_are_downloaded(upstream, tmp_path):
    snap = tmp_path / "data"
    first = CountingSource(upstream)
    update_snapshot(first, snap)
    assert len(first.downloads) == 5 and files(snap) == files(upstream)

    again = CountingSource(upstream)
    result = update_snapshot(again, snap)
    assert again.downloads == [] and not result.changed

    (upstream / "art" / "1.txt").write_text("changed")
    (upstream / "art" / "new.txt").write_text("new")
    (upstream / "art" / "4.txt").unlink()
    third = CountingSource(upstream)
    result = update_snapshot(third, snap)
    assert sorted(third.downloads) == ["art/1.txt", "art/new.txt"]
    assert result.removed == ["art/4.txt"]
    assert files(snap) == files(upstream)


def test_an_interrupted_update_keeps_the_snapshot_and_resumes(upstream, tmp_path):
    snap = tmp_path / "data"
    update_snapshot(LocalSource(upstream), snap)
    before = files(snap)
    for i in range(5, 10):
        (upstream / "art" / f"{i}.txt").write_text(f"month two {i}")

    with pytest.raises(SourceError, match="connection reset"):
        update_snapshot(CountingSource(upstream, fail_after=2), snap)
    assert files(snap) == before  # untouched until every download has landed

    resumed = CountingSource(upstream)
    update_snapshot(resumed, snap)
    assert len(resumed.downloads) == 3  # the two staged before the failure are not fetched again
    assert files(snap) == files(upstream)
    assert not (tmp_path / "data.staging").exists() and not (tmp_path / "data.next").exists()


def test_the_index_records_every_object_tag(upstream, tmp_path):
    snap = tmp_path / "data"
    update_snapshot(LocalSource(upstream), snap)
    index = json.loads((snap / INDEX_NAME).read_text())
    assert sorted(index["objects"]) == [f"art/{i}.txt" for i in range(5)]


def test_a_missing_source_is_a_clear_error_and_changes_nothing(upstream, tmp_path):
    snap = tmp_path / "data"
    update_snapshot(LocalSource(upstream), snap)
    before = files(snap)
    with pytest.raises(SourceError, match="does not exist"):
        update_snapshot(open_source(str(tmp_path / "missing")), snap)
    assert files(snap) == before


def test_an_unreadable_file_is_a_clear_error(upstream, tmp_path):
    os.symlink(tmp_path / "gone", upstream / "art" / "dangling.txt")
    with pytest.raises(SourceError, match="broken link"):
        update_snapshot(LocalSource(upstream), tmp_path / "data")


def test_unsupported_source_urls_are_refused():
    with pytest.raises(SourceError, match="unsupported source"):
        open_source("gs://bucket/prefix")
