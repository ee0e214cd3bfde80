"""Sending alert messages to Slack: an incoming webhook (`WebhookSender`) or a bot token
(`BotSender`, which can also reply in a thread and update a message).

Callers may rely on this:

* `post`, `reply` and `update` never raise for anything Slack or the network does; they return a
  `SendResult`. Only the specific httpx / slack-sdk / socket errors are caught, here at the boundary.
* Every request has a timeout, redirects are never followed (a redirected webhook would carry the
  message, and the token, to another host), and one call makes at most `max_attempts` requests and
  sleeps at most `max_wait` seconds in total, so a Slack outage costs the caller seconds, not minutes.
* Retry policy within one call: 429 waits `Retry-After` seconds; 5xx, timeouts and connection errors
  wait 0.5 s, 1 s, 2 s, ... (capped at 8 s); any other 4xx, a redirect, or a Web API error that is
  not transient ends the call at once with `permanent=True`.
* What the caller (the outbox) does next: `ok` → done; `permanent` → mark failed, never retry, show
  `error`; otherwise keep it and try again after `retry_after` seconds when given (Slack asked for
  it), else after the outbox's own backoff.

Error strings carry Slack's error code (`invalid_blocks`, `channel_not_found`, `http_503`, ...) and
never the webhook URL or the token.
"""

from __future__ import annotations

import http.client
import logging
import math
import time
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import httpx
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackRequestError

logger = logging.getLogger(__name__)

# Slack answers a few bytes ("ok", or a short JSON); anything longer is not worth reading.
MAX_RESPONSE_BYTES = 16_384
BACKOFF_FIRST = 0.5
BACKOFF_CAP = 8.0
# Web API errors worth trying again; every other `ok: false` error is a problem with the request,
# the token or the channel, and repeating it cannot help.
TRANSIENT_API_ERRORS = frozenset(
    {"ratelimited", "rate_limited", "internal_error", "fatal_error", "service_unavailable", "request_timeout"}
)


@dataclass(frozen=True)
class SendResult:
    """The outcome of one send, after its retries.

    `retry_after` is the wait Slack asked for (429), in seconds; `ts` and `channel` identify the posted
    message (Web API only; use them to reply in its thread or update it); `permanent` means trying
    again cannot succeed.
    """

    ok: bool
    retry_after: float | None = None
    error: str | None = None
    ts: str | None = None
    permanent: bool = False
    channel: str | None = None


Sleep = Callable[[float], None]


class AlertSender(Protocol):
    """What both senders offer: post a new message. Only `BotSender` can reply in a thread or update."""

    def post(self, message: Mapping[str, Any]) -> SendResult: ...


def sender_for(
    *, webhook_url: str | None, bot_token: str | None, channel: str | None, timeout: float = 5.0
) -> WebhookSender | BotSender | None:
    """The sender the settings ask for: a bot token with a channel wins (it can thread and update),
    else the webhook, else None (alerts off)."""
    if bot_token and channel:
        return BotSender(bot_token, channel, timeout=timeout)
    if webhook_url:
        return WebhookSender(webhook_url, timeout=timeout)
    return None


class WebhookSender:
    """Posts messages to a Slack incoming webhook URL."""

    def __init__(
        self,
        url: str,
        timeout: float = 5.0,
        max_attempts: int = 3,
        sleep: Sleep = time.sleep,
        *,
        max_wait: float = 10.0,
    ) -> None:
        self.url = url
        self.timeout = timeout
        self.max_attempts = max_attempts
        self.sleep = sleep
        self.max_wait = max_wait

    def post(self, message: Mapping[str, Any]) -> SendResult:
        """Post `message` (`{"text": ..., "blocks": [...]}`); see the module docstring for retries."""
        return _with_retries(lambda: self._attempt(message), self.max_attempts, self.sleep, self.max_wait)

    def _attempt(self, message: Mapping[str, Any]) -> SendResult:
        try:
            with (
                httpx.Client(timeout=self.timeout, follow_redirects=False) as client,
                client.stream("POST", self.url, json=dict(message)) as response,
            ):
                body = _read_bounded(response)
                return _webhook_result(response.status_code, response.headers, body)
        except (httpx.InvalidURL, httpx.UnsupportedProtocol) as error:
            return SendResult(ok=False, error=f"bad_webhook_url: {type(error).__name__}", permanent=True)
        except httpx.TransportError as error:
            return SendResult(ok=False, error=f"{type(error).__name__}: {error}")


def _read_bounded(response: httpx.Response) -> str:
    data = bytearray()
    for chunk in response.iter_bytes():
        data += chunk
        if len(data) >= MAX_RESPONSE_BYTES:
            break
    return data[:MAX_RESPONSE_BYTES].decode("utf-8", errors="replace").strip()


def _webhook_result(status: int, headers: Mapping[str, str], body: str) -> SendResult:
    if 200 <= status < 300:
        return SendResult(ok=True)
    code = body[:200] or f"http_{status}"
    if status == 429:
        return SendResult(ok=False, retry_after=_retry_after(headers), error=code)
    if 300 <= status < 400:
        return SendResult(ok=False, error=f"redirect_refused: http_{status}", permanent=True)
    if 400 <= status < 500 and status != 408:
        return SendResult(ok=False, error=code, permanent=True)
    return SendResult(ok=False, error=f"http_{status}: {code}")


