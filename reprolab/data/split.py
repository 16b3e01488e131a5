"""Deterministic train/validation/test assignment by a hash of each record's stable id.

A record's split depends only on its id, the salt and the ratios, never on which other records exist,
so data added next month never moves an old record to another split.
"""

from __future__ import annotations

import hashlib

from pydantic import field_validator

from reprolab.config import StrictConfig

SPLITS = ("train", "validation", "test")


class SplitConfig(StrictConfig):
    salt: str = "reprolab-v1"
    ratios: dict[str, float] = {"train": 0.7, "validation": 0.15, "test": 0.15}

    @field_validator("ratios")
    @classmethod
    def _valid_ratios(cls, v: dict[str, float]) -> dict[str, float]:
        if set(v) != set(SPLITS):
            raise ValueError(f"ratios must name exactly {list(SPLITS)}, got {sorted(v)}")
        if any(r < 0 for r in v.values()) or abs(sum(v.values()) - 1.0) > 1e-9:
            raise ValueError(f"ratios must be non-negative and sum to 1, got {v}")
        return v


def hash_unit(record_id: str, salt: str) -> float:
    """A number in [0, 1) that depends only on the id and the salt."""
    digest = hashlib.sha256(f"{salt}\x00{record_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def split_of(record_id: str, cfg: SplitConfig) -> str:
    u, edge = hash_unit(record_id, cfg.salt), 0.0
    for name in SPLITS:
        edge += cfg.ratios[name]
        if u < edge:
            return name
    return SPLITS[-1]


def split_by_hash(records: list[dict], cfg: SplitConfig) -> dict[str, list[dict]]:
    """Partition records (each with an `id`) into the three splits, each sorted by id."""
    parts: dict[str, list[dict]] = {name: [] for name in SPLITS}
    for rec in sorted(records, key=lambda r: r["id"]):
        parts[split_of(rec["id"], cfg)].append(rec)
    return parts
