"""The raw snapshot: a mirror of the upstream source in `data/`, versioned by data.dvc.

Updating is incremental and crash-safe:
1. list the source; objects whose tag matches the snapshot's index are kept, not downloaded again;
2. new or changed objects are downloaded into a staging folder beside the snapshot, each recorded in the
   staging folder's progress file as it lands, so an interrupted update resumes where it stopped;
3. only when every download has landed is the next snapshot assembled (hard links for kept files) and
   swapped in with renames. Until then the previous snapshot is untouched.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from reprolab.data.atomic import replacing, swap_in
from reprolab.data.sources import ObjectInfo, Source
from reprolab.errors import SourceError

log = logging.getLogger(__name__)

INDEX_NAME = "_upstream.json"  # inside the snapshot: versioned with it, so every commit knows its tags
PROGRESS_NAME = "_progress.json"


@dataclass
class SnapshotUpdate:
    source: str
    downloaded: list[str] = field(default_factory=list)
    kept: int = 0
    removed: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.downloaded or self.removed)


def read_index(snapshot: Path) -> dict[str, ObjectInfo]:
    path = snapshot / INDEX_NAME
    if not path.exists():
        return {}
    entries = json.loads(path.read_text(encoding="utf-8"))["objects"]
    return {key: ObjectInfo(key, e["tag"], e["size"]) for key, e in entries.items()}


def _write_index(snapshot: Path, source: Source, objects: dict[str, ObjectInfo]) -> None:
    index = {
        "source": source.url,
        "objects": {k: {"tag": o.tag, "size": o.size} for k, o in sorted(objects.items())},
    }
    (snapshot / INDEX_NAME).write_text(json.dumps(index, indent=1, sort_keys=True) + "\n", encoding="utf-8")


def _safe_key(key: str) -> str:
    parts = Path(key).parts
    if key.startswith("/") or ".." in parts or key in (INDEX_NAME, PROGRESS_NAME):
        raise SourceError(f"refusing object key '{key}': it would land outside the snapshot")
    return key


def update_snapshot(source: Source, snapshot: Path) -> SnapshotUpdate:
    """Bring `snapshot` in line with `source`, downloading only new or changed objects."""
    upstream = source.list_objects()  # raises SourceError before anything on disk changes
    for key in upstream:
        _safe_key(key)
    current = read_index(snapshot) if snapshot.exists() else {}
    # A kept file must also still be on disk (someone may have deleted it by hand).
    wanted = {
        k: o
        for k, o in upstream.items()
        if current.get(k) is None or current[k].tag != o.tag or not (snapshot / k).is_file()
    }
    result = SnapshotUpdate(source=source.url, kept=len(upstream) - len(wanted))
    result.removed = sorted(set(current) - set(upstream))
    if not wanted and not result.removed and (snapshot / INDEX_NAME).exists():
        log.info("snapshot up to date", extra={"source": source.url, "objects": len(upstream)})
        return result

    staging = snapshot.with_name(snapshot.name + ".staging")
    staging.mkdir(parents=True, exist_ok=True)
    progress_path = staging / PROGRESS_NAME
    landed = json.loads(progress_path.read_text()) if progress_path.exists() else {}
    todo = [o for k, o in sorted(wanted.items()) if landed.get(k) != o.tag]
    if len(todo) < len(wanted):
        log.info("resuming interrupted update", extra={"already_staged": len(wanted) - len(todo)})
    for obj in tqdm(todo, desc=f"fetch {source.url}", unit="obj", delay=2):  # bar only if slow
        dest = staging / obj.key
        dest.parent.mkdir(parents=True, exist_ok=True)
        with replacing(dest) as part:
            source.download(obj.key, part)
        landed[obj.key] = obj.tag
        progress_path.write_text(json.dumps(landed))
    result.downloaded = sorted(wanted)

    nxt = snapshot.with_name(snapshot.name + ".next")
    if nxt.exists():
        shutil.rmtree(nxt)
    nxt.mkdir(parents=True)
    for key in upstream:
        dest = nxt / key
        dest.parent.mkdir(parents=True, exist_ok=True)
        if key in wanted:
            os.replace(staging / key, dest)
        else:
            _link_or_copy(snapshot / key, dest)
    _write_index(nxt, source, upstream)

    swap_in(nxt, snapshot)
    shutil.rmtree(staging, ignore_errors=True)
    log.info(
        "snapshot updated",
        extra={"downloaded": len(result.downloaded), "kept": result.kept, "removed": len(result.removed)},
    )
    return result


def _link_or_copy(src: Path, dest: Path) -> None:
    # DVC may have checked files out as read-only links into its cache: copy, so the cache stays intact.
    if src.is_symlink():
        shutil.copy2(src, dest)
        return
    try:
        os.link(src, dest)
    except OSError:
        shutil.copy2(src, dest)
