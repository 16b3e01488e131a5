"""DVC stage `train_clip`: fine-tune the CLIP model, write models/clip and reports/clip/{metrics.json,train_log.csv}."""

from __future__ import annotations

import csv

from reprolab import cli
from reprolab.clip.experiment import TrainClipConfig, train_and_evaluate
from reprolab.clip.model import save_model_dir
from reprolab.config import load_section
from stages.common import CORPUS, MODELS, REPORTS, SPLITS, write_json

LOG_COLUMNS = ("step", "stage", "epoch", "train_loss", "val_score", "val_i2t_recall@5", "val_t2i_recall@5",
               "logit_scale")


def main() -> None:
    cfg = load_section("train_clip", TrainClipConfig)
    run = train_and_evaluate(cfg, SPLITS, CORPUS)
    save_model_dir(run.model, run.model_cfg, run.preprocess_cfg, MODELS / "clip", run.info)
    write_json(REPORTS / "clip" / "metrics.json", run.metrics)
    with open(REPORTS / "clip" / "train_log.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=LOG_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        for row in run.history:
            writer.writerow({k: round(v, 6) if isinstance(v, float) else v for k, v in row.items()})
    for name in ("baseline", "reference", "finetuned"):
        if name in run.metrics:
            row = run.metrics[name]
            print(f"{name:9s} i2t R@1/5/10 {row['i2t_recall@1']:.3f} {row['i2t_recall@5']:.3f} "
                  f"{row['i2t_recall@10']:.3f}  t2i R@1/5/10 {row['t2i_recall@1']:.3f} {row['t2i_recall@5']:.3f} "
                  f"{row['t2i_recall@10']:.3f}")
    print(f"chance    R@5 {run.metrics['chance_recall@5']:.3f} on {run.metrics['test_images']} test images")


if __name__ == "__main__":
    cli.run(main, "train_clip")
