"""Small I/O shared by the stage scripts."""

from __future__ import annotations

from pathlib import Path

from reprolab.data.atomic import write_json  # noqa: F401  (the stages' one JSON writer)

# Where each stage reads and writes; dvc.yaml names the same paths.
SNAPSHOT = Path("data")
CORPUS = Path("corpus")
SPLITS = Path("splits")
MODELS = Path("models")
REPORTS = Path("reports")
