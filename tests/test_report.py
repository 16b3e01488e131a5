"""The PR report built by the real `dvc metrics diff` / `dvc params diff` in a tiny temporary git + DVC repo.

Two commits: A, then B where a recall drops by 0.10 (beyond the gate's max_drop 0.05), a param changes, the
data snapshot grows and gets quarantined records, and captions get longer (drift). `python -m stages.evaluate`
runs as a DVC stage and `python -m stages.report` builds the report, both from this project's code.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
import yaml

from reprolab.evaluation.report import _fmt, metrics_table
from reprolab.evaluation.summary import EvaluateConfig
from tests.pipeline_repo import PipelineRepo

REPO = Path(__file__).resolve().parents[1]

# Writes the "model" metrics, a training log and the data-quality report from params.yaml `toy`.
GEN = r'''
import csv, json, os, yaml
p = yaml.safe_load(open("params.yaml"))["toy"]
os.makedirs("reports/clip", exist_ok=True)
metrics = {
    "baseline": {"i2t_recall@1": 0.1, "i2t_recall@5": 0.3, "i2t_median_rank": 12, "chance_recall@5": 0.05},
    "finetuned": {"i2t_recall@1": 0.25, "i2t_recall@5": p["recall5"], "i2t_median_rank": p["median_rank"],
                  "chance_recall@5": 0.05},
}
json.dump(metrics, open("reports/clip/metrics.json", "w"), sort_keys=True, indent=2)
with open("reports/clip/train_log.csv", "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["step", "train_loss", "val_score"])
    for step in range(1, 6):
        w.writerow([step, round(p["lr"] * 1000 / step, 4), round(0.1 * step, 2)])
quarantine = [{"dataset": "art", "id": f"art/{i}.jpg", "reason": "image too small"}
              for i in range(p["quarantined"])]
json.dump({"datasets": {"art": {"read": p["accepted"] + p["quarantined"], "accepted": p["accepted"],
                                "quarantined": p["quarantined"], "duplicates": 0}},
           "quarantine": quarantine}, open("reports/data_quality.json", "w"), sort_keys=True, indent=2)
'''

DVC_YAML = {
    "stages": {
        "train": {
            "cmd": "python gen.py",
            "deps": ["gen.py"],
            "params": ["toy"],
            "outs": [{"reports/clip/train_log.csv": {"cache": False}}],
            "metrics": [{"reports/clip/metrics.json": {"cache": False}},
                        {"reports/data_quality.json": {"cache": False}}],
        },
        "evaluate": {
            "cmd": "python -m stages.evaluate",
            "deps": ["corpus", "reports/clip/metrics.json", "reports/clip/train_log.csv",
                     "reports/data_quality.json"],
            "params": ["evaluate.models", "evaluate.data_quality"],
            "outs": [{"reports/corpus_stats.json": {"cache": False}}, {"reports/cards": {"cache": False}}],
            "metrics": [{"reports/metrics.json": {"cache": False}}],
            "plots": [{"reports/plots": {"cache": False}}],
        },
    }
}

PARAMS = {
    "toy": {"recall5": 0.6, "median_rank": 5, "lr": 0.001, "accepted": 200, "quarantined": 0},
    "evaluate": {
        "data_quality": "reports/data_quality.json",
        "models": {"clip": {"title": "toy CLIP", "metrics": "reports/clip/metrics.json", "params": ["toy"],
                            "baseline": "baseline", "training_logs": ["reports/clip/train_log.csv"]}},
        "gate": {
            "floors": {"clip.finetuned.i2t_recall@5": 0.10},
            "max_drop": {"*recall@*": 0.05},
            "warn_drop": {"*recall@*": 0.02},
        },
        "drift": {"caption_length_rel": 0.2},
    },
}


def captions(words: int) -> str:
    return "".join(json.dumps({"id": f"art/{i}.jpg", "text": " ".join(["w"] * words), "width": 640,
                               "height": 480}) + "\n" for i in range(10))


class TempRepo(PipelineRepo):
    """A scratch git + DVC repository that runs this project's stage code."""

    def __init__(self, root: Path):
        super().__init__(root, code_root=REPO)

    def write(self, rel: str, text: str) -> None:
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)

    def commit(self, message: str) -> None:
        self.dvc("repro")
        self.sh("git", "add", ".")  # a throw-away repo of our own: everything in it is ours
        self.sh("git", "commit", "-qm", message)


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> TempRepo:
    repo = TempRepo(tmp_path_factory.mktemp("report_repo"))
    repo.sh("git", "init", "-q", "-b", "main")
    repo.sh("git", "config", "user.email", "test@reprolab.invalid")
    repo.sh("git", "config", "user.name", "reprolab tests")
    repo.dvc("init", "-q")
    repo.write("gen.py", GEN)
    repo.write("dvc.yaml", yaml.safe_dump(DVC_YAML, sort_keys=False))
    repo.write("params.yaml", yaml.safe_dump(PARAMS, sort_keys=False))
    repo.write("corpus/art/records.jsonl", captions(5))
    repo.commit("A")
    params = yaml.safe_load((repo.root / "params.yaml").read_text())
    params["toy"].update(recall5=0.5, median_rank=7, lr=0.002, accepted=210, quarantined=3)
    repo.write("params.yaml", yaml.safe_dump(params, sort_keys=False))
    repo.write("corpus/art/records.jsonl", captions(8))  # mean caption words 5 -> 8: +60%, drift
    repo.commit("B")
    return repo


