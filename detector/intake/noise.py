"""Recognise the evergreen frontend noise that every web app reports and no deploy causes.

These errors are real events, but they come from the browser, the network, extensions, other sites'
scripts or crawlers, not from the app's code: the detector counts them apart so a noisy week does not look
like a regression. Classes, checked in this order (the first match wins):

* ``resize_observer`` -- "ResizeObserver loop limit exceeded" / "... completed with undelivered
  notifications";
* ``script_error`` -- "Script error.": a cross-origin script failed and the browser hid the details;
* ``chunk_load`` -- a lazily loaded bundle chunk failed to download (often users on the previous deploy);
* ``network`` -- the browser's own fetch/XHR failures ("Failed to fetch", "NetworkError when attempting to
  fetch resource.", "Load failed"), client timeouts ("timeout of 5000ms exceeded") and status-0 requests.
  Only the browser's exact wording counts: an app error such as "Failed to fetch /api/plan 503" says the
  app's own backend failed, which a deploy can cause, so it is not noise;
* ``extension`` -- any frame from a browser extension (``chrome-extension://``, ``moz-extension://``...);
* ``third_party`` -- every URL frame comes from another site than the page (analytics, ads, widgets);
* ``bot`` -- the User-Agent is a crawler, previewer or script.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache
from urllib.parse import urlsplit

from detector.intake.normalize import NormalizedEvent

__all__ = ["NOISE_CLASSES", "noise_class"]

NOISE_CLASSES = (
    "resize_observer",
    "script_error",
    "chunk_load",
    "network",
    "extension",
    "third_party",
    "bot",
)

_MESSAGE_CLASSES: list[tuple[str, re.Pattern[str]]] = [
    (
        "resize_observer",
        re.compile(r"^ResizeObserver loop (?:limit exceeded|completed with undelivered)", re.I),
    ),
    ("script_error", re.compile(r"^Script error\.?$", re.I)),
    (
        "chunk_load",
        re.compile(
            r"^Loading (?:CSS )?chunk [\w-]+ failed|Failed to fetch dynamically imported module"
            r"|error loading dynamically imported module|Importing a module script failed"
            r"|^Unable to preload CSS",
            re.I,
        ),
    ),
    (
        "network",
        re.compile(
            r"^(?:Failed to fetch(?: \([^)]*\))?|NetworkError when attempting to fetch resource\.?"
            r"|Load failed|Network request failed|Network Error|The network connection was lost\.?"
            r"|The Internet connection appears to be offline\.?|timeout of \d+ms exceeded"
            r"|.*\b(?:XHR|XMLHttpRequest|request)\b.*\bstatus(?: code)?:? 0)$",
            re.I,
        ),
    ),
]
_EXTENSION_URL = re.compile(r"^(?:chrome|moz|safari|safari-web|ms-browser|edge)-extension://", re.I)


@lru_cache(maxsize=8192)  # a site's scripts come from a few hosts
def _site(host: str) -> str:
    """A host's registrable domain, approximately: ``cdn.example.com`` and ``www.example.com`` share one.

    Without the public-suffix list, a two-letter country TLD after a short label (``co.uk``, ``com.au``)
    is treated as a suffix; IP addresses and single-label hosts are their own site.
    """
    host = host.lower().rstrip(".")
    labels = host.split(".")
    if len(labels) <= 2 or all(label.isdigit() for label in labels) or ":" in host:
        return host
    keep = 3 if len(labels[-1]) == 2 and len(labels[-2]) <= 3 else 2
    return ".".join(labels[-keep:])


def _frame_hosts(event: NormalizedEvent) -> list[str]:
    hosts = []
    for frame in event.frames:
        path = frame.abs_path or frame.filename or ""
        if path.startswith(("http://", "https://")):
            host = _hostname(path)
            if host:
                hosts.append(host)
    return hosts


@lru_cache(maxsize=8192)  # the same bundle and page URLs repeat across events
def _hostname(url: str) -> str | None:
    return urlsplit(url).hostname


@lru_cache(maxsize=8192)  # messages repeat across the events of a signature
def _message_class_index(text: str) -> int | None:
    """The index in `_MESSAGE_CLASSES` of the first class whose pattern `text` matches."""
    stripped = text.strip()
    for index, (_name, pattern) in enumerate(_MESSAGE_CLASSES):
        if pattern.search(stripped):
            return index
    return None


@lru_cache(maxsize=8192)
def _is_extension_url(path: str) -> bool:
    return _EXTENSION_URL.match(path) is not None


def _is_third_party(event: NormalizedEvent, first_party_hosts: Iterable[str]) -> bool:
    page_host = _hostname(event.url) if event.url else None
    if not page_host or not event.frames:
        return False
    # A frame with a source path (not a URL), after symbolication or from a server SDK, is the app's own.
    if any(not (f.abs_path or f.filename or "").startswith(("http", "<", "[")) for f in event.frames):
        return False
    hosts = _frame_hosts(event)
    own_sites = {_site(page_host), *(_site(h) for h in first_party_hosts)}
    return bool(hosts) and all(_site(host) not in own_sites for host in hosts)


def noise_class(event: NormalizedEvent, *, first_party_hosts: Iterable[str] = ()) -> str | None:
    """The noise class of ``event`` (one of :data:`NOISE_CLASSES`), or None for an error of the app itself.

    ``first_party_hosts`` names hosts that serve the app's own scripts from another site than the page
    (a CDN such as ``d111.cloudfront.net``) so their frames do not count as third-party.
    """
    if event.exception_type == "ChunkLoadError":
        return "chunk_load"
    # The first class (in order) that either text matches.
    matched = [
        index
        for text in (event.exception_value, event.message)
        if text and (index := _message_class_index(text)) is not None
    ]
    if matched:
        return _MESSAGE_CLASSES[min(matched)][0]
    if any(_is_extension_url(path or "") for f in event.frames for path in (f.abs_path, f.filename)):
        return "extension"
    if _is_third_party(event, first_party_hosts):
        return "third_party"
    if event.is_bot:
        return "bot"
    return None
