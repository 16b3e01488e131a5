"""A local HTTP server implementing the few Mistral API endpoints the backend uses (test code only).

Endpoints: POST /v1/files, POST /v1/fine_tuning/jobs, GET /v1/fine_tuning/jobs/{id},
POST /v1/fine_tuning/jobs/{id}/start, POST /v1/fine_tuning/jobs/{id}/cancel, POST /v1/chat/completions.
`scenario` picks how a job's life goes: success, failed, failed_validation, cancelled, stuck (never ends).
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

API_KEY = "test-key"


class FakeMistral:
    def __init__(self, scenario: str = "success", chat_reply: str = '{"intents":["card"],"slots":{}}'):
        self.scenario, self.chat_reply = scenario, chat_reply
        self.files: dict[str, dict] = {}
        self.jobs: dict[str, dict] = {}
        self.requests: list[tuple[str, str]] = []
        self.chat_requests: list[dict] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()

    def _advance(self, job: dict) -> None:
        """Each GET moves the job one state along its scenario's path."""
        path = job["path"]
        if job["pos"] < len(path) - 1:
            job["pos"] += 1
        job["status"] = path[job["pos"]]

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _send(self, code: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _authorised(self) -> bool:
                if self.headers.get("Authorization") != f"Bearer {API_KEY}":
                    self._send(401, {"message": "Unauthorized"})
                    return False
                return True

            def do_GET(self):
                fake.requests.append(("GET", self.path))
                if not self._authorised():
                    return
                parts = self.path.strip("/").split("/")
                if parts[:3] == ["v1", "fine_tuning", "jobs"] and len(parts) == 4 and parts[3] in fake.jobs:
                    job = fake.jobs[parts[3]]
                    if job["started"] or job["status"] in {"QUEUED", "VALIDATING"}:
                        fake._advance(job)
                    return self._send(200, public(job))
                self._send(404, {"message": "not found"})

            def do_POST(self):
                fake.requests.append(("POST", self.path))
                if not self._authorised():
                    return
                length = int(self.headers.get("Content-Length", 0))
                raw = self.rfile.read(length)
                path = self.path.split("?")[0].strip("/").split("/")
                if path == ["v1", "files"]:
                    fid = f"file-{len(fake.files)}"
                    lines = raw.count(b"\n")
                    fake.files[fid] = {"bytes": len(raw), "lines": lines}
                    return self._send(200, {
                        "id": fid, "object": "file", "bytes": len(raw), "created_at": int(time.time()),
                        "filename": "train.jsonl", "purpose": "fine-tune", "sample_type": "instruct",
                        "source": "upload", "num_lines": lines,
                    })
                if path == ["v1", "fine_tuning", "jobs"]:
                    body = json.loads(raw)
                    if body.get("auto_start") is not False:
                        return self._send(422, {"message": "test server expects auto_start=false"})
                    if any(f["file_id"] not in fake.files for f in body["training_files"]):
                        return self._send(422, {"message": "unknown training file"})
                    jid = f"job-{len(fake.jobs)}"
                    fake.jobs[jid] = new_job(jid, body, fake.scenario)
                    return self._send(200, public(fake.jobs[jid]))
                if path[:3] == ["v1", "fine_tuning", "jobs"] and len(path) == 5 and path[3] in fake.jobs:
                    job = fake.jobs[path[3]]
                    if path[4] == "start":
                        if job["status"] != "VALIDATED":
                            return self._send(409, {"message": f"job is {job['status']}"})
                        job["started"] = True
                        return self._send(200, public(job))
                    if path[4] == "cancel":
                        job["status"], job["path"] = "CANCELLED", ["CANCELLED"]
                        job["pos"] = 0
                        return self._send(200, public(job))
                if path == ["v1", "chat", "completions"]:
                    body = json.loads(raw)
                    fake.chat_requests.append(body)
                    prompt = sum(len(m["content"].split()) for m in body["messages"])
                    return self._send(200, {
                        "id": "cmpl-1", "object": "chat.completion", "model": body["model"],
                        "created": int(time.time()),
                        "usage": {"prompt_tokens": prompt, "completion_tokens": 5, "total_tokens": prompt + 5},
                        "choices": [{"index": 0, "finish_reason": "stop",
                                     "message": {"role": "assistant", "content": fake.chat_reply}}],
                    })
                self._send(404, {"message": "not found"})

        return Handler


PATHS = {
    "success": ["QUEUED", "VALIDATING", "VALIDATED", "QUEUED", "RUNNING", "RUNNING", "SUCCESS"],
    "failed": ["QUEUED", "VALIDATING", "VALIDATED", "RUNNING", "FAILED"],
    "failed_validation": ["QUEUED", "VALIDATING", "FAILED_VALIDATION"],
    "cancelled": ["QUEUED", "VALIDATING", "VALIDATED", "RUNNING", "CANCELLATION_REQUESTED", "CANCELLED"],
    "stuck": ["QUEUED", "VALIDATING", "VALIDATED", "RUNNING"],
}


def new_job(jid: str, body: dict, scenario: str) -> dict:
    return {
        "id": jid, "model": body["model"], "status": "QUEUED", "path": PATHS[scenario], "pos": 0,
        "started": False, "scenario": scenario, "suffix": body.get("suffix"),
        "hyperparameters": body["hyperparameters"],
    }


def public(job: dict) -> dict:
    out = {k: job[k] for k in ("id", "model", "status", "hyperparameters", "suffix")}
    out["auto_start"] = False
    out["fine_tuned_model"] = None
    out["events"] = []
    if job["status"] not in {"QUEUED", "VALIDATING"}:
        out["metadata"] = {"cost": 0.42, "cost_currency": "EUR", "expected_duration_seconds": 600,
                           "train_tokens": 12345}
    if job["status"] == "SUCCESS":
        out["fine_tuned_model"] = f"ft:{job['model']}:{job['suffix']}:{job['id']}"
    if job["status"] in {"FAILED", "FAILED_VALIDATION"}:
        out["events"] = [{"name": "status-updated", "data": {"error": "training diverged (fake)"}}]
    return out
