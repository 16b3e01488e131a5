"""Small I/O shared by the stage scripts."""

from __future__ import annotations

import json
from pathlib import Path

# Where each stage reads and writes; dvc.yaml names the same paths.
SNAPSHOT = Path("data")
CORPUS = Path("corpus")
SPLITS = Path("splits")
MODELS = Path("models")
REPORTS = Path("reports")


def write_json(path: str | Path, data: object) -> None:
    """Write pretty, key-sorted JSON (stable bytes, so DVC sees no change when nothing changed)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")
    tmp.replace(path)
