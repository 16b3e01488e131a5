"""reprolab.notify against a local HTTP receiver: retries with backoff, timeouts, the webhook and the issue."""

from __future__ import annotations

import pytest

from reprolab.notify import NotifyError, NotifySettings, notify_failure, open_issue, post_json, send_webhook
from tests.notify_receiver import Receiver

ENV = ["SLACK_WEBHOOK_URL", "GITHUB_TOKEN", "NOTIFY_GITHUB_TOKEN", "GITHUB_REPOSITORY", "GITHUB_API_URL",
       "NOTIFY_RUN_URL", "NOTIFY_ISSUE_LABELS", "NOTIFY_TIMEOUT_S", "NOTIFY_RETRIES", "NOTIFY_BACKOFF_S"]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for name in ENV:  # CI runners set GITHUB_REPOSITORY / GITHUB_API_URL: keep them out of these tests
        monkeypatch.delenv(name, raising=False)


class Sleeps(list):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def settings(**kw) -> NotifySettings:
    return NotifySettings(**{"timeout_s": 2.0, "retries": 3, "backoff_s": 0.5, **kw})


def test_webhook_delivers_exactly_one_message_after_a_500():
    sleeps = Sleeps()
    with Receiver([500, 200]) as rx:
        send_webhook(settings(slack_webhook_url=rx.url + "/hook"), "gate failed", sleep=sleeps)
    assert len(rx.requests) == 2  # the failed attempt and the delivered one, nothing after
    delivered = rx.requests[1:]
    assert [r.body for r in delivered] == [{"text": "gate failed"}]
    assert all(r.path == "/hook" for r in rx.requests)
    assert sleeps == [0.5]  # one backoff between the two attempts


def test_webhook_gives_up_after_the_configured_retries_with_exponential_backoff():
    sleeps = Sleeps()
    with Receiver([503]) as rx:
        with pytest.raises(NotifyError, match=r"failed after 3 attempts: HTTP 503"):
            send_webhook(settings(slack_webhook_url=rx.url, retries=2, backoff_s=0.25), "x", sleep=sleeps)
    assert len(rx.requests) == 3
    assert sleeps == [0.25, 0.5]


def test_a_hanging_receiver_times_out_and_is_retried():
    sleeps = Sleeps()
    with Receiver([200], delay_s=1.5) as rx:
        with pytest.raises(NotifyError, match=r"failed after 2 attempts: .*Timeout"):
            send_webhook(settings(slack_webhook_url=rx.url, retries=1, timeout_s=0.3), "x", sleep=sleeps)
    assert len(rx.requests) == 2 and sleeps == [0.5]


def test_a_refused_connection_is_retried_then_reported():
    with Receiver([200]) as rx:
        url = rx.url
    sleeps = Sleeps()  # the server is closed now: connection refused
    with pytest.raises(NotifyError, match="ConnectError"):
        post_json(url, {"text": "x"}, settings(retries=1), sleep=sleeps)
    assert sleeps == [0.5]


def test_a_client_error_is_not_retried():
    sleeps = Sleeps()
    with Receiver([404]) as rx:
        with pytest.raises(NotifyError, match=r"rejected \(HTTP 404.*check the URL and token"):
            send_webhook(settings(slack_webhook_url=rx.url), "x", sleep=sleeps)
    assert len(rx.requests) == 1 and sleeps == []


def test_429_is_retried():
    with Receiver([429, 200]) as rx:
        send_webhook(settings(slack_webhook_url=rx.url), "x", sleep=Sleeps())
    assert len(rx.requests) == 2


