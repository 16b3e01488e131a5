"""DVC stage `train_clip`: fine-tune the CLIP model; write models/clip, the evaluation (reports/clip/{metrics.json,
evaluation.json,examples.jsonl}) and the DVCLive training log (reports/clip/train_log/)."""

from __future__ import annotations

import os

from dvclive import Live

from reprolab import cli
from reprolab.clip.experiment import TrainClipConfig, live_logger, train_and_evaluate
from reprolab.clip.model import save_model_dir
from reprolab.clip.train import join_torchrun
from reprolab.config import load_section
from reprolab.evaluation.evidence import write_evaluation
from reprolab.evaluation.retrieval import RETRIEVAL_SPECS
from stages.common import CORPUS, MODELS, REPORTS, SPLITS


def main() -> None:
    cfg = load_section("train_clip", TrainClipConfig)
    ranks = join_torchrun(os.environ)  # `torchrun --nproc-per-node N -m stages.train_clip`: data-parallel
    if ranks.rank > 0:  # every rank trains the same model; rank 0 alone writes it
        train_and_evaluate(cfg, SPLITS, CORPUS)
        return
    with Live(str(REPORTS / "clip" / "train_log"), save_dvc_exp=False, dvcyaml=None, report=None) as live:
        run = train_and_evaluate(cfg, SPLITS, CORPUS, on_epoch=live_logger(live))
    save_model_dir(run.model, run.model_cfg, run.preprocess_cfg, MODELS / "clip", run.info)
    by_variant = {k: v for k, v in run.metrics.items() if isinstance(v, dict)}
    write_evaluation(REPORTS / "clip", RETRIEVAL_SPECS, run.examples, "finetuned",
                     extra={"retrieval": by_variant} | {k: v for k, v in run.metrics.items() if k not in by_variant})
    for name, row in by_variant.items():
        print(f"{name:9s} i2t R@1/5/10 {row['i2t_recall@1']:.3f} {row['i2t_recall@5']:.3f} "
              f"{row['i2t_recall@10']:.3f}  t2i R@1/5/10 {row['t2i_recall@1']:.3f} {row['t2i_recall@5']:.3f} "
              f"{row['t2i_recall@10']:.3f}")
    print(f"chance    R@5 {run.metrics['chance_recall@5']:.3f} on {run.metrics['test_images']} test images")


if __name__ == "__main__":
    cli.run(main, "train_clip")
