"""The served extractor end to end: a hybrid model directory fitted on a small synthetic banking set, then the
command line (`python -m reprolab.extract`) and the service (`uvicorn services.extract.main:app`) as REAL
processes, with good and bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from reprolab.llm.schema import Ontology
from reprolab.llm.tasks import nlupp_examples
from tests.conftest import free_port

REPO = Path(__file__).resolve().parents[1]
NAMES = ["anna lee", "bob stone", "carl moss", "dina park", "eva ross", "finn hale"]
AMOUNTS = [("£20", 20.0, "GBP"), ("50 dollars", 50.0, "USD"), ("300 euros", 300.0, "EUR"), ("£75", 75.0, "GBP")]


def synthetic_records() -> list[dict]:
    """Transfers with a name and an amount, balance questions, card blocks: enough to learn three intents."""
    rows = []
    for i in range(36):
        name, (amount_text, amount, cur) = NAMES[i % len(NAMES)], AMOUNTS[i % len(AMOUNTS)]
        kind = i % 3
        if kind == 0:
            text = f"please send {amount_text} to {name}"
            intents, slots = ["transfer_payment_deposit"], {
                "person_name": {"text": name, "value": name},
                "amount_of_money": {"text": amount_text, "value": {"amount": amount, "currency": cur}}}
        elif kind == 1:
            text = ["what is my balance", "how much money do I have", "show my balance please"][(i // 3) % 3]
            intents, slots = ["balance"], {}
        else:
            text = ["block my card", "my card was stolen, block it", "please freeze my card"][(i // 3) % 3]
            intents, slots = ["card", "lost_stolen"], {}
        split = ["train", "train", "validation", "test"][i % 4] if i >= 8 else "train"
        rows.append({"id": f"nlupp/banking/s{i:03d}", "domain": "banking", "text": text, "intents": intents,
                     "slots": slots, "split": split})
    return rows


def write_splits(root: Path) -> Path:
    splits = root / "splits"
    (splits / "nlupp").mkdir(parents=True)
    rows = synthetic_records()
    for split in ("train", "validation", "test"):
        with open(splits / "nlupp" / f"{split}.jsonl", "w", encoding="utf-8") as f:
            for r in rows:
                if r["split"] == split:
                    f.write(json.dumps({k: v for k, v in r.items() if k != "split"}) + "\n")
    return splits


ONTOLOGY = Ontology(
    intents={"transfer_payment_deposit": "", "balance": "", "card": "", "lost_stolen": "", "affirm": ""},
    slots={"person_name": "", "amount_of_money": "", "date": ""},
)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return build_model_dir(tmp_path_factory.mktemp("extract"))


def build_model_dir(root: Path) -> Path:
    """The hybrid fitted on the synthetic splits under `root`, saved to root/models/llm."""
    from reprolab.llm.system import ClassicalConfig, fit_classical, save_hybrid, write_manifest

    splits = write_splits(root)
    data = {s: nlupp_examples(splits, s, ["banking"]) for s in ("train", "validation", "test")}
    cfg = ClassicalConfig(intent_c=[16.0], intent_thresholds=[0.3], tagger_c=[16.0])
    fitted = fit_classical(cfg, ONTOLOGY, data, splits, ["banking"])
    out = root / "models" / "llm"
    save_hybrid(out, fitted, ONTOLOGY)
    write_manifest(out, "hybrid", ONTOLOGY, {"headline_variant": "hybrid"})
    return out


def test_hybrid_file_is_byte_identical_across_processes(tmp_path):
    """Issue 16: the same fit in two processes (other addresses, other hash seeds, same environment) gives the
    same bytes; scikit-learn's TfidfVectorizer used to carry an object id into the pickle."""
    files = []
    for seed in ("1", "2"):
        root = tmp_path / seed
        code = f"from pathlib import Path; from tests.test_extract import build_model_dir; build_model_dir(Path({str(root)!r}))"
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONHASHSEED": seed}
        subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, check=True, timeout=600)
        files.append(root / "models" / "llm")
    assert (files[0] / "hybrid.joblib").read_bytes() == (files[1] / "hybrid.joblib").read_bytes()
    assert json.loads((files[0] / "manifest.json").read_text())["version"] == \
        json.loads((files[1] / "manifest.json").read_text())["version"]


