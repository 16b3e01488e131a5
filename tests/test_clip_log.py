"""The CLIP training log through DVCLive: one TSV per metric against step, stable bytes, no timestamps."""

from __future__ import annotations

from dvclive import Live

from reprolab.clip.experiment import LIVE_METRICS, live_logger


def _rows():
    return [{"stage": stage, "epoch": e, "train_loss": 4.0 / e + 1e-9, "val_score": 0.1 * e, "val_i2t_recall@5": 0.2,
             "val_t2i_recall@5": 0.3, "logit_scale": 14.2857142857, "lr": 1e-3} for stage, e in
            (("heads", 1), ("heads", 2), ("finetune", 1))]


def _write(folder) -> dict[str, bytes]:
    with Live(str(folder), save_dvc_exp=False, dvcyaml=None, report=None) as live:
        log = live_logger(live)
        for row in _rows():
            log(row)
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*.tsv"))}


def test_one_tsv_per_metric_with_step_and_value_rounded(tmp_path):
    files = _write(tmp_path / "train_log")
    assert set(files) == {f"plots/metrics/{name}.tsv" for name in LIVE_METRICS}
    assert files["plots/metrics/train/loss.tsv"] == b"step\tloss\n0\t4.0\n1\t2.0\n2\t4.0\n"
    assert files["plots/metrics/val/i2t_recall@5.tsv"].startswith(b"step\ti2t_recall@5\n0\t0.2\n")
    # recall files hold recall only: epoch and logit_scale never share a plot with them
    assert all(b"logit_scale" not in v and b"epoch" not in v for k, v in files.items() if "recall" in k)


def test_the_log_has_the_same_bytes_twice(tmp_path):
    assert _write(tmp_path / "a") == _write(tmp_path / "b")
