"""Where alerts go: a generic JSON webhook and a Slack-compatible incoming webhook.

Destinations are configured by environment variables (the URLs are secrets: they are never
printed, logged or written; a destination is named by its variable in every message):

* `TRACEHOUSE_ALERT_WEBHOOK_URL`: one `POST` per alert, body the alert as a JSON object
  (:func:`alert_payload`).
* `TRACEHOUSE_SLACK_WEBHOOK_URL`: one `POST` per alert, body `{"text": ..., "blocks": [...]}`,
  which Slack, Mattermost and most chat tools' incoming webhooks accept.
* `TRACEHOUSE_ALERT_TIMEOUT_S` (default 5): the timeout of one attempt, connect and read.
* `TRACEHOUSE_ALERT_RETRIES` (default 3): attempts per alert and destination; a 5xx, a 429, a
  timeout or a connection error is retried after 0.5 s, 1 s, 2 s ...; any other 4xx is final.
"""

from __future__ import annotations

import json
import math
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

WEBHOOK_ENV = "TRACEHOUSE_ALERT_WEBHOOK_URL"
SLACK_ENV = "TRACEHOUSE_SLACK_WEBHOOK_URL"
TIMEOUT_ENV = "TRACEHOUSE_ALERT_TIMEOUT_S"
RETRIES_ENV = "TRACEHOUSE_ALERT_RETRIES"
USER_AGENT = "tracehouse-alerts/1"
SEVERITY_EMOJI = {"critical": ":red_circle:", "warning": ":large_orange_circle:",
                  "info": ":large_blue_circle:"}


@dataclass(frozen=True)
class Delivery:
    """The outcome of sending one alert to one destination."""

    destination: str
    ok: bool
    attempts: int
    status: int | None
    error: str | None
    seconds: float


class Destination(Protocol):
    """Something that takes an alert payload."""

    name: str

    def send(self, payload: Mapping[str, object]) -> Delivery:
        """Send one alert; never raise."""
        ...


def _jsonable(value: object) -> object:
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


def alert_payload(row: Mapping[str, object], event: str) -> dict[str, object]:
    """Return the JSON object sent for one alert state row; `event` is `raised` or `escalated`."""
    keys = ("alert_id", "severity", "rule", "metric", "grain", "segment_key", "change_at",
            "value_before", "value_after", "relative_change", "traffic_share",
            "suspected_causes", "message", "status", "first_raised_at", "run_id")
    payload: dict[str, object] = {"source": "tracehouse", "event": event}
    payload.update({k: _jsonable(row.get(k)) for k in keys})
    return payload


def slack_message(payload: Mapping[str, object]) -> dict[str, object]:
    """Return a Slack incoming-webhook body for an alert payload."""
    severity = str(payload.get("severity", "info"))
    head = f"{SEVERITY_EMOJI.get(severity, '')} *{severity.upper()}* {payload.get('rule')}"
    if payload.get("event") == "escalated":
        head += " (escalated)"
    causes = payload.get("suspected_causes") or []
    first = f"\n*First suspect:* `{causes[0]}`" if isinstance(causes, list) and causes else ""
    text = f"{head}\n{payload.get('message')}{first}\nalert `{payload.get('alert_id')}`"
    return {
        "text": text,
        "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": text}}],
    }


def _post(url: str, body: bytes, timeout: float) -> int:
    request = urllib.request.Request(
        url, data=body, method="POST",
        headers={"Content-Type": "application/json", "User-Agent": USER_AGENT},
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        response.read(1 << 16)
        return int(response.status)


@dataclass
class WebhookDestination:
    """POST a JSON body per alert to a URL, with retries and a timeout; never raises."""

    name: str
    url: str
    render: Callable[[Mapping[str, object]], Mapping[str, object]] = dict
    timeout: float = 5.0
    attempts: int = 3
    backoff: float = 0.5
    sleep: Callable[[float], None] = time.sleep

    def send(self, payload: Mapping[str, object]) -> Delivery:
        """Send one alert; return how it went (the URL never appears in it)."""
        body = json.dumps(self.render(payload)).encode()
        started = time.perf_counter()
        status: int | None = None
        error: str | None = None
        for attempt in range(1, self.attempts + 1):
            retry = False
            try:
                status = _post(self.url, body, self.timeout)
                if 200 <= status < 300:
                    return Delivery(self.name, True, attempt, status, None,
                                    time.perf_counter() - started)
                error = f"HTTP {status}"
            except urllib.error.HTTPError as exc:
                status, error = exc.code, f"HTTP {exc.code}"
                retry = exc.code >= 500 or exc.code == 429
            except TimeoutError:
                status, error, retry = None, f"timed out after {self.timeout:g}s", True
            except (urllib.error.URLError, OSError) as exc:
                reason = getattr(exc, "reason", exc)
                kind = type(reason).__name__ if not isinstance(reason, str) else "URLError"
                status, error, retry = None, f"connection failed ({kind})", True
            if not retry or attempt == self.attempts:
                break
            self.sleep(self.backoff * 2 ** (attempt - 1))
        return Delivery(self.name, False, attempt, status, error, time.perf_counter() - started)


def destinations_from_env(env: Mapping[str, str] | None = None) -> list[Destination]:
    """Return the destinations configured in the environment (none if no URL is set)."""
    env = os.environ if env is None else env
    timeout = float(env.get(TIMEOUT_ENV, "5") or 5)
    attempts = max(1, int(env.get(RETRIES_ENV, "3") or 3))
    out: list[Destination] = []
    if env.get(WEBHOOK_ENV):
        out.append(WebhookDestination(WEBHOOK_ENV, env[WEBHOOK_ENV], dict, timeout, attempts))
    if env.get(SLACK_ENV):
        out.append(WebhookDestination(SLACK_ENV, env[SLACK_ENV], slack_message, timeout, attempts))
    return out
