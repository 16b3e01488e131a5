"""Four months of the monthly script, end to end: the customer's bucket on moto_server, a real git + DVC clone,
the real pipeline on a tiny profile (tests/monthly_profile.yaml), each month's PR merged before the next.

month 1 uploads part of the samples; month 2 adds only images; month 3 adds messages and a document;
month 4 adds nothing. Also: a month whose upstream cannot be read fails at its step, and the failure
notification reaches a local HTTP receiver with the run URL.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
import sys

import pytest

from tests.notify_receiver import Receiver
from tests.pipeline_repo import REPO, PipelineRepo

SAMPLES = REPO / "samples"
EVERY_STAGE = {"fetch", "split", "train_clip", "finetune_mistral", "index", "evaluate"}
EXTRA_DOC = """Perguntas frequentes sobre pagamentos

Como recebo o meu dinheiro? O valor das vendas fica disponível no saldo da conta depois do prazo de
liberação, e o produtor pode pedir o saque para a conta bancária cadastrada a qualquer momento.
Quanto custa um saque? Cada pedido de saque tem uma taxa fixa, descontada do valor transferido.
"""


class Upstream:
    """The customer's landing prefix: objects laid out as samples/ is."""

    def __init__(self, client, bucket: str):
        self.client, self.bucket = client, bucket
        self.url = f"s3://{bucket}/upstream"

    def put(self, key: str, body: bytes) -> None:
        self.client.put_object(Bucket=self.bucket, Key=f"upstream/{key}", Body=body)

    def put_file(self, relative: str) -> None:
        self.put(relative, (SAMPLES / relative).read_bytes())

    def images(self, numbers: range, descriptions_key: str) -> None:
        descriptions = json.loads((SAMPLES / "art/descriptions.json").read_text(encoding="utf-8"))
        names = [f"{i}.jpg" for i in numbers]
        for name in names:
            self.put_file(f"art/images/{name}")
        self.put(f"art/{descriptions_key}", json.dumps({n: descriptions[n] for n in names}).encode())

    def viggo_head(self, rows: int) -> None:
        """The first rows of each ViGGO file: the stage reads them, the test profile trains on NLU++ only."""
        for name in ("train.csv", "valid.csv", "test.csv"):
            with open(SAMPLES / "viggo" / name, newline="", encoding="utf-8") as f:
                head = list(csv.reader(f))[: rows + 1]
            text = io.StringIO()
            csv.writer(text, lineterminator="\n").writerows(head)
            self.put(f"viggo/{name}", text.getvalue().encode())

    def messages(self, folds: range) -> int:
        for fold in folds:
            self.put_file(f"nlupp/banking/fold{fold}.json")
        return sum(len(json.loads((SAMPLES / f"nlupp/banking/fold{f}.json").read_text())) for f in folds)


class Clone(PipelineRepo):
    def __init__(self, root, upstream: Upstream, endpoint: str):
        super().__init__(root)
        self.upstream, self.endpoint = upstream, endpoint

    def env(self) -> dict[str, str]:
        env = super().env()
        env.update(REPROLAB_FETCH_SOURCE=self.upstream.url, REPROLAB_FETCH_ENDPOINT_URL=self.endpoint,
                   REPROLAB_CACHE=str(REPO / ".cache"))  # the de-quantised SmolLM2, kept between runs
        for name in ("SLACK_WEBHOOK_URL", "GITHUB_TOKEN", "NOTIFY_GITHUB_TOKEN", "GITHUB_REPOSITORY"):
            env.pop(name, None)
        return env

    def month(self, month: str, check: bool = True):
        proc = self.sh(sys.executable, "-m", "stages.monthly", "--month", month, "--profile", "tiny",
                       "--base-branch", "main", check=check)
        out = self.root / ".monthly"
        result = json.loads((out / "result.json").read_text()) if (out / "result.json").is_file() else None
        return proc, result

    def merge_pr(self, month: str) -> None:
        """What retrain.yml pushes (the files of .monthly/files.txt on its branch), merged by a reviewer."""
        branch = f"retrain/{month}-tiny"
        message = (self.root / ".monthly/commit_message.txt").read_text()
        self.sh("git", "switch", "-q", "-C", branch)
        self.sh("git", "add", "--pathspec-from-file=.monthly/files.txt")
        self.sh("git", "commit", "-q", "-m", message)
        self.sh("git", "switch", "-q", "main")
        self.sh("git", "merge", "-q", "--ff-only", branch)