def report(repo: TempRepo, base: str) -> tuple[str, dict]:
    out = repo.sh(sys.executable, "-m", "stages.report", "--base", base)
    assert "report: reports/pr_report.md" in out.stdout
    return ((repo.root / "reports/pr_report.md").read_text(),
            json.loads((repo.root / "reports/gate.json").read_text()))


def table_row(markdown: str, metric: str) -> list[str]:
    for line in markdown.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells and cells[0] == metric:
            return cells
    raise AssertionError(f"no table row for {metric} in\n{markdown}")


@pytest.mark.slow
def test_evaluate_stage_writes_flat_summary(repo):
    flat = json.loads((repo.root / "reports/metrics.json").read_text())
    assert flat["clip.finetuned.i2t_recall@5"] == 0.5
    assert flat["clip.baseline.i2t_recall@5"] == 0.3
    assert flat["data.art.quarantined"] == 3
    assert (repo.root / "reports/cards/clip.md").is_file()


@pytest.mark.slow
def test_report_against_previous_commit_fails_the_recall_drop(repo):
    md, gate = report(repo, "HEAD~1")

    # Metrics diff: base, new, change, percentage, direction.
    assert table_row(md, "clip.finetuned.i2t_recall@5")[1:] == ["0.6", "0.5", "-0.1", "-16.7%", "▼ worse"]
    # Lower is better: the median rank rising 5 -> 7 is worse.
    assert table_row(md, "clip.finetuned.i2t_median_rank")[1:] == ["5", "7", "+2", "+40.0%", "▼ worse"]
    assert table_row(md, "clip.baseline.i2t_recall@5")[1:] == ["0.3", "0.3", "+0", "+0.0%", "="]
    # A neutral count: moves without a direction.
    assert table_row(md, "data.art.accepted")[1:] == ["200", "210", "+10", "+5.0%", "·"]
    assert table_row(md, "data.art.quarantined")[1:4] == ["0", "3", "+3"]

    # Params diff: the changed params with old and new values; unchanged ones absent.
    assert table_row(md, "toy.lr")[1:] == ["0.001", "0.002"]
    assert table_row(md, "toy.recall5")[1:] == ["0.6", "0.5"]
    params_section = md.split("## Params changed")[1].split("## ")[0]
    assert "evaluate." not in params_section

    # Data quality of the month: accepted, new records, quarantined, duplicates; reasons; drift.
    assert table_row(md, "art")[1:] == ["210", "+10", "3", "0"]
    assert "image too small (3)" in md
    assert re.search(r"caption length \(mean words\) moved 5 -> 8", md)

    # Plots: referenced in the markdown and real PNG files beside it.
    plots = re.findall(r"!\[[^\]]*\]\((plots/[^)]+\.png)\)", md)
    assert "plots/clip_training.png" in plots and "plots/clip_variants.png" in plots
    for rel in plots:
        assert (repo.root / "reports" / rel).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # The gate: fail for the recall drop (0.1 > 0.05 allowed), warn for the drift.
    assert "## Regression gate: ❌ FAIL" in md
    assert gate["status"] == "fail"
    fails = [f for f in gate["findings"] if f["level"] == "fail"]
    assert [f["metric"] for f in fails] == ["clip.finetuned.i2t_recall@5"]
    assert "0.6 -> 0.5" in fails[0]["message"]
    assert any(f["level"] == "warn" and "caption length" in f["message"] for f in gate["findings"])

    # `python -m stages.gate` turns the verdict into a failing exit status.
    proc = repo.sh(sys.executable, "-m", "stages.gate", check=False)
    assert proc.returncode == 2, proc.stdout + proc.stderr


