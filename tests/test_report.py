"""The PR report built in a tiny temporary git + DVC repo by this project's stage code.

Three commits: A; B, a rebuild that flips one test image out of the top 5 and adds 10 new test images, with
more data; C, a real regression (a third of the images lose their match), a param change, quarantined
records and longer captions (drift). `python -m stages.evaluate` runs as a DVC stage, `python -m stages.report`
builds the report, `python -m stages.gate` enforces it.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
import yaml

from reprolab.evaluation.report import _cell
from tests.pipeline_repo import PipelineRepo

REPO = Path(__file__).resolve().parents[1]

# Writes the per-example evaluation of a toy "model", a training log and the data-quality report from `toy`.
GEN = r'''
import csv, json, os, yaml
from pathlib import Path
from reprolab.evaluation.evidence import MetricSpec, write_evaluation
p = yaml.safe_load(open("params.yaml"))["toy"]
specs = [MetricSpec("i2t_recall@5", "higher", "mean", ("i2t_hit@5",)),
         MetricSpec("i2t_mean_rank", "lower", "mean", ("i2t_rank",)),
         MetricSpec("test_images", "count", "count", ("one",))]
rows = []
for i in range(p["images"]):
    rank = 1 + (i * 7) % 9  # ranks 1..9: 5 of 9 images in the top 5
    if i < p["flipped"] and rank <= 5:
        rank = 8
    for variant, r in (("finetuned", rank), ("baseline", 1 + (i * 5) % 20)):
        rows.append({"id": f"art/{i:03d}.jpg", "variant": variant, "i2t_rank": r, "i2t_hit@5": r <= 5, "one": 1})
write_evaluation(Path("reports/clip"), specs, rows, "finetuned", extra={"chance_recall@5": 0.05})
with open("reports/clip/train_log.csv", "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["step", "epoch", "train_loss", "val_score", "logit_scale"])
    for step in range(1, 6):
        w.writerow([step, step, round(p["lr"] * 1000 / step, 4), round(0.1 * step, 2), 14.3])
quarantine = [{"dataset": "art", "id": f"art/q{i}.jpg", "reason": "image too small"}
              for i in range(p["quarantined"])]
json.dump({"datasets": {"art": {"read": p["accepted"] + p["quarantined"], "accepted": p["accepted"],
                                "quarantined": p["quarantined"], "duplicates": 0}},
           "quarantine": quarantine}, open("reports/data_quality.json", "w"), sort_keys=True, indent=2)
'''

REPORTS = ["reports/clip/evaluation.json", "reports/clip/examples.jsonl", "reports/clip/train_log.csv",
           "reports/data_quality.json"]
DVC_YAML = {
    "stages": {
        "train": {
            "cmd": "python gen.py",
            "deps": ["gen.py"],
            "params": ["toy"],
            "outs": [{path: {"cache": False}} for path in REPORTS],
            "metrics": [{"reports/clip/metrics.json": {"cache": False}}],
        },
        "evaluate": {
            "cmd": "python -m stages.evaluate",
            "deps": ["corpus", "reports/clip/metrics.json", *REPORTS],
            "params": ["evaluate.models", "evaluate.data_quality"],
            "outs": [{"reports/corpus_stats.json": {"cache": False}}, {"reports/cards": {"cache": False}}],
            "plots": [{"reports/plots": {"cache": False}}],
        },
    }
}

PARAMS = {
    "toy": {"images": 90, "flipped": 0, "lr": 0.001, "accepted": 200, "quarantined": 0},
    "evaluate": {
        "data_quality": "reports/data_quality.json",
        "models": {"clip": {"title": "toy CLIP", "metrics": "reports/clip/metrics.json", "params": ["toy"],
                            "baseline": "baseline", "training_logs": ["reports/clip/train_log.csv"]}},
        "gate": {"floors": {"clip.i2t_recall@5": 0.10}, "max_drop": {"*": 0.05}, "warn_drop": {"*": 0.02}},
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

    def set_toy(self, **values) -> None:
        self.set_params("toy", **values)

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
    repo.set_toy(images=100, flipped=1, accepted=210)  # a rebuild that flips one image, plus 10 new images
    repo.commit("B")
    repo.set_toy(flipped=40, lr=0.002, quarantined=3)  # a real regression
    repo.write("corpus/art/records.jsonl", captions(8))  # mean caption words 5 -> 8: +60%, drift
    repo.commit("C")
    return repo


def report(repo: TempRepo, base: str, rev: str) -> tuple[str, dict]:
    """The report of the workspace at `rev` against `base` (reports are committed, so a checkout restores them)."""
    base = repo.sh("git", "rev-parse", base).stdout.strip()
    repo.sh("git", "checkout", "-q", rev)
    try:
        out = repo.sh(sys.executable, "-m", "stages.report", "--base", base)
    finally:
        repo.sh("git", "checkout", "-q", "main")
    assert "report: reports/pr_report.md" in out.stdout
    return ((repo.root / "reports/pr_report.md").read_text(),
            json.loads((repo.root / "reports/gate.json").read_text()))


def table_row(markdown: str, metric: str) -> list[str]:
    for line in markdown.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells and cells[0] == metric:
            return cells
    raise AssertionError(f"no table row for {metric} in\n{markdown}")


def section(markdown: str, title: str) -> str:
    return markdown.split(f"## {title}")[1].split("\n## ")[0]


@pytest.mark.slow
def test_evaluate_checks_the_headline_figures_against_the_per_example_rows(repo):
    metrics = json.loads((repo.root / "reports/clip/metrics.json").read_text())
    assert set(metrics) == {"i2t_recall@5", "i2t_mean_rank", "test_images", "variants"}  # headline + variants
    assert (repo.root / "reports/cards/clip.md").is_file()
    card = (repo.root / "reports/cards/clip.md").read_text()
    assert "smallest detectable change" in card
    # A metrics file that its rows do not back is refused.
    path = repo.root / "reports/clip/metrics.json"
    path.write_text(json.dumps({**metrics, "i2t_recall@5": 0.99}))
    proc = repo.stage("evaluate", check=False)
    path.write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    assert proc.returncode == 2 and "per-example rows give" in proc.stderr, proc.stderr


@pytest.mark.slow
def test_a_rebuild_that_flips_one_image_passes_with_intervals(repo):
    md, gate = report(repo, "HEAD~2", rev="HEAD~1")
    assert md.index("## Verdict: ✅ PASS") < md.index("## toy CLIP"), "the verdict comes first"
    assert gate["status"] == "pass", gate["findings"]
    row = table_row(md, "i2t_recall@5")
    assert row[1] == "↑ higher" and row[-1] == "≈ within noise"
    assert re.fullmatch(r"-0\.011 \(-0\.03\d to \+0\.000\)", row[4]), row[4]  # one of 90 shared images
    assert "90 evaluated at" in md and "10 new" in md
    assert "On the 10 test ids new this month alone" in md
    assert "Smallest change this test set can tell from noise" in md
    assert table_row(md, "test_images")[-1] == "· count"
    data = section(md, "What changed in the data")
    assert table_row(data, "art")[1:4] == ["200", "210", "+10"]


@pytest.mark.slow
def test_a_real_regression_fails_and_the_gate_stage_exits_2(repo):
    md, gate = report(repo, "HEAD~1", rev="HEAD")
    assert "## Verdict: ❌ FAIL" in md and gate["status"] == "fail"
    fails = [f["metric"] for f in gate["findings"] if f["level"] == "fail"]
    assert fails == ["clip.i2t_mean_rank", "clip.i2t_recall@5"] or fails == ["clip.i2t_recall@5"]
    assert table_row(md, "i2t_recall@5")[-1] == "▼ worse"
    assert table_row(md, "i2t_mean_rank")[1] == "↓ lower"
    # Warnings of the month: drift; the quarantine table and reasons.
    assert re.search(r"caption length \(mean words\) moved 5 -> 8", md)
    assert table_row(section(md, "What changed in the data"), "art")[4] == "0 → 3"
    assert "image too small (3)" in md
    # Params diff and the folded full table.
    assert table_row(md, "toy.lr")[1:] == ["0.001", "0.002"]
    assert "<details>" in md and "| clip | baseline | i2t_recall@5 |" in md
    # Plots: base against new, and the evaluate stage's, all real PNGs.
    plots = re.findall(r"!\[[^\]]*\]\(((?:pr|plots)/[^)]+\.png)\)", md)
    assert "pr/clip_base_vs_new.png" in plots and "plots/clip_training.png" in plots
    for rel in plots:
        assert (repo.root / "reports" / rel).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    proc = repo.sh(sys.executable, "-m", "stages.gate", check=False)
    assert proc.returncode == 2, proc.stdout + proc.stderr


@pytest.mark.slow
def test_an_identical_rerun_passes(repo):
    repo.dvc("repro")  # nothing changed: no stage runs, same numbers
    md, gate = report(repo, "HEAD", rev="HEAD")
    assert gate["status"] == "pass", gate["findings"]
    assert table_row(md, "i2t_recall@5")[-1] == "= same"
    assert "No parameter changed." in md and "No drift warnings." in md
    assert repo.sh(sys.executable, "-m", "stages.gate").returncode == 0


def test_param_cells_are_markdown_safe():
    # A gate pattern as a param name or a list value must neither italicise nor split the table row.
    assert _cell("evaluate.gate.max_drop.*recall@*") == "evaluate.gate.max_drop.\\*recall@\\*"
    assert _cell("[a|b]") == "[a\\|b]"