def test_github_issue_goes_to_the_configured_api_with_the_token(monkeypatch):
    with Receiver([502, 201]) as rx:
        monkeypatch.setenv("GITHUB_API_URL", rx.url + "/api/v3/")
        monkeypatch.setenv("GITHUB_TOKEN", "ghs_secret")
        monkeypatch.setenv("GITHUB_REPOSITORY", "acme/reprolab")
        monkeypatch.setenv("NOTIFY_ISSUE_LABELS", '["regression", "retrain"]')
        monkeypatch.setenv("NOTIFY_BACKOFF_S", "0.01")
        url = open_issue(NotifySettings(), "gate failed", "recall fell", sleep=Sleeps())
    assert url == "http://example.invalid/issues/1"
    assert len(rx.requests) == 2
    request = rx.requests[-1]
    assert request.path == "/api/v3/repos/acme/reprolab/issues"
    assert request.headers["authorization"] == "Bearer ghs_secret"
    assert request.headers["accept"] == "application/vnd.github+json"
    assert request.body == {"title": "gate failed", "body": "recall fell", "labels": ["regression", "retrain"]}


def test_notify_failure_uses_every_configured_channel_and_links_the_run():
    with Receiver([200]) as hook, Receiver([201]) as api:
        sent = notify_failure(settings(slack_webhook_url=hook.url, github_token="t", github_repository="a/b",
                                       github_api_url=api.url, run_url="https://ci/run/7"),
                              "gate failed", "recall fell", sleep=Sleeps())
    assert sent == ["webhook", "github_issue"]
    assert len(hook.requests) == 1 and len(api.requests) == 1
    assert hook.requests[0].body["text"] == "*gate failed*\nrecall fell\n\nRun: https://ci/run/7"
    assert api.requests[0].body["body"] == "recall fell\n\nRun: https://ci/run/7"


def test_a_failing_channel_does_not_stop_the_other_but_is_reported():
    with Receiver([500]) as hook, Receiver([201]) as api:
        with pytest.raises(NotifyError, match="webhook: POST"):
            notify_failure(settings(slack_webhook_url=hook.url, github_token="t", github_repository="a/b",
                                    github_api_url=api.url, retries=1), "t", "b", sleep=Sleeps())
    assert len(hook.requests) == 2
    assert len(api.requests) == 1  # the issue was still opened


def test_nothing_configured_sends_nothing_and_says_so(caplog):
    assert notify_failure(settings(), "t", "b") == []
    assert "NO NOTIFICATION SENT" in caplog.text


def test_the_webhook_secret_never_reaches_errors_or_logs(caplog):
    secret_path = "/services/T000/B000/XXXXsecretXXXX"
    with Receiver([500]) as rx:
        with pytest.raises(NotifyError) as err:
            send_webhook(settings(slack_webhook_url=rx.url + secret_path, retries=1), "x", sleep=Sleeps())
    assert rx.requests[0].path == secret_path  # delivered to the real path...
    assert "secret" not in str(err.value) and "127.0.0.1" in str(err.value)  # ...but never shown
    assert "secret" not in caplog.text and all("secret" not in str(r.__dict__) for r in caplog.records)


def test_the_cli_notifies_with_the_run_url_and_names_a_failure(monkeypatch):
    """`python -m reprolab.notify`: what retrain.yml runs when even set-up failed."""
    import subprocess
    import sys

    with Receiver([200]) as hook:
        env = {"PATH": "/usr/bin:/bin", "SLACK_WEBHOOK_URL": hook.url, "NOTIFY_RUN_URL": "https://ci/run/9"}
        ok = subprocess.run([sys.executable, "-m", "reprolab.notify", "--title", "set-up failed", "--body", "pip"],
                            env=env, capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert [r.body["text"] for r in hook.requests] == ["*set-up failed*\npip\n\nRun: https://ci/run/9"]
    with Receiver([404]) as hook:
        env["SLACK_WEBHOOK_URL"] = hook.url
        bad = subprocess.run([sys.executable, "-m", "reprolab.notify", "--title", "t", "--body", "b"],
                             env=env, capture_output=True, text=True)
    assert bad.returncode == 2 and "error: notify: webhook: POST" in bad.stderr and "Traceback" not in bad.stderr
