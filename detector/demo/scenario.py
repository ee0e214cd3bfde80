"""The seed incident as data: the demo app's files and commits, and the simulated browser traffic.

Pure: no database, no git, no HTTP. The runner (`detector.demo.runner`) writes these files into a real
repository and posts these envelopes through the real intake path.
"""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta

ENVIRONMENT = "production"
HOST = "https://shop.example.com"
GOOD_RELEASE = "web@1.1.0"
BAD_RELEASE = "web@1.2.0"
OLD_RELEASE = "web@1.0.3"
INCIDENT_VALUE = "entitlements.map is not a function"
INCIDENT_TITLE_PART = "map is not a function"
"""What the incident's signature title contains (grouping replaces the variable name with `<x>`)."""

ROUTES = (("/", 0.40), ("/products", 0.25), ("/billing", 0.20), ("/account", 0.15))
"""Where sessions land; the incident only happens on /billing."""

BILLING_FAILURE_RATE = 0.25
"""Share of /billing sessions on the bad release that hit the incident (about 5% of all sessions)."""

USER_AGENTS = (
    (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/131.0.0.0 Safari/537.36",
        0.55,
    ),
    (
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) "
        "Version/17.5 Safari/605.1.15",
        0.25,
    ),
    ("Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0", 0.20),
)


@dataclass(frozen=True)
class DemoCommit:
    """One commit of the demo repository: files written (path -> full text), author, message."""

    message: str
    author: str
    email: str
    files: dict[str, str]
    minutes_before_deploy: int


ENTITLEMENTS_V1 = """\
// Entitlements of the signed-in user: which paid features they may use.
export async function getEntitlements(userId) {
  const response = await fetch(`/api/users/${userId}/entitlements`);
  const body = await response.json();
  return body.items;
}
"""

ENTITLEMENTS_V2 = """\
// Entitlements of the signed-in user: which paid features they may use.
import { logEvent } from "../utils/log";

export async function getEntitlements(userId) {
  const started = performance.now();
  const response = await fetch(`/api/users/${userId}/entitlements`);
  const body = await response.json();
  logEvent("entitlements.loaded", { userId, ms: performance.now() - started });
  return { items: body.items, userId };
}
"""

PAID_FEATURES_V1 = """\
import { getEntitlements } from "../api/entitlements";
export async function renderPaidFeatures(userId) {
  const entitlements = await getEntitlements(userId);
  return entitlements.map((e) => `<li>${e.feature}</li>`).join("");
}
"""

PAID_FEATURES_V2 = """\
import { getEntitlements } from "../api/entitlements";
export async function renderPaidFeatures(userId) {
  const entitlements = await getEntitlements(userId);
  return entitlements.map((e) => `<li>${e.feature}</li>`).join("");
}

export const PAID_FEATURES_HEADING = "Your plan includes";
"""

MAIN_JS = """\
import { renderPaidFeatures } from "./features/PaidFeatures";
import { renderBillingPage } from "./pages/Billing";

export async function start(user) {
  document.querySelector("#features").innerHTML = await renderPaidFeatures(user.id);
  document.querySelector("#billing").innerHTML = renderBillingPage(user.plan);
}
"""

BILLING_JS = """\
import { formatMoney } from "../utils/format";

const PLANS = { free: { price: 0 }, pro: { price: 1200 }, team: { price: 4900 } };

export function renderBillingPage(plan) {
  return `<h2>Billing</h2><p>${formatPlan(plan)}</p>`;
}

function formatPlan(plan) {
  // plans removed from PLANS still reach this page from old bookmarks
  const current = PLANS[plan];
  return `${plan}: ${formatMoney(current.price)} / month`;
}
"""

FORMAT_JS = """\
export function formatMoney(cents) {
  return `$${(cents / 100).toFixed(2)}`;
}
"""

LOG_JS = """\
export function logEvent(name, fields) {
  if (window.__analytics) window.__analytics.push({ name, ...fields, at: Date.now() });
}
"""

STYLES_V1 = """\
body { font-family: system-ui, sans-serif; margin: 0; }
.features li { padding: 4px 0; }
"""

STYLES_V2 = """\
body { font-family: system-ui, sans-serif; margin: 0; }
.features li { padding: 6px 0; border-bottom: 1px solid #eee; }
"""

README_V1 = "# shop web\n\nThe storefront's frontend.\n"
README_V2 = README_V1 + "\n## Running locally\n\n    npm install && npm start\n"

INITIAL_FILES = {
    "package.json": json.dumps({"name": "shop-web", "version": "1.1.0", "private": True}, indent=2) + "\n",
    "README.md": README_V1,
    "src/main.js": MAIN_JS,
    "src/api/entitlements.js": ENTITLEMENTS_V1,
    "src/features/PaidFeatures.js": PAID_FEATURES_V1,
    "src/pages/Billing.js": BILLING_JS,
    "src/utils/format.js": FORMAT_JS,
    "src/styles/app.css": STYLES_V1,
}

