"""Validate the raw snapshot into the corpus: accepted records, quarantined ones with reasons, duplicates.

The corpus is written next to its final place and renamed over it only when complete, so a failed run
leaves the previous corpus as it was. Its content is a pure function of the snapshot (sorted, no
timestamps), so an unchanged snapshot gives byte-identical output and DVC re-runs nothing downstream.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from reprolab.config import StrictConfig
from reprolab.data import readers
from reprolab.data.atomic import staged_folder
from reprolab.data.jsonl import read_jsonl, write_jsonl
from reprolab.data.readers import Candidate
from reprolab.errors import SourceError

log = logging.getLogger(__name__)

DATASETS = ("art", "nlupp", "viggo", "docs")


class FetchConfig(StrictConfig):
    source: str = "samples"  # a local folder or s3://bucket/prefix
    endpoint_url: str | None = None  # S3-compatible endpoint (MinIO); AWS_ENDPOINT_URL works too
    min_image_side: int = 64
    max_description_chars: int = 20_000


@dataclass
class DatasetReport:
    read: int = 0
    accepted: int = 0
    quarantined: int = 0
    duplicates: int = 0

    def reconciles(self) -> bool:
        return self.read == self.accepted + self.quarantined + self.duplicates


def _readers(cfg: FetchConfig) -> dict[str, Callable[[Path], Iterator[Candidate]]]:
    return {
        "art": lambda root: readers.read_art(root, cfg.min_image_side, cfg.max_description_chars),
        "nlupp": readers.read_nlupp,
        "viggo": readers.read_viggo,
        "docs": readers.read_docs,
    }


def build_corpus(snapshot: Path, corpus: Path, cfg: FetchConfig) -> dict:
    """Validate every record of `snapshot` into `corpus`; return the data-quality report."""
    if not snapshot.is_dir():
        raise SourceError(f"snapshot '{snapshot}' does not exist: run `make data` (or `dvc pull data.dvc`)")
    present = [name for name in DATASETS if (snapshot / name).is_dir()]
    if not present:
        raise SourceError(f"snapshot '{snapshot}' holds none of the datasets {list(DATASETS)}")

    reports: dict[str, DatasetReport] = {}
    quarantine: list[dict] = []
    manifest: list[dict] = []
    with staged_folder(corpus) as tmp:  # swapped in complete, or not at all
        for name in present:
            report = reports[name] = DatasetReport()
            seen: dict[str, str] = {}  # content hash -> id of the record kept
            accepted_ids: set[str] = set()
            accepted: list[dict] = []
            for cand in _readers(cfg)[name](snapshot):
                report.read += 1
                if cand.problem:
                    report.quarantined += 1
                    quarantine.append({"dataset": name, "id": cand.id, "reason": cand.problem})
                elif cand.content_hash in seen or cand.id in accepted_ids:
                    # Same bytes, or the same stable id (e.g. one message text twice): keep the first.
                    report.duplicates += 1
                    quarantine.append({"dataset": name, "id": cand.id, "reason": "duplicate",
                                       "duplicate_of": seen.get(cand.content_hash, cand.id)})
                else:
                    seen[cand.content_hash] = cand.id
                    accepted_ids.add(cand.id)
                    accepted.append(cand.record)
                    for rel, src in cand.files.items():
                        dest = tmp / rel
                        dest.parent.mkdir(parents=True, exist_ok=True)
                        shutil.copyfile(src, dest)
                    manifest.append({"dataset": name, "id": cand.id, "sha256": cand.content_hash})
            if name == "nlupp":
                for rel, src in readers.nlupp_files(snapshot).items():
                    (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(src, tmp / rel)
            report.accepted = len(accepted)
            assert report.reconciles(), f"{name}: counts do not reconcile: {report}"
            accepted.sort(key=lambda r: r["id"])
            write_jsonl(tmp / name / "records.jsonl", accepted)
            log.info("dataset validated", extra={"dataset": name, **report.__dict__})
        manifest.sort(key=lambda e: (e["dataset"], e["id"]))
        (tmp / "manifest.json").write_text(
            json.dumps({"records": manifest, "counts": {k: v.accepted for k, v in reports.items()}},
                       indent=1, sort_keys=True) + "\n",
            encoding="utf-8",
        )
    totals = DatasetReport(*(sum(getattr(r, f) for r in reports.values())
                             for f in ("read", "accepted", "quarantined", "duplicates")))
    return {
        "datasets": {k: v.__dict__ for k, v in reports.items()},
        "totals": totals.__dict__,
        "quarantine": sorted(quarantine, key=lambda q: (q["dataset"], q["id"])),
    }


def read_records(corpus: Path, dataset: str) -> list[dict]:
    return read_jsonl(corpus / dataset / "records.jsonl", missing_ok=True)
