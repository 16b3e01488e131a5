"""Does fine-tuning beat the frozen-towers reference beyond split noise? K-fold cross-validation of train_clip.

The project's test split holds ~30 images, so one image moves recall@5 by 0.03. This script never reads the
test split: it pools train + validation, cuts K folds (by a salted hash of each id), and for each fold runs the
stage's own `train_and_evaluate` with that fold as "test", the rest cut 80/20 into train/validation. It prints
per-fold and mean recall@5 of the three rows (baseline, reference, fine-tuned) and how many folds fine-tuning
wins. Usage:

    .venv/bin/python bench/clip_cv.py [--folds 5] [--set train.epochs=6 --set model.image_unlocked_groups=2]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from reprolab.clip.data import read_pairs  # noqa: E402
from reprolab.clip.experiment import TrainClipConfig, train_and_evaluate  # noqa: E402
from reprolab import cli  # noqa: E402
from reprolab.config import load_section, with_overrides  # noqa: E402
from reprolab.logs import configure  # noqa: E402

KEYS = ("i2t_recall@5", "t2i_recall@5", "i2t_recall@1", "t2i_recall@1")


def _rank(rec_id: str, salt: str) -> str:
    return hashlib.sha256(f"{salt}:{rec_id}".encode()).hexdigest()


def fold_splits(records: list[dict], folds: int, salt: str = "clip-cv") -> list[dict[str, list[dict]]]:
    ordered = sorted(records, key=lambda r: _rank(r["id"], salt))
    out = []
    for k in range(folds):
        test = ordered[k::folds]
        rest = [r for i, r in enumerate(ordered) if i % folds != k]
        n_val = max(1, round(len(rest) * 0.2))
        out.append({"test": test, "validation": rest[:n_val], "train": rest[n_val:]})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override train_clip")
    args = ap.parse_args()
    configure("WARNING")
    cfg = with_overrides(load_section("train_clip", TrainClipConfig, ROOT / "params.yaml"), args.set, "train_clip")
    src = ROOT / "splits" / cfg.dataset
    pool = read_pairs(src / "train.jsonl") + read_pairs(src / "validation.jsonl")
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        for k, fold in enumerate(fold_splits(pool, args.folds)):
            root = Path(tmp) / f"fold{k}"
            (root / cfg.dataset).mkdir(parents=True)
            for name, recs in fold.items():
                (root / cfg.dataset / f"{name}.jsonl").write_text(
                    "".join(json.dumps(r) + "\n" for r in recs), encoding="utf-8")
            start = time.perf_counter()
            run = train_and_evaluate(cfg, root, ROOT / "corpus")
            row = {"fold": k, "n_test": len(fold["test"]), "seconds": round(time.perf_counter() - start, 1)}
            for name in ("baseline", "reference", "finetuned"):
                row[name] = {key: run.metrics[name][key] for key in KEYS}
            rows.append(row)
            print(json.dumps(row), flush=True)
    mean = {name: {key: round(sum(r[name][key] for r in rows) / len(rows), 4) for key in KEYS}
            for name in ("baseline", "reference", "finetuned")}
    wins = {key: sum(r["finetuned"][key] > r["reference"][key] for r in rows) for key in KEYS}
    ties = {key: sum(r["finetuned"][key] == r["reference"][key] for r in rows) for key in KEYS}
    print(json.dumps({"set": args.set, "folds": args.folds, "pool": len(pool), "mean": mean,
                      "finetuned_wins": wins, "ties": ties}))


if __name__ == "__main__":
    cli.run(main, "clip_cv")