INITIAL_COMMIT = DemoCommit("Storefront frontend 1.1.0", "Sam Okafor", "sam@shop.example.com", INITIAL_FILES, 240)

RELEASE_COMMITS = (
    DemoCommit(
        "Tighten spacing in the paid features list",
        "Lee Park",
        "lee@shop.example.com",
        {"src/styles/app.css": STYLES_V2},
        40,
    ),
    DemoCommit(
        "Add instrumentation and improve error logging",
        "Dana Whitfield",
        "dana@shop.example.com",
        {"src/api/entitlements.js": ENTITLEMENTS_V2, "src/utils/log.js": LOG_JS},
        30,
    ),
    DemoCommit(
        "Copy: name the paid features heading",
        "Lee Park",
        "lee@shop.example.com",
        {"src/features/PaidFeatures.js": PAID_FEATURES_V2},
        20,
    ),
    DemoCommit(
        "Docs: how to run the storefront locally",
        "Sam Okafor",
        "sam@shop.example.com",
        {"README.md": README_V2},
        10,
    ),
)


@dataclass(frozen=True)
class BackgroundError:
    """An error every release has at a steady rate (browser noise, flaky networks, an old bug)."""

    type: str
    value: str
    rate: float
    frames: tuple[dict[str, object], ...] = ()
    handled: bool = False


BACKGROUND_ERRORS = (
    BackgroundError("Error", "ResizeObserver loop completed with undelivered notifications.", 0.010),
    BackgroundError("TypeError", "Failed to fetch", 0.006, handled=True),
    BackgroundError(
        "TypeError",
        "Cannot read properties of undefined (reading 'price')",
        0.004,
        frames=(
            {
                "filename": "src/main.js",
                "abs_path": f"{HOST}/src/main.js",
                "function": "start",
                "lineno": 6,
                "colno": 52,
                "in_app": True,
                "context_line": '  document.querySelector("#billing").innerHTML = renderBillingPage(user.plan);',
            },
            {
                "filename": "src/pages/Billing.js",
                "abs_path": f"{HOST}/src/pages/Billing.js",
                "function": "formatPlan",
                "lineno": 12,
                "colno": 45,
                "in_app": True,
                "context_line": "  return `${plan}: ${formatMoney(current.price)} / month`;",
            },
        ),
    ),
)

INCIDENT_FRAMES = (
    {
        "filename": "src/main.js",
        "abs_path": f"{HOST}/src/main.js",
        "function": "start",
        "lineno": 5,
        "colno": 53,
        "in_app": True,
        "pre_context": ["", "export async function start(user) {"],
        "context_line": '  document.querySelector("#features").innerHTML = await renderPaidFeatures(user.id);',
        "post_context": ['  document.querySelector("#billing").innerHTML = renderBillingPage(user.plan);', "}"],
    },
    {
        "filename": "src/features/PaidFeatures.js",
        "abs_path": f"{HOST}/src/features/PaidFeatures.js",
        "function": "renderPaidFeatures",
        "lineno": 4,
        "colno": 23,
        "in_app": True,
        "pre_context": [
            "export async function renderPaidFeatures(userId) {",
            "  const entitlements = await getEntitlements(userId);",
        ],
        "context_line": '  return entitlements.map((e) => `<li>${e.feature}</li>`).join("");',
        "post_context": ["}"],
    },
)


@dataclass
class MinuteTraffic:
    """One simulated minute: the envelopes to post (one with every session, one per error event)."""

    minute: datetime
    envelopes: list[bytes] = field(default_factory=list)
    sessions: int = 0
    sessions_by_release: dict[str, int] = field(default_factory=dict)
    incident_events: int = 0
    other_events: int = 0


def _pick(rng: random.Random, weighted: tuple[tuple[str, float], ...]) -> str:
    return rng.choices([v for v, _ in weighted], weights=[w for _, w in weighted])[0]


def _envelope(header: dict[str, object], items: list[tuple[dict[str, object], dict[str, object]]]) -> bytes:
    lines = [json.dumps(header, separators=(",", ":"))]
    for item_header, payload in items:
        lines.append(json.dumps(item_header, separators=(",", ":")))
        lines.append(json.dumps(payload, separators=(",", ":")))
    return ("\n".join(lines) + "\n").encode()


def _sdk() -> dict[str, str]:
    return {"name": "sentry.javascript.browser", "version": "11.12.0"}