def run_cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    return subprocess.run([sys.executable, "-m", "reprolab.extract", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)


def test_cli_extracts_in_order_and_reports_version(model_dir, tmp_path):
    inp, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    inp.write_text('{"text": "please send £20 to anna lee"}\n\n{"text": "what is my balance"}\n', encoding="utf-8")
    done = run_cli("--model", str(model_dir), str(inp), str(out))
    assert done.returncode == 0, done.stderr
    info = json.loads(done.stdout.strip().splitlines()[-1])
    manifest = json.loads((model_dir / "manifest.json").read_text())
    assert info["design"] == "hybrid" and info["version"] == manifest["version"] and info["messages"] == 2
    lines = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert len(lines) == 2
    assert "transfer_payment_deposit" in lines[0]["intents"]
    assert lines[0]["slots"].get("amount_of_money") == {"amount": 20.0, "currency": "GBP"}
    assert lines[1]["intents"] == ["balance"] and lines[1]["slots"] == {}
    assert all(0.0 <= line["confidence"] <= 1.0 for line in lines)


@pytest.mark.parametrize("content, needle", [
    (b"", "empty"),
    (b'{"text": "fine"}\nnot json\n', "line 2 is not JSON"),
    (b'{"text": "caf\xe9"}\n', "not UTF-8"),
    (b'{"message": "no text"}\n', "\"text\" field"),
    (b'{"text": "' + b"a" * 2001 + b'"}\n', "limit is 2000"),
    (b'{"text": "   "}\n', "text is empty"),
])
def test_cli_refuses_bad_input_and_writes_nothing(model_dir, tmp_path, content, needle):
    inp, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    inp.write_bytes(content)
    done = run_cli("--model", str(model_dir), str(inp), str(out))
    assert done.returncode == 2
    assert needle in done.stderr and "Traceback" not in done.stderr
    assert not out.exists() and not list(tmp_path.glob(".out.jsonl*"))


def test_cli_refuses_a_directory_without_manifest(tmp_path):
    inp = tmp_path / "in.jsonl"
    inp.write_text('{"text": "hello"}\n', encoding="utf-8")
    done = run_cli("--model", str(tmp_path), str(inp), str(tmp_path / "out.jsonl"))
    assert done.returncode == 2 and "manifest.json not found" in done.stderr


@pytest.fixture(scope="module")
def service(model_dir, tmp_path_factory):
    port = free_port()
    log = open(tmp_path_factory.mktemp("svc") / "extract.log", "w")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "2",
           "EXTRACT_MODEL_DIR": str(model_dir), "EXTRACT_MAX_BATCH": "4", "READ_API_KEYS": "",
           "WRITE_API_KEYS": ""}
    proc = subprocess.Popen([sys.executable, "-m", "uvicorn", "services.extract.main:app", "--host", "127.0.0.1",
                             "--port", str(port)], cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while True:
        assert proc.poll() is None, Path(log.name).read_text()[-2000:]
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, "extract service not up"
        time.sleep(0.3)
    yield url
    proc.terminate()
    proc.wait(timeout=20)
    log.close()


def test_service_extracts_a_batch(service, model_dir):
    r = httpx.post(service + "/extract", json={"messages": ["send 50 dollars to bob stone", "block my card"]},
                   timeout=60)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["design"] == "hybrid"
    assert body["version"] == json.loads((model_dir / "manifest.json").read_text())["version"]
    first, second = body["results"]
    assert first["slots"].get("amount_of_money") == {"amount": 50.0, "currency": "USD"}
    assert "card" in second["intents"]
    ready = httpx.get(service + "/readyz", timeout=10).json()
    assert ready["design"] == "hybrid" and ready["version"] == body["version"]
    metrics = httpx.get(service + "/metrics", timeout=10).text
    assert 'reprolab_extractions_total{status="ok"} 2.0' in metrics
    assert "extractor-hybrid" in metrics


@pytest.mark.parametrize("payload, status, needle", [
    ({"messages": []}, 422, "no messages"),
    ({"messages": ["a", "b", "c", "d", "e"]}, 413, "limit is 4"),
    ({"messages": ["x" * 2001]}, 413, "limit is 2000"),
    ({"messages": [17]}, 422, "must be a string"),
    ({"texts": ["hello"]}, 422, "messages"),
])
def test_service_refuses_bad_batches(service, payload, status, needle):
    r = httpx.post(service + "/extract", json=payload, timeout=30)
    assert r.status_code == status, r.text
    assert needle in r.json()["detail"]


def test_service_refuses_a_body_that_is_not_json(service):
    r = httpx.post(service + "/extract", content=b"\xff\xfe not json", headers={"content-type": "application/json"},
                   timeout=30)
    assert r.status_code == 400  # starlette's answer to a body it cannot decode
    assert r.json()["detail"]


def test_stage_evaluation_holds_the_classical_and_hybrid_rows_with_intervals(tmp_path):
    """What the stage writes for the non-LLM rows: both on the whole test split, with 95% intervals."""
    from reprolab.evaluation.evidence import write_evaluation
    from reprolab.evaluation.extraction import metric_specs
    from reprolab.llm.pipeline import FinetuneMistralConfig, system_rows
    from reprolab.llm.system import ClassicalConfig

    splits = write_splits(tmp_path)
    data = {s: nlupp_examples(splits, s, ["banking"]) for s in ("train", "validation", "test")}
    cfg = FinetuneMistralConfig(classical=ClassicalConfig(intent_c=[16.0], intent_thresholds=[0.3], tagger_c=[16.0]))
    evidence, extra = system_rows(cfg, ONTOLOGY, data, splits, tmp_path / "model")
    assert (tmp_path / "model" / "hybrid.joblib").is_file()
    from reprolab.evaluation.extraction import evidence_summary

    from reprolab.llm.pipeline import split_seconds

    extra["paired_vs_headline"] = evidence_summary(evidence, "hybrid")["paired"]
    extra["costs"], seconds = split_seconds(extra["costs"])
    assert seconds["classical"]["cpu_seconds_per_1000"] > 0
    write_evaluation(tmp_path / "reports", metric_specs(), evidence, "hybrid", extra=extra)
    # wall-clock never goes into a DVC output: seconds live in the gitignored timing.json (issue 16)
    assert "second" not in (tmp_path / "reports" / "evaluation.json").read_text()
    evaluation = json.loads((tmp_path / "reports" / "evaluation.json").read_text())
    for variant in ("classical", "hybrid"):
        row = evaluation["variants"][variant]
        assert row["n_messages"]["value"] == len(data["test"])
        for metric in ("intent_micro_f1", "slot_f1", "exact_match", "schema_valid_rate"):
            assert row[metric]["low"] <= row[metric]["value"] <= row[metric]["high"]
    assert set(json.loads((tmp_path / "reports" / "metrics.json").read_text())) == {
        "intent_micro_f1", "slot_f1", "exact_match", "schema_valid_rate", "n_messages", "variants"}
    assert extra["costs"]["classical"] == {"messages": len(data["test"]), "tokens_per_1000": 0}
    assert set(extra["routing"]) == {"0.8", "0.9"}
    from reprolab.evaluation.presentation import render_presentation

    page = render_presentation(tmp_path / "reports", tmp_path / "presentation" / "extractor.md").read_text()
    assert "## From baseline to final system" in page and "## Three real failures" in page
    table = [line for line in page.splitlines() if line.startswith("| ")]
    assert len(table) == 3  # header + classical + hybrid
    assert "(served)" in table[2] and "Sentence embeddings" in table[1]
    assert "## Sending unsure messages to a person" in page
    assert "CPU s not measured here" in table[1]          # no timing.json beside this evaluation
    (tmp_path / "reports" / "timing.json").write_text(json.dumps({"costs": seconds}))
    page = render_presentation(tmp_path / "reports", tmp_path / "presentation" / "extractor.md").read_text()
    assert "CPU s not measured" not in page
