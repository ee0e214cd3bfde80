"""A local stand-in for Slack, for tests: an incoming webhook and the two Web API methods we call.

Usage from any test (run from the repository root, so that `tests` is importable):

    from tests.alerts.slack_standin import SlackStandin

    with SlackStandin() as slack:
        WebhookSender(slack.webhook_url).post(message)
        BotSender(slack.token, slack.channel, base_url=slack.api_base_url).post(message)
        assert slack.accepted_payloads()  # what Slack would have shown

It answers as Slack documents:

* Incoming webhook (`POST webhook_url`): 200 `ok`; 400 `invalid_payload` (body is not a JSON object,
  or form-encoded without `payload`), 400 `no_text` (neither text, blocks nor attachments), 400
  `invalid_blocks` (Block Kit out of schema or past a limit), 404 `no_service` (unknown hook path).
* Web API (`POST {api_base_url}chat.postMessage`, `chat.update`): always HTTP 200 with JSON
  `{"ok": true, "channel": ..., "ts": ...}` or `{"ok": false, "error": ...}` for `not_authed`,
  `invalid_auth` (token from `Authorization: Bearer xoxb-...` or a `token` form field),
  `channel_not_found`, `no_text`, `invalid_blocks`, `msg_too_long` (text over 40,000 characters),
  `msg_blocks_too_long`, `message_not_found` (chat.update of an unknown ts); 404 `unknown_method`.
* Injected faults, consumed one per request, in order, by either mode: `rate_limit` (429 with
  `Retry-After`; the Web API body is `{"ok": false, "error": "ratelimited"}`), `outage` (500/503),
  `slow` (answers after a delay, for timeouts) and `redirect` (a 3xx `Location`).

Block Kit checks follow Slack's block reference: at most 50 blocks; per block type the allowed
fields, the required ones and their limits (header text plain_text ≤ 150; section text ≤ 3000,
fields ≤ 10 each ≤ 2000, text or fields required; context 1..10 elements; actions 1..25 elements,
button text ≤ 75, url ≤ 3000; block_id ≤ 255 and unique); text objects are `plain_text` or `mrkdwn`,
non-empty, `emoji` only on plain_text and `verbatim` only on mrkdwn. Block types our alerts do not
use are refused, so a new use comes with a check. Lengths are counted in UTF-16 code units, the
stricter of the two plausible counts. `msg_blocks_too_long` (all block text together over 12,000
characters) is behaviour reported by Slack users (slackapi/bolt-js#2509), not a documented limit.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

WEBHOOK_PATH = "/services/T0STANDIN/B0STANDIN/standinsecret"
API_PREFIX = "/api/"
MAX_BODY = 1_000_000
MAX_BLOCKS = 50
MAX_MESSAGE_TEXT = 40_000
MAX_BLOCKS_TEXT = 12_000


@dataclass(frozen=True)
class RecordedRequest:
    """One request as received, with what the stand-in answered."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    payload: Any
    status: int
    answer: str


@dataclass
class PostedMessage:
    """A message accepted through the Web API, as it would stand in the channel."""

    channel: str
    ts: str
    text: str | None
    blocks: list[Any] | None
    thread_ts: str | None
    updates: int = 0


@dataclass(frozen=True)
class _Fault:
    status: int | None = None
    retry_after: str | None = None
    delay: float = 0.0
    location: str | None = None


@dataclass
class _State:
    requests: list[RecordedRequest] = field(default_factory=list)
    messages: list[PostedMessage] = field(default_factory=list)
    faults: deque[_Fault] = field(default_factory=deque)