@pytest.mark.slow
def test_identical_rerun_passes(repo):
    repo.dvc("repro")  # nothing changed: no stage runs, same numbers
    md, gate = report(repo, "HEAD")
    assert gate["status"] == "pass", gate["findings"]
    assert "## Regression gate: ✅ PASS" in md
    assert table_row(md, "clip.finetuned.i2t_recall@5")[1:] == ["0.5", "0.5", "+0", "+0.0%", "="]
    assert "No parameter changed." in md
    assert "No drift warnings." in md
    assert repo.sh(sys.executable, "-m", "stages.gate").returncode == 0


def test_metrics_table_rows():
    cfg = EvaluateConfig.model_validate(PARAMS["evaluate"])
    diff = {"clip.finetuned.i2t_recall@5": {"old": 0.5, "new": 0.55, "diff": 0.05},
            "clip.finetuned.i2t_median_rank": {"old": 10, "new": 8, "diff": -2},
            "rag.retrieval.mrr": {"old": None, "new": 0.7},
            "data.art.quarantined": {"old": 0, "new": 2, "diff": 2},
            "clip.finetuned.chance_recall@5": {"old": 0.05, "new": 0.04, "diff": -0.01}}
    md = "\n".join(metrics_table(diff, cfg))
    row = table_row(md, "clip.finetuned.i2t_recall@5")
    assert row[1:] == ["0.5", "0.55", "+0.05", "+10.0%", "▲ better"]
    assert table_row(md, "clip.finetuned.i2t_median_rank")[1:] == ["10", "8", "-2", "-20.0%", "▲ better"]
    assert table_row(md, "rag.retrieval.mrr")[1:] == ["–", "0.7", "–", "new", "new"]
    assert table_row(md, "data.art.quarantined")[1:] == ["0", "2", "+2", "–", "▼ worse"]
    assert table_row(md, "clip.finetuned.chance_recall@5")[5] == "·"  # neutral: no direction


def test_param_cells_are_markdown_safe():
    # A gate pattern as a param name or a list value must neither italicise nor split the table row.
    assert _fmt("evaluate.gate.max_drop.*recall@*") == "evaluate.gate.max_drop.\\*recall@\\*"
    assert _fmt("[a|b]") == "[a\\|b]"


def test_card_table_compares_only_variants_and_lists_settings_beside_it():
    from reprolab.evaluation.cards import comparable_variants, metrics_table

    metrics = {"zero_shot": {"f1": 0.1}, "finetuned": {"f1": 0.5}, "eval": {"eval_examples": 48},
               "chance_recall@5": 0.15}
    assert list(comparable_variants(metrics, "zero_shot")) == ["zero_shot", "finetuned"]
    table = "\n".join(metrics_table(metrics, "zero_shot"))
    assert "eval" not in table.splitlines()[0] and "| f1 | 0.1 | 0.5 | +0.4 |" in table