class BotSender:
    """Posts, replies in threads and updates messages with a bot token (`xoxb-...`) through
    slack-sdk's `WebClient`. `channel` should be a channel ID (`C...`): `chat.update` accepts no name."""

    def __init__(
        self,
        token: str,
        channel: str,
        base_url: str | None = None,
        *,
        timeout: float = 5.0,
        max_attempts: int = 3,
        sleep: Sleep = time.sleep,
        max_wait: float = 10.0,
    ) -> None:
        self.token = token
        self.channel = channel
        self.base_url = base_url
        self.timeout = timeout
        self.max_attempts = max_attempts
        self.sleep = sleep
        self.max_wait = max_wait

    def post(self, message: Mapping[str, Any]) -> SendResult:
        """Post a new message; the result's `ts` identifies it for `reply` and `update`."""
        return self._call("chat.postMessage", message)

    def reply(self, thread_ts: str, message: Mapping[str, Any]) -> SendResult:
        """Post `message` in the thread of the message `thread_ts`."""
        return self._call("chat.postMessage", message, thread_ts=thread_ts)

    def update(self, ts: str, message: Mapping[str, Any], *, channel: str | None = None) -> SendResult:
        """Replace the message `ts` (in `channel`, default the sender's) with `message`."""
        return self._call("chat.update", message, ts=ts, channel=channel or self.channel)

    def _call(self, method: str, message: Mapping[str, Any], **arguments: str) -> SendResult:
        body: dict[str, Any] = {"channel": self.channel, **arguments}
        body.update({key: message[key] for key in ("text", "blocks") if message.get(key) is not None})
        return _with_retries(lambda: self._attempt(method, body), self.max_attempts, self.sleep, self.max_wait)

    def _attempt(self, method: str, body: dict[str, Any]) -> SendResult:
        client = _NoRedirectWebClient(
            token=self.token,
            base_url=self.base_url or WebClient.BASE_URL,
            # slack-sdk annotates `int`, but urllib takes float seconds.
            timeout=self.timeout,  # type: ignore[arg-type]
            # Retries are ours (bounded, with an injectable sleep); slack-sdk's would add to them.
            retry_handlers=[],
        )
        try:
            response = client.api_call(method, json=body)
        except SlackApiError as error:
            return _api_error_result(error)
        except SlackRequestError as error:
            return SendResult(ok=False, error=f"bad_request: {error}", permanent=True)
        except (OSError, http.client.HTTPException) as error:
            # urllib.error.URLError, TimeoutError, ConnectionError are all OSError.
            return SendResult(ok=False, error=f"{type(error).__name__}: {error}")
        return SendResult(ok=True, ts=response.get("ts"), channel=response.get("channel"))


def _api_error_result(error: SlackApiError) -> SendResult:
    response = error.response
    status = response.status_code
    data = response.data if isinstance(response.data, dict) else {}
    code = str(data.get("error") or f"http_{status}")
    if status == 429:
        return SendResult(ok=False, retry_after=_retry_after(response.headers), error=code)
    if 300 <= status < 400:
        return SendResult(ok=False, error=f"redirect_refused: http_{status}", permanent=True)
    if status >= 500 or status == 408 or code in TRANSIENT_API_ERRORS:
        return SendResult(ok=False, error=f"http_{status}: {code}" if status >= 500 else code)
    return SendResult(ok=False, error=code, permanent=True)


class _RefuseRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        # Returning None makes urllib raise HTTPError(3xx), which slack-sdk turns into a response.
        return None


class _NoRedirectWebClient(WebClient):
    """WebClient whose requests never follow redirects: urllib's default handler would re-send the
    `Authorization` header to wherever the redirect points. This overrides slack-sdk's single
    request hook (`_perform_urllib_http_request_internal`); tests/alerts cover it against a
    redirecting server, so an SDK change that bypasses it fails there."""

    def _perform_urllib_http_request_internal(self, url: str, req: urllib.request.Request) -> dict[str, Any]:
        if not url.lower().startswith(("http://", "https://")):
            raise SlackRequestError(f"Invalid URL scheme for the Slack API: {url.split(':', 1)[0]}")
        opener = urllib.request.build_opener(_RefuseRedirects(), urllib.request.HTTPSHandler(context=self.ssl))
        with opener.open(req, timeout=self.timeout) as resp:
            charset = resp.headers.get_content_charset() or "utf-8"
            body = resp.read(MAX_RESPONSE_BYTES).decode(charset, errors="replace")
            return {"status": resp.status, "headers": resp.headers, "body": body}


def _retry_after(headers: Mapping[str, Any]) -> float | None:
    """Seconds from a `Retry-After` header (Slack sends whole seconds); None if absent or unreadable."""
    value = next((v for k, v in headers.items() if k.lower() == "retry-after"), None)
    if isinstance(value, list):
        value = value[0] if value else None
    try:
        seconds = float(value) if value is not None else math.nan
    except ValueError:
        return None
    return max(seconds, 0.0) if math.isfinite(seconds) else None


def _backoff(attempt: int) -> float:
    return min(BACKOFF_FIRST * 2 ** (attempt - 1), BACKOFF_CAP)


def _with_retries(attempt: Callable[[], SendResult], max_attempts: int, sleep: Sleep, max_wait: float) -> SendResult:
    """Run `attempt` until it succeeds, fails permanently, runs out of attempts, or the next wait
    would take the total past `max_wait` (then the result goes back with the wait still owed)."""
    waited = 0.0
    result = SendResult(ok=False, error="no attempt made")
    for number in range(1, max(max_attempts, 1) + 1):
        result = attempt()
        if result.ok or result.permanent or number >= max_attempts:
            break
        wait = result.retry_after if result.retry_after is not None else _backoff(number)
        if waited + wait > max_wait:
            break
        logger.info("Slack send failed (%s); attempt %d again in %.1f s", result.error, number + 1, wait)
        sleep(wait)
        waited += wait
    if not result.ok:
        logger.warning("Slack send gave up (permanent=%s): %s", result.permanent, result.error)
    return result