class SlackStandin:
    """A Slack stand-in on 127.0.0.1 and a free port, serving from a daemon thread."""

    def __init__(self, *, token: str = "xoxb-standin-token", channel: str = "C0STANDIN") -> None:
        self.token = token
        self.channel = channel
        self._state = _State()
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ---- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> SlackStandin:
        server = _QuietServer(("127.0.0.1", 0), _handler_for(self))
        self._server = server
        # A short poll interval keeps stop() (and so each test's teardown) quick.
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.02}, name="slack-standin", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> SlackStandin:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        assert self._server is not None, "start() the stand-in first"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def webhook_url(self) -> str:
        return self.base_url + WEBHOOK_PATH

    @property
    def api_base_url(self) -> str:
        return self.base_url + API_PREFIX

    # ---- faults ------------------------------------------------------------------------------------

    def rate_limit(self, times: int = 1, *, retry_after: int | str = 1) -> None:
        """Answer the next `times` requests with 429 and `Retry-After: retry_after`."""
        self._add_faults(times, _Fault(status=429, retry_after=str(retry_after)))

    def outage(self, times: int = 1, *, status: int = 503) -> None:
        """Answer the next `times` requests with a server error."""
        self._add_faults(times, _Fault(status=status))

    def slow(self, times: int = 1, *, seconds: float = 1.0) -> None:
        """Answer the next `times` requests normally, but only after `seconds`."""
        self._add_faults(times, _Fault(delay=seconds))

    def redirect(self, times: int = 1, *, status: int = 302, location: str | None = None) -> None:
        """Answer the next `times` requests with a redirect (to the stand-in's own `/redirected`)."""
        self._add_faults(times, _Fault(status=status, location=location))

    def end_faults(self) -> None:
        """Drop the faults not yet consumed: Slack has recovered."""
        with self._lock:
            self._state.faults.clear()

    @property
    def faults_left(self) -> int:
        """Injected faults not yet consumed (one is consumed as a request arrives, before any delay)."""
        with self._lock:
            return len(self._state.faults)

    def _add_faults(self, times: int, fault: _Fault) -> None:
        with self._lock:
            self._state.faults.extend([fault] * times)

    # ---- what was received -------------------------------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._state.requests)

    @property
    def messages(self) -> list[PostedMessage]:
        with self._lock:
            return list(self._state.messages)

    def accepted_payloads(self) -> list[Any]:
        """Payloads of the requests answered with success, in order."""
        return [r.payload for r in self.requests if r.status == 200 and r.answer == "ok"]

    def replies(self, thread_ts: str) -> list[PostedMessage]:
        return [m for m in self.messages if m.thread_ts == thread_ts]

    # ---- answering (called from the server thread) -------------------------------------------------

    def _next_fault(self) -> _Fault | None:
        with self._lock:
            return self._state.faults.popleft() if self._state.faults else None

    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self._state.requests.append(request)

    def _answer_api(self, method: str, headers: dict[str, str], payload: Any) -> dict[str, Any]:
        if method not in ("chat.postMessage", "chat.update"):
            return {"ok": False, "error": "unknown_method"}
        if not isinstance(payload, dict):
            return {"ok": False, "error": "invalid_json"}
        authorization = headers.get("authorization", "")
        token = authorization.removeprefix("Bearer ") if authorization.startswith("Bearer ") else None
        token = token or payload.get("token")
        if not token:
            return {"ok": False, "error": "not_authed"}
        if token != self.token:
            return {"ok": False, "error": "invalid_auth"}
        if payload.get("channel") != self.channel:
            return {"ok": False, "error": "channel_not_found"}
        error = validate_message(payload)
        if error is None and len(payload.get("text") or "") > MAX_MESSAGE_TEXT:
            error = "msg_too_long"
        if error is not None:
            return {"ok": False, "error": error}
        with self._lock:
            if method == "chat.update":
                return self._update(payload)
            ts = f"{1_700_000_000 + len(self._state.messages)}.{len(self._state.messages) + 1:06d}"
            message = PostedMessage(
                channel=self.channel,
                ts=ts,
                text=payload.get("text"),
                blocks=payload.get("blocks"),
                thread_ts=payload.get("thread_ts"),
            )
            self._state.messages.append(message)
        return {"ok": True, "channel": self.channel, "ts": ts, "message": {"text": message.text}}

    def _update(self, payload: dict[str, Any]) -> dict[str, Any]:
        for message in self._state.messages:
            if message.ts == payload.get("ts"):
                message.text = payload.get("text", message.text)
                message.blocks = payload.get("blocks", message.blocks)
                message.updates += 1
                return {"ok": True, "channel": self.channel, "ts": message.ts, "text": message.text}
        return {"ok": False, "error": "message_not_found"}


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that timed out has closed its socket before a `slow` answer: expected, not news.
        return


@dataclass(frozen=True)
class _Answer:
    status: int
    content_type: str
    text: str
    word: str
    headers: dict[str, str] = field(default_factory=dict)


