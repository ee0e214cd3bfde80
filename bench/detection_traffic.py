"""Synthetic frontend traffic for `bench.detection`: the signature catalogue and Sentry envelopes.

One simulated minute of one release becomes one envelope: a `sessions` item (closed sessions counted
by outcome, as the browser SDK's release health sends them in aggregate) and one `event` item per
affected session and signature, shaped like @sentry/browser events (exception with frames, request URL
and User-Agent, the trace id the browser SDK uses as its session key).
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field, replace
from datetime import datetime

import numpy as np

ENVIRONMENT = "production"
PAGE = "https://shop.example"
BROWSERS = (  # (name, share of sessions, User-Agent)
    (
        "Chrome",
        0.65,
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/131.0.0.0 Safari/537.36",
    ),
    (
        "Safari",
        0.20,
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_6) AppleWebKit/605.1.15 (KHTML, like Gecko) "
        "Version/18.1 Safari/605.1.15",
    ),
    ("Firefox", 0.15, "Mozilla/5.0 (X11; Linux x86_64; rv:132.0) Gecko/20100101 Firefox/132.0"),
)
BOT_UA = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
ROUTES = ("/", "/products/:id", "/cart", "/checkout", "/billing", "/account")


@dataclass(frozen=True)
class Sig:
    """An error signature of the simulated app: what its events look like and how often it strikes.

    ``rate`` is the share of sessions it affects; ``browser`` restricts it to one browser's sessions
    (the rate is then per session of that browser); ``route`` fixes the page it happens on.
    """

    name: str
    type: str
    value: str
    frames: tuple[tuple[str, str, int], ...]  # (filename or URL, function, line)
    rate: float
    expected_noise: str | None = None
    route: str | None = None
    browser: str | None = None
    bot: bool = False
    message_only: bool = False
    in_app: bool = True
    tags: frozenset[str] = field(default_factory=frozenset)

    @property
    def culprit(self) -> str:
        """What the store names as the culprit of this signature: its innermost function."""
        return self.frames[-1][1] if self.frames else ""

    def with_rate(self, rate: float) -> Sig:
        return replace(self, rate=rate)


def _app_frames(i: int) -> tuple[tuple[str, str, int], ...]:
    return (("src/main.js", "run", 9), (f"src/features/module{i}.js", f"handler{i}", 10 + i))


_APP_ERRORS = (
    ("TypeError", "Cannot read properties of undefined (reading 'field{i}')"),
    ("TypeError", "items{i}.map is not a function"),
    ("ReferenceError", "helper{i} is not defined"),
    ("Error", "Request to /api/resource{i} failed with 500"),
    ("RangeError", "Invalid array length in list{i}"),
)


def background_catalogue(*, app_signatures: int = 40, app_share: float = 0.01, zipf: float = 1.1) -> list[Sig]:
    """The errors every release of the app has: a Zipf tail of app errors summing to ``app_share`` of
    sessions, plus the noise classes every frontend reports."""
    weights = 1.0 / np.arange(1, app_signatures + 1) ** zipf
    rates = app_share * weights / weights.sum()
    sigs = []
    for i, rate in enumerate(rates):
        kind, template = _APP_ERRORS[i % len(_APP_ERRORS)]
        sigs.append(
            Sig(f"app{i}", kind, template.format(i=i), _app_frames(i), float(rate), route=ROUTES[i % len(ROUTES)])
        )
    sigs += [
        Sig(
            "resize_observer",
            "Error",
            "ResizeObserver loop completed with undelivered notifications.",
            (),
            0.004,
            expected_noise="resize_observer",
            message_only=True,
        ),
        Sig("script_error", "Error", "Script error.", (), 0.003, expected_noise="script_error", message_only=True),
        Sig(
            "network",
            "TypeError",
            "Failed to fetch",
            (("src/api/client.js", "request", 40),),
            0.003,
            expected_noise="network",
        ),
        Sig(
            "chunk_load",
            "ChunkLoadError",
            "Loading chunk 734 failed.",
            (("src/router.js", "lazyRoute", 12),),
            0.0002,
            expected_noise="chunk_load",
        ),
        Sig(
            "bot",
            "ReferenceError",
            "IntersectionObserver is not defined",
            (("src/lazy/images.js", "observe", 3),),
            0.001,
            expected_noise="bot",
            bot=True,
        ),
        Sig(
            "extension",
            "TypeError",
            "Cannot read properties of null (reading 'shadowRoot')",
            (("chrome-extension://abcdefghijklmnop/content.js", "inject", 88),),
            0.001,
            expected_noise="extension",
            in_app=False,
        ),
        Sig(
            "third_party",
            "TypeError",
            "Cannot read properties of undefined (reading 'push')",
            (("https://widget.chatvendor.io/embed.js", "boot", 1),),
            0.002,
            expected_noise="third_party",
            in_app=False,
        ),
    ]
    return sigs


def chunk_load_after_deploy(minutes_since_deploy: int) -> float:
    """Share of sessions hit by ChunkLoadError right after a deploy (stale tabs fetching old chunks)."""
    if minutes_since_deploy < 0:
        return 0.0
    return 0.02 * float(np.exp(-minutes_since_deploy / 4.0))


def existing_signature(name: str, rate: float, index: int) -> Sig:
    """A known app error that a bad deploy may make 10x more frequent."""
    return Sig(
        name,
        "TypeError",
        f"Cannot read properties of null (reading 'price{index}')",
        (("src/main.js", "run", 9), ("src/cart/CartTotals.js", f"renderTotals{index}", 30 + index)),
        rate,
        route="/cart",
    )


def seed_incident(rate: float, index: int) -> Sig:
    """The seed incident: a new TypeError on /billing (``index`` keeps each bad deploy's one distinct)."""
    return Sig(
        f"seed{index}",
        "TypeError",
        f"entitlements{index}.map is not a function",
        (("src/main.js", "run", 9), ("src/features/PaidFeatures.js", f"renderPaidFeatures{index}", 4)),
        rate,
        route="/billing",
    )


def browser_crash(rate_of_all_sessions: float, index: int, browser: str = "Safari") -> Sig:
    """A crash on one browser only; ``rate_of_all_sessions`` is its share of all sessions."""
    share = next(s for name, s, _ in BROWSERS if name == browser)
    return Sig(
        f"crash{index}",
        "TypeError",
        f"undefined is not an object (evaluating 'layout{index}.width')",
        (("src/main.js", "run", 9), ("src/ui/Grid.js", f"measure{index}", 77)),
        min(rate_of_all_sessions / share, 1.0),
        browser=browser,
    )


def harmless_new(index: int, rate: float) -> Sig:
    """A new but harmless error a benign deploy brings (rare, below the floor rate)."""
    return Sig(
        f"harmless{index}",
        "Error",
        f"Optional widget {index} failed to render",
        (("src/main.js", "run", 9), (f"src/widgets/Widget{index}.js", "render", 5)),
        rate,
    )


@dataclass
class MinuteTraffic:
    """What one release sent in one minute (ground truth kept for the oracle and the report)."""

    started: int
    errored: int
    affected: dict[str, int]
    envelope: bytes


def _event(sig: Sig, *, release: str, ts: float, browser_ua: str, rng: np.random.Generator) -> bytes:
    route = sig.route or ROUTES[int(rng.integers(len(ROUTES)))]
    path = route.replace(":id", str(int(rng.integers(1, 500))))
    event: dict[str, object] = {
        "event_id": uuid.uuid4().hex,
        "timestamp": ts,
        "platform": "javascript",
        "release": release,
        "environment": ENVIRONMENT,
        "sdk": {"name": "sentry.javascript.browser", "version": "8.40.0"},
        "user": {"id": f"u{int(rng.integers(1 << 40))}"},
        "request": {"url": PAGE + path, "headers": {"User-Agent": BOT_UA if sig.bot else browser_ua}},
        "contexts": {"trace": {"trace_id": uuid.uuid4().hex, "span_id": uuid.uuid4().hex[:16]}},
    }
    if sig.message_only:
        event["message"] = sig.value
        event["exception"] = {"values": [{"type": sig.type, "value": sig.value}]}
    else:
        if sig.in_app:
            frames = [{"filename": f, "function": fn, "lineno": ln, "in_app": True} for f, fn, ln in sig.frames]
        else:  # another site's or an extension's script: URL frames only
            frames = [{"abs_path": f, "filename": f, "function": fn, "lineno": ln} for f, fn, ln in sig.frames]
        event["exception"] = {"values": [{"type": sig.type, "value": sig.value, "stacktrace": {"frames": frames}}]}
    return b'{"type":"event"}\n' + json.dumps(event).encode()


def minute_traffic(
    *, minute: datetime, release: str, expected_sessions: float, sigs: list[Sig], rng: np.random.Generator
) -> MinuteTraffic:
    """One minute of one release: Poisson sessions split by browser, each signature Binomial per browser."""
    started_by_browser = [int(rng.poisson(expected_sessions * share)) for _, share, _ in BROWSERS]
    started = sum(started_by_browser)
    base = minute.timestamp()
    items: list[bytes] = []
    affected: dict[str, int] = {}
    errored_draws = 0
    for sig in sigs:
        total = 0
        for (name, _share, ua), n in zip(BROWSERS, started_by_browser, strict=True):
            if n == 0 or (sig.browser is not None and sig.browser != name):
                continue
            k = int(rng.binomial(n, min(sig.rate, 1.0)))
            for _ in range(k):
                items.append(_event(sig, release=release, ts=base + float(rng.uniform(0, 59)), browser_ua=ua, rng=rng))
            total += k
        if total:
            affected[sig.name] = total
            errored_draws += total
    # Sessions hit by several signatures are rare at these rates; cap at the sessions started.
    errored = min(errored_draws, started)
    aggregate = {
        "aggregates": [{"started": minute.isoformat(), "exited": started - errored, "errored": errored}],
        "attrs": {"release": release, "environment": ENVIRONMENT},
    }
    items.append(b'{"type":"sessions"}\n' + json.dumps(aggregate).encode())
    envelope = b"{}\n" + b"\n".join(items)
    return MinuteTraffic(started, errored, affected, envelope)


def diurnal(minute: datetime, mean: float, amplitude: float = 0.6) -> float:
    """Expected sessions started in ``minute``: a daily sine around ``mean``, peak at 14:00 UTC."""
    hour = minute.hour + minute.minute / 60.0
    return mean * (1.0 + amplitude * float(np.cos(2 * np.pi * (hour - 14.0) / 24.0)))