def make_clone(root, upstream: Upstream, endpoint: str) -> Clone:
    """A clone of this repository with no origin (its own main is the base) and the tiny profile beside it."""
    repo = Clone(root, upstream, endpoint)
    PipelineRepo.clone(root)
    repo.sh("git", "remote", "remove", "origin")
    shutil.copy(REPO / "tests/monthly_profile.yaml", root / "params.tiny.yaml")
    return repo


def split_of(repo: PipelineRepo) -> dict[str, str]:
    """{record id: split} over every dataset's split files."""
    where = {}
    for path in sorted((repo.root / "splits").glob("*/*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            where[json.loads(line)["id"]] = path.stem
    assert where, "no split files"
    return where


def data_row(report: str, dataset: str) -> str:
    section = report.split("## What changed in the data", 1)[1]
    return next(line for line in section.splitlines() if line.startswith(f"| {dataset} |"))


def check_report(out, result) -> str:
    report = (out / "report.md").read_text(encoding="utf-8")
    body = (out / "body.md").read_text(encoding="utf-8")
    assert report in body and result["month"] in body
    verdict_line = next(line for line in report.splitlines() if line.startswith("## Verdict"))
    assert result["verdict"] in ("pass", "warn", "fail") and result["verdict"] in verdict_line.lower()
    assert "95% interval" in report
    for dataset, added in result["records_added"].items():
        if added:
            assert f"{added:+d}" in data_row(report, dataset), (dataset, added)
    return report


@pytest.mark.slow
@pytest.mark.timeout(1800)  # about 5 minutes on an idle 2-core machine; the limit leaves room for a busy one
def test_four_months_against_the_customers_bucket(tmp_path, s3_bucket, moto_endpoint):
    client, bucket = s3_bucket
    upstream = Upstream(client, bucket)
    repo = make_clone(tmp_path / "repo", upstream, moto_endpoint)
    repo.dvc("remote", "modify", "--local", "storage", "url", f"s3://{bucket}/dvc-store")
    repo.dvc("remote", "modify", "--local", "storage", "endpointurl", moto_endpoint)
    committed_params = (repo.root / "params.yaml").read_text()
    out = repo.root / ".monthly"
    table = []

    # Month 1: part of the samples.
    upstream.images(range(0, 48), "descriptions.json")
    messages_1 = upstream.messages(range(0, 2))
    upstream.put_file("nlupp/ontology.json")
    upstream.viggo_head(40)
    upstream.put_file("docs/como-funciona-hotmart.txt")
    _, m1 = repo.month("2026-01")
    assert m1["changed"] and m1["source"] == upstream.url and not m1["source_is_samples"]
    assert set(m1["stages_run"]) == EVERY_STAGE
    assert m1["records"]["art"] == 48 and m1["records"]["nlupp"] == messages_1 and m1["records"]["docs"] == 1
    assert m1["pushed"] == "pushed" and m1["branch"] == "retrain/2026-01-tiny"
    files = (out / "files.txt").read_text().split()
    assert "dvc.lock" in files and "data.dvc" in files and "params.yaml" not in files
    assert "[skip ci]" not in (out / "commit_message.txt").read_text().lower()
    check_report(out, m1)
    assert "changed=true" in (out / "outputs.env").read_text()
    table.append(("2026-01", m1))
    repo.merge_pr("2026-01")
    splits_1 = split_of(repo)

    # Month 2: only images.
    upstream.images(range(48, 64), "descriptions-2026-02.json")
    _, m2 = repo.month("2026-02")
    assert m2["records_added"]["art"] == 16 and m2["records_added"]["nlupp"] == 0
    assert "train_clip" in m2["stages_run"] and "finetune_mistral" not in m2["stages_run"]
    check_report(out, m2)
    table.append(("2026-02", m2))
    repo.merge_pr("2026-02")
    splits_2 = split_of(repo)
    assert all(splits_2[k] == v for k, v in splits_1.items())  # old records keep their split

    # Month 3: messages and a document.
    messages_3 = upstream.messages(range(2, 4))
    upstream.put("docs/perguntas-pagamentos.txt", EXTRA_DOC.encode())
    _, m3 = repo.month("2026-03")
    # folds 2-3 repeat one message of the earlier folds: fetch drops it as a duplicate
    assert 0 < m3["records_added"]["nlupp"] <= messages_3 and m3["records_added"]["docs"] == 1
    assert m3["records_added"]["art"] == 0
    assert "finetune_mistral" in m3["stages_run"] and "index" in m3["stages_run"]
    assert "train_clip" not in m3["stages_run"], m3["stages_run"]
    check_report(out, m3)
    table.append(("2026-03", m3))
    repo.merge_pr("2026-03")
    assert all(split_of(repo)[k] == v for k, v in splits_2.items())

    # Month 4: nothing new upstream: nothing re-runs, no PR, and the job summary says so.
    head = repo.sh("git", "rev-parse", "HEAD").stdout
    _, m4 = repo.month("2026-04")
    assert not m4["changed"] and m4["stages_run"] == [] and m4["verdict"] is None
    assert set(m4["records_added"].values()) == {0}
    assert "nothing changed" in (out / "summary.md").read_text()
    assert "changed=false" in (out / "outputs.env").read_text()
    assert not (out / "body.md").exists() and not (out / "files.txt").exists()
    assert repo.sh("git", "rev-parse", "HEAD").stdout == head
    table.append(("2026-04", m4))

    # The profile was applied in the job each month, never committed.
    assert repo.sh("git", "show", "HEAD:params.yaml").stdout == committed_params
    print("\n| month | records added | stages re-run | verdict |\n|---|---|---|---|")
    for month, r in table:
        added = ", ".join(f"{k} {v:+d}" for k, v in r["records_added"].items() if v) or "none"
        print(f"| {month} | {added} | {', '.join(r['stages_run']) or 'none'} | {r['verdict'] or 'no PR'} |")


@pytest.mark.slow
def test_a_failed_step_is_named_and_notified(tmp_path, moto_endpoint):
    """An upstream bucket that does not exist: step 'snapshot' fails, exit 2; the failure step notifies."""
    upstream = Upstream(None, "no-such-bucket")
    repo = make_clone(tmp_path / "repo", upstream, moto_endpoint)
    proc, result = repo.month("2026-05", check=False)
    assert proc.returncode == 2
    assert "error: monthly: step 'snapshot' failed" in proc.stderr
    assert result["failed_step"] == "snapshot" and not result["changed"]
    assert "FAILED at step `snapshot`" in (repo.root / ".monthly/summary.md").read_text()
    assert "failed_step=snapshot" in (repo.root / ".monthly/outputs.env").read_text()

    run_url = "https://github.com/acme/reprolab/actions/runs/42"
    with Receiver([500, 200]) as hook:
        env = dict(SLACK_WEBHOOK_URL=hook.url + "/hook", NOTIFY_RUN_URL=run_url, NOTIFY_BACKOFF_S="0.01")
        sent = repo.sh("env", *(f"{k}={v}" for k, v in env.items()),
                       sys.executable, "-m", "stages.monthly", "--notify-failure")
    assert "notified: webhook" in sent.stdout
    assert len(hook.requests) == 2  # one retry after the 500, then delivered
    text = hook.requests[-1].body["text"]
    assert "monthly retrain 2026-05 failed at step 'snapshot'" in text
    assert "no-such-bucket" in text and f"Run: {run_url}" in text