def _handler_for(standin: SlackStandin) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(min(length, MAX_BODY))
            headers = {k.lower(): v for k, v in self.headers.items()}
            payload = _parse_body(headers.get("content-type", ""), body)
            fault = standin._next_fault()
            if fault is not None and fault.delay:
                time.sleep(fault.delay)
            if fault is not None and fault.status is not None:
                answer = self._fault_answer(fault)
            elif self.path.startswith(API_PREFIX):
                answer = self._api_answer(headers, payload)
            else:
                answer = self._webhook_answer(payload)
            # Recorded before answering, so a test that got its answer sees the record.
            standin._record(RecordedRequest("POST", self.path, headers, body, payload, answer.status, answer.word))
            self._send(answer)

        def do_GET(self) -> None:
            # A client that followed a redirect lands here; record it so tests can see it happened.
            headers = {k.lower(): v for k, v in self.headers.items()}
            standin._record(RecordedRequest("GET", self.path, headers, b"", None, 404, "not_found"))
            self._send(_Answer(404, "text/html", "not_found", "not_found"))

        def _webhook_answer(self, payload: Any) -> _Answer:
            if self.path != WEBHOOK_PATH:
                return _Answer(404, "text/html", "no_service", "no_service")
            if not isinstance(payload, dict):
                return _Answer(400, "text/html", "invalid_payload", "invalid_payload")
            error = validate_message(payload)
            return _Answer(400, "text/html", error, error) if error else _Answer(200, "text/html", "ok", "ok")

        def _api_answer(self, headers: dict[str, str], payload: Any) -> _Answer:
            answer = standin._answer_api(self.path[len(API_PREFIX) :], headers, payload)
            status = 404 if answer.get("error") == "unknown_method" else 200
            word = "ok" if answer["ok"] else answer["error"]
            return _Answer(status, "application/json", json.dumps(answer), word)

        def _fault_answer(self, fault: _Fault) -> _Answer:
            status = fault.status or 500
            extra: dict[str, str] = {}
            api = self.path.startswith(API_PREFIX)
            if status == 429:
                extra["Retry-After"] = fault.retry_after or "1"
                word = "ratelimited" if api else "rate_limited"
            elif 300 <= status < 400:
                extra["Location"] = fault.location or standin.base_url + "/redirected"
                word = "redirect"
            else:
                word = "service_unavailable" if status == 503 else "rollup_error"
            if api:
                return _Answer(status, "application/json", json.dumps({"ok": False, "error": word}), word, extra)
            return _Answer(status, "text/html", word, word, extra)

        def _send(self, answer: _Answer) -> None:
            data = answer.text.encode()
            self.send_response(answer.status)
            self.send_header("Content-Type", f"{answer.content_type}; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            for name, value in answer.headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            return

    return Handler


def _parse_body(content_type: str, body: bytes) -> Any:
    """The request's message: a JSON body, or a form whose `payload` (webhook) or fields (Web API,
    with `blocks` as a JSON string) carry it. None when it cannot be read."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if content_type.startswith("application/x-www-form-urlencoded"):
        form = {k: v[-1] for k, v in parse_qs(text, keep_blank_values=True).items()}
        if "payload" in form:
            return _loads(form["payload"])
        if isinstance(form.get("blocks"), str):
            form["blocks"] = _loads(form["blocks"])
        return form
    return _loads(text)


def _loads(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None


# ---- Block Kit validation --------------------------------------------------------------------------


class _Invalid(Exception):
    pass


def validate_message(payload: Any) -> str | None:
    """None if Slack would accept `payload` as a message, else its error code (`invalid_payload`,
    `no_text`, `invalid_blocks`, `msg_blocks_too_long`)."""
    if not isinstance(payload, dict):
        return "invalid_payload"
    text = payload.get("text")
    if text is not None and not isinstance(text, str):
        return "invalid_payload"
    blocks = payload.get("blocks")
    if not text and not blocks and not payload.get("attachments"):
        return "no_text"
    if blocks is None:
        return None
    try:
        _check_blocks(blocks)
    except _Invalid:
        return "invalid_blocks"
    if sum(_slack_len(t) for t in _texts(blocks)) > MAX_BLOCKS_TEXT:
        return "msg_blocks_too_long"
    return None


def block_kit_problem(payload: Any) -> str | None:
    """What `validate_message` objects to in `payload`, in words (for assertion messages)."""
    blocks = payload.get("blocks") if isinstance(payload, dict) else None
    if blocks is not None:
        try:
            _check_blocks(blocks)
        except _Invalid as problem:
            return str(problem)
    return validate_message(payload)


def _check_blocks(blocks: Any) -> None:
    _require(isinstance(blocks, list), "blocks must be a list")
    _require(0 < len(blocks) <= MAX_BLOCKS, f"1..{MAX_BLOCKS} blocks")
    seen_ids: set[str] = set()
    for block in blocks:
        _check_block(block, seen_ids)


def _check_block(block: Any, seen_ids: set[str]) -> None:
    _require(isinstance(block, dict), "a block must be an object")
    kind = block.get("type")
    _require(kind in _BLOCK_CHECKS, f"unsupported block type {kind!r}")
    block_id = block.get("block_id")
    if block_id is not None:
        _require(isinstance(block_id, str) and 0 < _slack_len(block_id) <= 255, "block_id ≤ 255")
        _require(block_id not in seen_ids, f"duplicate block_id {block_id!r}")
        seen_ids.add(block_id)
    _BLOCK_CHECKS[kind](block)


def _check_header(block: dict[str, Any]) -> None:
    _only(block, {"type", "text", "block_id"})
    _text_object(block.get("text"), 150, plain_only=True)


def _check_section(block: dict[str, Any]) -> None:
    _only(block, {"type", "text", "fields", "accessory", "block_id", "expand"})
    _require("text" in block or "fields" in block, "section needs text or fields")
    if "text" in block:
        _text_object(block["text"], 3000)
    if "fields" in block:
        fields = block["fields"]
        _require(isinstance(fields, list) and 0 < len(fields) <= 10, "section fields: 1..10 items")
        for item in fields:
            _text_object(item, 2000)
    if "accessory" in block:
        accessory = block["accessory"]
        _require(isinstance(accessory, dict), "accessory must be an object")
        if accessory.get("type") == "image":
            _image_element(accessory)
        else:
            _button(accessory)


def _check_divider(block: dict[str, Any]) -> None:
    _only(block, {"type", "block_id"})


def _check_context(block: dict[str, Any]) -> None:
    _only(block, {"type", "elements", "block_id"})
    elements = block.get("elements")
    _require(isinstance(elements, list) and 0 < len(elements) <= 10, "context elements: 1..10 items")
    for element in elements:
        _require(isinstance(element, dict), "context element must be an object")
        if element.get("type") == "image":
            _image_element(element)
        else:
            _text_object(element, 3000)


def _check_actions(block: dict[str, Any]) -> None:
    _only(block, {"type", "elements", "block_id"})
    elements = block.get("elements")
    _require(isinstance(elements, list) and 0 < len(elements) <= 25, "actions elements: 1..25 items")
    for element in elements:
        _button(element)


def _check_image(block: dict[str, Any]) -> None:
    _only(block, {"type", "image_url", "alt_text", "title", "block_id"})
    _string(block.get("image_url"), 3000, "image_url")
    _string(block.get("alt_text"), 2000, "alt_text")
    if "title" in block:
        _text_object(block["title"], 2000, plain_only=True)


_BLOCK_CHECKS = {
    "header": _check_header,
    "section": _check_section,
    "divider": _check_divider,
    "context": _check_context,
    "actions": _check_actions,
    "image": _check_image,
}


def _button(element: Any) -> None:
    _require(isinstance(element, dict) and element.get("type") == "button", "only button elements")
    _only(element, {"type", "text", "action_id", "url", "value", "style", "confirm", "accessibility_label"})
    _text_object(element.get("text"), 75, plain_only=True)
    for name, limit in (("action_id", 255), ("url", 3000), ("value", 2000), ("accessibility_label", 75)):
        if name in element:
            _string(element[name], limit, name)
    if "style" in element:
        _require(element["style"] in ("primary", "danger"), "button style is primary or danger")


def _image_element(element: dict[str, Any]) -> None:
    _only(element, {"type", "image_url", "alt_text"})
    _string(element.get("image_url"), 3000, "image_url")
    _string(element.get("alt_text"), 2000, "alt_text")


def _text_object(obj: Any, limit: int, *, plain_only: bool = False) -> None:
    _require(isinstance(obj, dict), "text object must be an object")
    kind = obj.get("type")
    allowed = ("plain_text",) if plain_only else ("plain_text", "mrkdwn")
    _require(kind in allowed, f"text type must be one of {allowed}, not {kind!r}")
    _only(obj, {"type", "text", "emoji"} if kind == "plain_text" else {"type", "text", "verbatim"})
    for flag in ("emoji", "verbatim"):
        if flag in obj:
            _require(isinstance(obj[flag], bool), f"{flag} must be a boolean")
    _string(obj.get("text"), limit, f"{kind} text")


def _string(value: Any, limit: int, name: str) -> None:
    _require(isinstance(value, str), f"{name} must be a string")
    _require(0 < _slack_len(value) <= limit, f"{name} length {_slack_len(value)} not in 1..{limit}")


def _only(obj: dict[str, Any], allowed: set[str]) -> None:
    extra = set(obj) - allowed
    _require(not extra, f"unexpected fields {sorted(extra)}")


def _require(condition: bool, problem: str) -> None:
    if not condition:
        raise _Invalid(problem)


def _texts(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [t for k, v in value.items() for t in ([v] if k == "text" and isinstance(v, str) else _texts(v))]
    if isinstance(value, list):
        return [t for item in value for t in _texts(item)]
    return []


def _slack_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2
