"""Tell people when the monthly run fails: a Slack-compatible webhook and a GitHub issue.

Both are plain HTTPS POSTs with a timeout, retried with exponential backoff on connection errors, timeouts,
429 and 5xx; any other 4xx is a configuration problem and is not retried. URLs and tokens come from the
environment (secrets in the workflow) through `NotifySettings`; the GitHub API URL is configurable so tests
(and GitHub Enterprise) point it elsewhere.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from urllib.parse import urlsplit

import httpx
from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from reprolab.errors import ReprolabError

log = logging.getLogger(__name__)


class NotifyError(ReprolabError):
    """A notification could not be delivered after its retries."""


class NotifySettings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    slack_webhook_url: str | None = Field(None, validation_alias="SLACK_WEBHOOK_URL")
    github_token: str | None = Field(None, validation_alias=AliasChoices("NOTIFY_GITHUB_TOKEN", "GITHUB_TOKEN"))
    github_repository: str | None = Field(None, validation_alias="GITHUB_REPOSITORY")  # owner/name
    github_api_url: str = Field("https://api.github.com", validation_alias="GITHUB_API_URL")
    run_url: str | None = Field(None, validation_alias="NOTIFY_RUN_URL")  # link to the failed run
    issue_labels: list[str] = Field(default_factory=lambda: ["regression"], validation_alias="NOTIFY_ISSUE_LABELS")
    timeout_s: float = Field(10.0, validation_alias="NOTIFY_TIMEOUT_S")
    retries: int = Field(4, validation_alias="NOTIFY_RETRIES")  # attempts after the first
    backoff_s: float = Field(1.0, validation_alias="NOTIFY_BACKOFF_S")  # doubles after each failed attempt


def _retryable(status: int) -> bool:
    return status == 429 or status >= 500


def redact(url: str) -> str:
    """A webhook URL's path is its secret: show only scheme and host in logs and errors."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}/***" if parts.netloc else "***"


def post_json(url: str, payload: dict, settings: NotifySettings, headers: dict | None = None,
              sleep: Callable[[float], None] = time.sleep, shown_as: str | None = None) -> httpx.Response:
    """POST `payload`; retry transient failures; return the first 2xx response. `shown_as`: the URL as logged."""
    delay = settings.backoff_s
    shown = shown_as or url
    last = ""
    with httpx.Client(timeout=settings.timeout_s) as client:
        for attempt in range(settings.retries + 1):
            try:
                response = client.post(url, json=payload, headers=headers or {})
            except httpx.TransportError as e:  # refused, reset, timed out
                last = f"{type(e).__name__}: {e}"
            else:
                if response.is_success:
                    return response
                last = f"HTTP {response.status_code}: {response.text[:200]}"
                if not _retryable(response.status_code):
                    raise NotifyError(f"POST {shown} rejected ({last}): check the URL and token")
            if attempt < settings.retries:
                log.warning("notification failed, retrying",
                            extra={"url": shown, "attempt": attempt + 1, "error": last, "retry_in_s": delay})
                sleep(delay)
                delay *= 2
    raise NotifyError(f"POST {shown} failed after {settings.retries + 1} attempts: {last}")


def send_webhook(settings: NotifySettings, text: str, sleep: Callable[[float], None] = time.sleep) -> None:
    """A Slack-compatible incoming webhook: {"text": ...} (Mattermost, Rocket.Chat, Teams' Slack mode...)."""
    url = settings.slack_webhook_url
    post_json(url, {"text": text}, settings, sleep=sleep, shown_as=redact(url))


def open_issue(settings: NotifySettings, title: str, body: str,
               sleep: Callable[[float], None] = time.sleep) -> str:
    """Open a GitHub issue; returns its html_url."""
    url = f"{settings.github_api_url.rstrip('/')}/repos/{settings.github_repository}/issues"
    headers = {"Authorization": f"Bearer {settings.github_token}", "Accept": "application/vnd.github+json",
               "X-GitHub-Api-Version": "2022-11-28"}
    response = post_json(url, {"title": title, "body": body, "labels": settings.issue_labels}, settings,
                         headers=headers, sleep=sleep)
    return response.json().get("html_url", "")


def notify_failure(settings: NotifySettings, title: str, body: str,
                   sleep: Callable[[float], None] = time.sleep) -> list[str]:
    """Send on every configured channel; returns those that delivered. Raises if a configured one failed."""
    if settings.run_url:
        body = f"{body}\n\nRun: {settings.run_url}"
    delivered, errors = [], []
    channels = []
    if settings.slack_webhook_url:
        channels.append(("webhook", lambda: send_webhook(settings, f"*{title}*\n{body}", sleep)))
    if settings.github_token and settings.github_repository:
        channels.append(("github_issue", lambda: open_issue(settings, title, body, sleep)))
    if not channels:
        log.error("NO NOTIFICATION SENT: set SLACK_WEBHOOK_URL and/or GITHUB_TOKEN + GITHUB_REPOSITORY",
                  extra={"title": title})
        return []
    for name, send in channels:
        try:
            send()
            delivered.append(name)
            log.info("notification delivered", extra={"channel": name})
        except NotifyError as e:
            errors.append(f"{name}: {e}")
    if errors:
        raise NotifyError("; ".join(errors))
    return delivered


def main() -> None:
    import argparse
    import sys

    parser = argparse.ArgumentParser(description="Send a failure notification on every configured channel.")
    parser.add_argument("--title", required=True)
    body = parser.add_mutually_exclusive_group(required=True)
    body.add_argument("--body")
    body.add_argument("--body-file", type=argparse.FileType("r", encoding="utf-8"))
    args = parser.parse_args()
    sent = notify_failure(NotifySettings(), args.title, args.body if args.body is not None else args.body_file.read())
    print(f"notified: {', '.join(sent) or 'nobody'}", file=sys.stderr)


if __name__ == "__main__":
    from reprolab import cli

    cli.run(main, "notify")