def error_event(
    *,
    when: datetime,
    release: str,
    error_type: str,
    value: str,
    frames: tuple[dict[str, object], ...],
    handled: bool,
    route: str,
    user_id: str,
    user_agent: str,
    session_id: str,
    event_id: str,
) -> bytes:
    """An event envelope as @sentry/browser sends it after the frames were resolved through source maps."""
    exception: dict[str, object] = {
        "type": error_type,
        "value": value,
        "mechanism": {"type": "generic" if handled else "onunhandledrejection", "handled": handled},
    }
    if frames:
        exception["stacktrace"] = {"frames": [dict(f) for f in frames]}
    event = {
        "event_id": event_id,
        "timestamp": when.timestamp(),
        "platform": "javascript",
        "level": "error",
        "release": release,
        "environment": ENVIRONMENT,
        "exception": {"values": [exception]},
        "request": {"url": f"{HOST}{route}", "headers": {"User-Agent": user_agent}},
        "user": {"id": user_id},
        "tags": {"session": session_id},
        "sdk": _sdk(),
    }
    header = {"event_id": event_id, "sent_at": when.isoformat(), "sdk": _sdk()}
    return _envelope(header, [({"type": "event"}, event)])


def bad_release_share(minutes_after_deploy: int) -> float:
    """How much of the traffic runs the new release, minute by minute, as browsers reload."""
    return (0.5, 0.8, 0.9)[minutes_after_deploy] if minutes_after_deploy < 3 else 0.95


def minute_traffic(
    rng: random.Random,
    minute: datetime,
    *,
    sessions: int,
    releases: tuple[tuple[str, float], ...],
    incident_release: str | None = None,
    users: int = 4000,
) -> MinuteTraffic:
    """The envelopes of `sessions` browser sessions starting within `minute`, on `releases` (weighted).

    Each session is one `session` item (started and ended within the minute, `errors` counted); every
    error is its own event envelope. Sessions of `incident_release` on /billing hit the incident with
    probability `BILLING_FAILURE_RATE`. Deterministic for a given `rng` state.
    """
    traffic = MinuteTraffic(minute=minute, sessions=sessions)
    session_items: list[tuple[dict[str, object], dict[str, object]]] = []
    for _ in range(sessions):
        release = _pick(rng, releases)
        route = _pick(rng, ROUTES)
        user_agent = _pick(rng, USER_AGENTS)
        user_id = f"u-{rng.randrange(users)}"
        sid = uuid.UUID(int=rng.getrandbits(128)).hex
        started = minute + timedelta(seconds=rng.uniform(0, 50))
        errors = 0
        if release == incident_release and route == "/billing" and rng.random() < BILLING_FAILURE_RATE:
            errors += 1
            traffic.incident_events += 1
            traffic.envelopes.append(
                error_event(
                    when=started + timedelta(seconds=rng.uniform(0.5, 5)),
                    release=release,
                    error_type="TypeError",
                    value=INCIDENT_VALUE,
                    frames=INCIDENT_FRAMES,
                    handled=False,
                    route=route,
                    user_id=user_id,
                    user_agent=user_agent,
                    session_id=sid,
                    event_id=uuid.UUID(int=rng.getrandbits(128)).hex,
                )
            )
        for background in BACKGROUND_ERRORS:
            if rng.random() < background.rate:
                errors += 1
                traffic.other_events += 1
                traffic.envelopes.append(
                    error_event(
                        when=started + timedelta(seconds=rng.uniform(0.5, 8)),
                        release=release,
                        error_type=background.type,
                        value=background.value,
                        frames=background.frames,
                        handled=background.handled,
                        route=route,
                        user_id=user_id,
                        user_agent=user_agent,
                        session_id=sid,
                        event_id=uuid.UUID(int=rng.getrandbits(128)).hex,
                    )
                )
        ended = started + timedelta(seconds=rng.uniform(5, 9))
        session_items.append(
            (
                {"type": "session"},
                {
                    "sid": sid,
                    "did": user_id,
                    "init": True,
                    "started": started.isoformat(),
                    "timestamp": ended.isoformat(),
                    "status": "exited",
                    "errors": errors,
                    "duration": (ended - started).total_seconds(),
                    "attrs": {"release": release, "environment": ENVIRONMENT, "user_agent": user_agent},
                },
            )
        )
        traffic.sessions_by_release[release] = traffic.sessions_by_release.get(release, 0) + 1
    header = {"sent_at": (minute + timedelta(seconds=59)).isoformat(), "sdk": _sdk()}
    traffic.envelopes.insert(0, _envelope(header, session_items))
    return traffic


def minutes(start: datetime, count: int) -> Iterator[datetime]:
    """`count` consecutive minute starts from `start` (floored to the minute)."""
    first = start.replace(second=0, microsecond=0)
    for i in range(count):
        yield first + timedelta(minutes=i)
