"""`route_from_url` splits common URLs itself (`normalize._path_and_fragment`): it must find exactly the path
and fragment `urllib.parse.urlsplit` finds, and raise where it raises, for any text."""

from __future__ import annotations

import random
from urllib.parse import urlsplit

import pytest

from detector.intake.normalize import _path_and_fragment, route_from_url


def _urlsplit_parts(url: str) -> tuple[str, str] | str:
    try:
        parts = urlsplit(url)
    except ValueError:
        return "ValueError"
    return parts.path, parts.fragment


def _our_parts(url: str) -> tuple[str, str] | str:
    try:
        return _path_and_fragment(url)
    except ValueError:
        return "ValueError"


@pytest.mark.parametrize(
    "url",
    [
        "http://app.example.com/billing/123?a=1#/users/7",
        "https://app.example.com",
        "https://app.example.com?x=1/2#f",
        "https://app.example.com#/a?b",
        "https://user:pw@app.example.com:8443/a/b/?q#",
        "http://[::1]:8080/a",
        "http://[::1/a",
        "http://a]/b",
        "http://a/b[c]/d",
        "http://a/\tb\nc\r",
        "HTTP://A/B",
        " http://a/b",
        "http:/a/b",
        "http:a/b",
        "https://exämple.com/a",
        "https://example.com/ä#ö",
        "ftp://a/b#c",
        "/relative/path#frag",
        "http://a/b#c#d",
    ],
)
def test_splits_as_urlsplit_does(url: str) -> None:
    assert _our_parts(url) == _urlsplit_parts(url)


def test_splits_random_texts_as_urlsplit_does() -> None:
    rng = random.Random(20261128)
    prefixes = ["http://", "https://", "", "http:/", "https:", "HTTP://", " http://", "http://[::1]", "https://a.b"]
    pieces = [*"ab/?#:[]@.%-_ \t\r\n\x00\x0b1", "é", "//", "http://", "%2F"]
    for _ in range(20_000):
        url = rng.choice(prefixes) + "".join(rng.choice(pieces) for _ in range(rng.randrange(14)))
        assert _our_parts(url) == _urlsplit_parts(url), url


def test_route_of_common_and_unusual_urls() -> None:
    assert route_from_url("http://app.example.com/billing/123?a=1") == "/billing/:id"
    assert route_from_url("https://app.example.com/#/users/7") == "/#/users/:id"
    assert route_from_url("https://app.example.com/#/users/7?tab=2") == "/#/users/7?tab=2"  # as urlsplit has it
    assert route_from_url("https://app.example.com") == "/"
    assert route_from_url("http://[::1/users/7") is None  # urlsplit refuses it: no route
    assert route_from_url("https://app.example.com/a\tb/7") == "/ab/:id"  # urlsplit drops the tab
