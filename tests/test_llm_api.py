"""The Mistral API backend against a local server: upload, the job lifecycle, failures, a timeout, inference."""

from __future__ import annotations

import json

import pytest

from reprolab.errors import ConfigError, DatasetError
from reprolab.llm.mistral_api import (
    MistralApiConfig,
    MistralFineTuner,
    MistralJobError,
    MistralSettings,
    complete_json,
    require_api_key,
    validate_finetune_jsonl,
    write_finetune_jsonl,
)
from reprolab.llm.schema import Extraction, Ontology, parse_extraction, task_json_schema
from reprolab.llm.tasks import Example
from tests.fake_mistral import API_KEY, FakeMistral

ONTOLOGY = Ontology(intents={"card": "about a card", "lost_stolen": "lost or stolen"}, slots={"date": "a date"})
EXAMPLES = [
    Example("a", "I lost my card", Extraction(intents=["card", "lost_stolen"])),
    Example("b", "card stolen on 1 May", Extraction(intents=["card"], slots={"date": {"day": 1, "month": 5,
                                                                                    "year": 2022}})),
]


class FakeClock:
    """Sleeping advances a virtual clock: polling tests take no wall time."""

    def __init__(self):
        self.now, self.sleeps = 0.0, []

    def sleep(self, s: float) -> None:
        self.sleeps.append(s)
        self.now += s

    def clock(self) -> float:
        return self.now


def tuner_for(server: FakeMistral, clock: FakeClock, **overrides) -> MistralFineTuner:
    cfg = MistralApiConfig(server_url=server.url, poll_initial_s=1, poll_max_s=8, job_timeout_s=100, **overrides)
    return MistralFineTuner(cfg, API_KEY, sleep=clock.sleep, clock=clock.clock)


@pytest.fixture
def train_file(tmp_path):
    path = tmp_path / "train.jsonl"
    assert write_finetune_jsonl(path, ONTOLOGY, EXAMPLES) == 2
    return path


def test_missing_api_key_is_a_clear_config_error():
    with pytest.raises(ConfigError, match="MISTRAL_API_KEY"):
        require_api_key(MistralSettings(mistral_api_key=None))
    assert require_api_key(MistralSettings(mistral_api_key="k")) == "k"


def test_finetune_jsonl_is_messages_with_json_target(train_file):
    record = json.loads(train_file.read_text().splitlines()[1])
    assert [m["role"] for m in record["messages"]] == ["user", "assistant"]
    assert "card stolen on 1 May" in record["messages"][0]["content"]
    assert json.loads(record["messages"][1]["content"])["slots"]["date"]["day"] == 1


@pytest.mark.parametrize("line, reason", [
    ("not json", "not JSON"),
    ('{"messages": [{"role": "user", "content": "hi"}]}', "user and an assistant"),
    ('{"messages": [{"role": "assistant", "content": "{}"}, {"role": "user", "content": "x"}]}', "last message"),
    ('{"messages": [{"role": "user", "content": " "}, {"role": "assistant", "content": "{}"}]}', "empty"),
])
def test_validator_rejects_bad_records(tmp_path, line, reason):
    path = tmp_path / "bad.jsonl"
    path.write_text(line + "\n")
    with pytest.raises(DatasetError, match=reason):
        validate_finetune_jsonl(path)


def test_whole_lifecycle_success(train_file):
    clock = FakeClock()
    with FakeMistral("success") as server:
        tuner = tuner_for(server, clock)
        outcome = tuner.run(train_file, train_file)
        tuner.close()
        assert outcome.status == "SUCCESS"
        assert outcome.fine_tuned_model.startswith("ft:open-mistral-7b:reprolab:")
        assert outcome.estimate["cost"] == 0.42 and outcome.estimate["expected_duration_seconds"] == 600
        calls = [(m, p.split("?")[0]) for m, p in server.requests]
        assert calls.count(("POST", "/v1/files")) == 2
        start = calls.index(("POST", f"/v1/fine_tuning/jobs/{outcome.job_id}/start"))
        # the estimate was read (status VALIDATED) before the job was started
        assert ("GET", f"/v1/fine_tuning/jobs/{outcome.job_id}") in calls[:start]
    assert clock.sleeps == sorted(clock.sleeps) and max(clock.sleeps) <= 8  # backoff, capped


@pytest.mark.parametrize("scenario, status", [
    ("failed", "FAILED"), ("failed_validation", "FAILED_VALIDATION"), ("cancelled", "CANCELLED"),
])
def test_failure_states_raise_with_the_status(train_file, scenario, status):
    with FakeMistral(scenario) as server:
        tuner = tuner_for(server, FakeClock())
        with pytest.raises(MistralJobError, match=status):
            tuner.run(train_file, None)
        tuner.close()


def test_failed_job_reports_the_api_message(train_file):
    with FakeMistral("failed") as server:
        with pytest.raises(MistralJobError, match="training diverged"):
            tuner_for(server, FakeClock()).run(train_file, None)


def test_a_job_that_never_ends_times_out(train_file):
    clock = FakeClock()
    with FakeMistral("stuck") as server:
        with pytest.raises(MistralJobError, match="after 100s"):
            tuner_for(server, clock).run(train_file, None)
    assert clock.now <= 100


def test_cancel_endpoint(train_file):
    with FakeMistral("stuck") as server:
        tuner = tuner_for(server, FakeClock())
        job = tuner.create_job(tuner.upload(train_file), None)
        assert tuner.cancel(job["id"])["status"] == "CANCELLED"
        assert tuner.get(job["id"])["status"] == "CANCELLED"


def test_wrong_key_is_a_clear_error(train_file):
    with FakeMistral("success") as server:
        cfg = MistralApiConfig(server_url=server.url)
        tuner = MistralFineTuner(cfg, "wrong-key")
        with pytest.raises(Exception, match="401|Unauthorized"):
            tuner.create_job("file-0", None)


@pytest.mark.parametrize("constrained", [False, True])
def test_chat_complete_with_json_response_format(constrained):
    schema = task_json_schema(ONTOLOGY)
    with FakeMistral(chat_reply='{"intents":["card"],"slots":{}}') as server:
        tuner = tuner_for(server, FakeClock())
        text, tokens = complete_json(tuner.client, "ft:model", "Message: my card", schema if constrained else None, 32)
        sent = server.chat_requests[-1]
    assert parse_extraction(text, schema).schema_valid and tokens > 0
    assert sent["temperature"] == 0 and sent["max_tokens"] == 32
    assert sent["response_format"]["type"] == ("json_schema" if constrained else "json_object")
    if constrained:
        assert sent["response_format"]["json_schema"]["schema"]["properties"]["intents"]["items"]["enum"] == [
            "card", "lost_stolen"]
