"""The hosted backend: Mistral's fine-tuning API for training, `chat.complete` with a JSON response format for inference.

The installed SDK (mistralai 3.7.0) still has `files.upload` and `chat.complete`, but its `fine_tuning.jobs`
namespace is gone; the job lifecycle therefore calls the documented REST endpoints directly
(POST /v1/fine_tuning/jobs?auto_start=false, GET /v1/fine_tuning/jobs/{id}, POST .../start, POST .../cancel)
with the same server URL and API key.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from reprolab.config import StrictConfig
from reprolab.errors import ConfigError, DatasetError, ModelError
from reprolab.llm import prompts
from reprolab.llm.schema import Ontology
from reprolab.llm.tasks import Example

log = logging.getLogger(__name__)

DEFAULT_SERVER = "https://api.mistral.ai"
TERMINAL = {"SUCCESS", "FAILED", "FAILED_VALIDATION", "CANCELLED"}
READY_TO_START = {"VALIDATED"}


class MistralApiConfig(StrictConfig):
    base_model: str = "open-mistral-7b"
    server_url: str | None = None        # None: the public API; tests point it at a local server
    training_steps: int = 100
    learning_rate: float = 1e-4
    suffix: str = "reprolab"
    max_train_examples: int = 0          # 0 = the whole train split
    poll_initial_s: float = 5.0
    poll_max_s: float = 60.0
    job_timeout_s: float = 6 * 3600
    request_timeout_s: float = 60.0


class MistralSettings(BaseSettings):
    """The API key comes from the environment (MISTRAL_API_KEY), never from params.yaml."""

    model_config = SettingsConfigDict(env_prefix="", extra="ignore")
    mistral_api_key: SecretStr | None = None


class MistralJobError(ModelError):
    """A fine-tuning job ended in a failure state, was cancelled, or did not finish in time."""


def require_api_key(settings: MistralSettings | None = None) -> str:
    settings = settings or MistralSettings()
    if settings.mistral_api_key is None or not settings.mistral_api_key.get_secret_value().strip():
        raise ConfigError(
            "backend mistral_api needs MISTRAL_API_KEY in the environment (https://console.mistral.ai/api-keys)"
        )
    return settings.mistral_api_key.get_secret_value()


# ---- dataset -------------------------------------------------------------------------------------------

def finetune_record(ontology: Ontology, example: Example) -> dict:
    """One line of Mistral's instruct fine-tuning JSONL: the user turn and the assistant's JSON."""
    return {
        "messages": [
            {"role": "user", "content": prompts.user_turn("finetuned", ontology, example.text)},
            {"role": "assistant", "content": example.target.to_json()},
        ]
    }


def validate_finetune_jsonl(path: Path) -> int:
    """Check the file the way the API does before paying for it; return the number of records."""
    n = 0
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            where = f"{path}:{lineno}"
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise DatasetError(f"{where}: not JSON ({e})") from e
            messages = record.get("messages") if isinstance(record, dict) else None
            if not isinstance(messages, list) or len(messages) < 2:
                raise DatasetError(f"{where}: needs a 'messages' list with a user and an assistant turn")
            for m in messages:
                if m.get("role") not in {"system", "user", "assistant"} or not isinstance(m.get("content"), str):
                    raise DatasetError(f"{where}: each message needs role system|user|assistant and text content")
                if not m["content"].strip():
                    raise DatasetError(f"{where}: empty {m['role']} message")
            if messages[-1]["role"] != "assistant":
                raise DatasetError(f"{where}: the last message must be the assistant's (the training target)")
            json.loads(messages[-1]["content"])  # the target itself must be valid JSON
            n += 1
    if n == 0:
        raise DatasetError(f"{path} holds no records")
    return n


def write_finetune_jsonl(path: Path, ontology: Ontology, examples: list[Example]) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for ex in examples:
            f.write(json.dumps(finetune_record(ontology, ex), ensure_ascii=False, sort_keys=True) + "\n")
    return validate_finetune_jsonl(path)


# ---- job lifecycle --------------------------------------------------------------------------------------

@dataclass
class JobOutcome:
    job_id: str
    status: str
    fine_tuned_model: str | None
    estimate: dict          # cost, cost_currency, expected_duration_seconds, train_tokens (from validation)


class MistralFineTuner:
    """Upload, create (auto_start=False), read the estimate, start, poll with backoff to a terminal state."""

    def __init__(self, cfg: MistralApiConfig, api_key: str, sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic):
        from mistralai.client import Mistral

        self.cfg, self.sleep, self.clock = cfg, sleep, clock
        server = cfg.server_url or DEFAULT_SERVER
        self.client = Mistral(api_key=api_key, server_url=server, timeout_ms=int(cfg.request_timeout_s * 1000))
        self.http = httpx.Client(
            base_url=server.rstrip("/"), timeout=cfg.request_timeout_s,
            headers={"Authorization": f"Bearer {api_key}", "Accept": "application/json"},
        )

    def close(self) -> None:
        self.http.close()

    def _call(self, method: str, url: str, **kwargs) -> dict:
        try:
            r = self.http.request(method, url, **kwargs)
        except httpx.HTTPError as e:
            raise ModelError(f"Mistral API {method} {url} failed: {e}") from e
        if r.status_code >= 400:
            raise ModelError(f"Mistral API {method} {url}: HTTP {r.status_code}: {r.text[:300]}")
        return r.json()

    def upload(self, path: Path) -> str:
        with open(path, "rb") as f:
            out = self.client.files.upload(file={"file_name": path.name, "content": f.read()}, purpose="fine-tune")
        log.info("file uploaded", extra={"file": path.name, "file_id": out.id})
        return out.id

    def create_job(self, train_file: str, validation_file: str | None) -> dict:
        body = {
            "model": self.cfg.base_model,
            "training_files": [{"file_id": train_file, "weight": 1}],
            "validation_files": [validation_file] if validation_file else [],
            "hyperparameters": {"training_steps": self.cfg.training_steps, "learning_rate": self.cfg.learning_rate},
            "suffix": self.cfg.suffix,
            "auto_start": False,
        }
        job = self._call("POST", "/v1/fine_tuning/jobs", json=body)
        log.info("job created", extra={"job_id": job["id"], "status": job.get("status")})
        return job

    def get(self, job_id: str) -> dict:
        return self._call("GET", f"/v1/fine_tuning/jobs/{job_id}")

    def start(self, job_id: str) -> dict:
        return self._call("POST", f"/v1/fine_tuning/jobs/{job_id}/start")

    def cancel(self, job_id: str) -> dict:
        return self._call("POST", f"/v1/fine_tuning/jobs/{job_id}/cancel")

    def wait(self, job_id: str, until: set[str]) -> dict:
        """Poll with exponential backoff until the status is in `until` or terminal; a deadline bounds it."""
        delay, deadline = self.cfg.poll_initial_s, self.clock() + self.cfg.job_timeout_s
        while True:
            job = self.get(job_id)
            status = job.get("status", "")
            if status in until or status in TERMINAL:
                return job
            if self.clock() + delay > deadline:
                raise MistralJobError(
                    f"fine-tuning job {job_id} still {status} after {self.cfg.job_timeout_s:.0f}s; it keeps "
                    f"running on Mistral's side: cancel it or raise api.job_timeout_s"
                )
            log.info("job pending", extra={"job_id": job_id, "status": status, "next_poll_s": delay})
            self.sleep(delay)
            delay = min(delay * 2, self.cfg.poll_max_s)

    def run(self, train_path: Path, validation_path: Path | None) -> JobOutcome:
        train_id = self.upload(train_path)
        val_id = self.upload(validation_path) if validation_path else None
        job = self.create_job(train_id, val_id)
        job = self.wait(job["id"], READY_TO_START)
        if job["status"] != "VALIDATED":
            raise MistralJobError(f"job {job['id']} ended {job['status']} before it started: {job_message(job)}")
        meta = job.get("metadata") or {}
        estimate = {k: meta.get(k) for k in ("cost", "cost_currency", "expected_duration_seconds", "train_tokens")}
        log.info("job estimate", extra={"job_id": job["id"], **estimate})
        self.start(job["id"])
        job = self.wait(job["id"], set())
        if job["status"] != "SUCCESS" or not job.get("fine_tuned_model"):
            raise MistralJobError(f"job {job['id']} ended {job['status']}: {job_message(job)}")
        log.info("job succeeded", extra={"job_id": job["id"], "model": job["fine_tuned_model"]})
        return JobOutcome(job["id"], job["status"], job["fine_tuned_model"], estimate)


def job_message(job: dict) -> str:
    events = job.get("events") or []
    messages = [e.get("message") or (e.get("data") or {}).get("error") for e in events]
    return "; ".join(m for m in messages if m) or "no message from the API"


# ---- inference ------------------------------------------------------------------------------------------

def complete_json(client, model: str, user: str, schema: dict | None, max_tokens: int) -> tuple[str, int]:
    """One extraction through chat.complete: JSON mode, or JSON-schema mode when `schema` is given."""
    if schema is None:
        fmt = {"type": "json_object"}
    else:
        fmt = {"type": "json_schema", "json_schema": {"name": "extraction", "schema": schema, "strict": True}}
    resp = client.chat.complete(
        model=model, messages=[{"role": "user", "content": user}], temperature=0.0,
        max_tokens=max_tokens, response_format=fmt,
    )
    text = resp.choices[0].message.content if resp.choices and resp.choices[0].message else ""
    tokens = (resp.usage.prompt_tokens or 0) if resp.usage else 0
    return (text if isinstance(text, str) else ""), tokens
