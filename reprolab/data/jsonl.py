"""JSON lines: the one reader and writer of the project's `.jsonl` files (records, splits, questions)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from reprolab.data.atomic import write_text
from reprolab.errors import DatasetError


def read_jsonl(path: Path, missing: str | None = None, missing_ok: bool = False) -> list[dict]:
    """One dict per non-blank line. A missing file is a DatasetError (with `missing`, the step that makes it),
    or [] with missing_ok; a line that is not a JSON object is an error naming the file and line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as e:
        if missing_ok:
            return []
        raise DatasetError(f"{path} not found" + (f": {missing}" if missing else "")) from e
    except OSError as e:
        raise DatasetError(f"{path} cannot be read: {e}") from e
    return parse_jsonl(text, str(path))


def parse_jsonl(text: str, where: str) -> list[dict]:
    """One dict per non-blank line of `text`; a line that is not a JSON object is a DatasetError naming `where`
    (a file, or a revision's file) and the line."""
    rows = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise DatasetError(f"{where}:{number} is not valid JSON ({e.msg})") from e
        if not isinstance(row, dict):
            raise DatasetError(f"{where}:{number} must be a JSON object, got {type(row).__name__}")
        rows.append(row)
    return rows


def write_jsonl(path: Path, rows: Iterable[dict]) -> None:
    """One key-sorted JSON object per line (stable bytes), written atomically."""
    write_text(path, "".join(json.dumps(row, ensure_ascii=False, sort_keys=True) + "\n" for row in rows))
