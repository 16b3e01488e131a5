"""Atomic writes: a file or a folder is replaced by its complete new version with a rename, so readers never see
a half-written one and a crash leaves the previous version in place.

The one place in the codebase that writes to a temporary path and renames it over the real one:
- `write_text` / `write_json`: a small text file;
- `replacing(path)`: a file some library writes itself (joblib.dump, yaml.dump, a download);
- `staged_folder(final)` / `swap_in`: a folder built beside `final`, then swapped in. On Linux the swap is one
  renameat2(RENAME_EXCHANGE), so `final` exists at every instant (a reader sees the old or the new folder);
  elsewhere it falls back to two renames, with a moment between them where `final` is absent.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

_AT_FDCWD, _RENAME_EXCHANGE = -100, 2


def _exchange(a: Path, b: Path) -> bool:
    """Swap two existing paths in one system call (Linux renameat2); False where unsupported."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):  # a libc without renameat2 (glibc < 2.28, musl)
        return False
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    errno = ctypes.get_errno()
    if errno in (38, 22, 95):  # ENOSYS, EINVAL, EOPNOTSUPP: this kernel or filesystem cannot exchange
        return False
    raise OSError(errno, f"cannot swap {a} and {b}: {os.strerror(errno)}")


def swap_in(new: Path, final: Path) -> None:
    """Move the finished folder `new` to `final`; the previous `final` is removed only after the swap."""
    new, final = Path(new), Path(final)
    if final.exists() and _exchange(new, final):
        shutil.rmtree(new)  # `new` holds the previous version now
        return
    old = final.with_name(final.name + ".old")
    if final.exists():
        if old.exists():
            shutil.rmtree(old)
        os.replace(final, old)
    os.replace(new, final)
    shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def staged_folder(final: Path) -> Iterator[Path]:
    """An empty folder beside `final` to build the new version in; swapped in when the block ends without an
    error, removed when it raises (the previous `final` stays as it was)."""
    final = Path(final)
    tmp = final.with_name(f".{final.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        yield tmp
        swap_in(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def replacing(path: Path) -> Iterator[Path]:
    """A temporary path beside `path` to write the new file to; renamed over `path` when the block ends without
    an error, deleted when it raises."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text(path: str | Path, text: str) -> None:
    """Write `text` to a temporary file beside `path`, then rename it over `path`."""
    with replacing(Path(path)) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | Path, data: object) -> None:
    """Pretty, key-sorted JSON (stable bytes, so DVC sees no change when nothing changed), written atomically."""
    write_text(path, json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n")
