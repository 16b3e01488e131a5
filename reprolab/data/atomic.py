"""Atomic writes: a file or a folder is replaced by its complete new version with a rename, so readers never see
a half-written one and a crash leaves the previous version in place."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path


def swap_in(new: Path, final: Path) -> None:
    """Move the finished folder `new` to `final`; the previous `final` is removed only after the swap."""
    old = final.with_name(final.name + ".old")
    if final.exists():
        if old.exists():
            shutil.rmtree(old)
        os.replace(final, old)
    os.replace(new, final)
    shutil.rmtree(old, ignore_errors=True)


def write_text(path: str | Path, text: str) -> None:
    """Write `text` to a temporary file beside `path`, then rename it over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_json(path: str | Path, data: object) -> None:
    """Pretty, key-sorted JSON (stable bytes, so DVC sees no change when nothing changed), written atomically."""
    write_text(path, json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n")
