"""Which uploaded artifact serves a URL, and how original source paths read once resolved.

Artifacts are stored under the URL sentry-cli gave them, usually `~/path/file.js` where `~` stands for
"any scheme and host". An event frame carries the URL the browser loaded (`http://host/path/file.js?v=3`).
Matching follows Sentry's rules: the exact URL, then the `~` form, each with and without the query
string, then the `~` form with leading path segments removed (files uploaded with a shorter prefix
than they are served under, e.g. `~/app.js` for `https://cdn.example.com/static/js/app.js`).
"""

from __future__ import annotations

import base64
import binascii
import posixpath
import re
from urllib.parse import unquote, urljoin, urlsplit

__all__ = [
    "artifact_url_candidates",
    "decode_data_url",
    "is_in_app_path",
    "join_url",
    "original_source_path",
    "source_mapping_url",
]

# Frames without a usable location: Chrome's "<anonymous>", native code, eval'd code.
_NOT_A_URL = re.compile(r"^(?:<.*>|\[native code\]|native)$")
_WEBPACK_NAMESPACE = re.compile(r"^webpack://[^/]*/")
_SOURCE_MAPPING_URL = re.compile(rb"[#@]\s*sourceMappingURL=(\S+)\s*$")


def _without_query(url: str) -> str:
    return url.split("?", 1)[0].split("#", 1)[0]


def artifact_url_candidates(url: str | None) -> list[str]:
    """The artifact URLs that may serve `url`, best match first, without duplicates.

    >>> artifact_url_candidates("http://127.0.0.1:9913/static/app.js?v=2")[:4]
    ['http://127.0.0.1:9913/static/app.js?v=2', 'http://127.0.0.1:9913/static/app.js', \
'~/static/app.js?v=2', '~/static/app.js']
    >>> artifact_url_candidates("http://127.0.0.1:9913/static/app.js?v=2")[4:]
    ['~/app.js']
    >>> artifact_url_candidates("<anonymous>")
    []
    """
    if not url or _NOT_A_URL.match(url.strip()):
        return []
    url = url.strip().split("#", 1)[0]
    try:
        parts = urlsplit(url)
    except ValueError:
        return []
    path = parts.path
    if not path or path == "/":
        return []
    if not path.startswith("/"):
        path = "/" + path
    query = f"?{parts.query}" if parts.query else ""
    candidates = [url, _without_query(url), f"~{path}{query}", f"~{path}"]
    segments = [s for s in path.split("/") if s]
    candidates += ["~/" + "/".join(segments[i:]) for i in range(1, len(segments))]
    seen: set[str] = set()
    return [c for c in candidates if not (c in seen or seen.add(c))]


def join_url(base: str, reference: str) -> str:
    """`reference` resolved against `base`, also for `~/` artifact URLs.

    >>> join_url("~/static/app.js", "app.js.map")
    '~/static/app.js.map'
    >>> join_url("http://h/static/app.js", "../maps/app.js.map")
    'http://h/maps/app.js.map'
    >>> join_url("~/app.js", "https://cdn.example.com/app.js.map")
    'https://cdn.example.com/app.js.map'
    """
    reference = reference.strip()
    if urlsplit(reference).scheme or reference.startswith("~/"):
        return reference
    if base.startswith("~/"):
        joined = posixpath.normpath(posixpath.join(posixpath.dirname(base[1:]), reference))
        # normpath keeps a leading "//" and climbs above "/" as "/.."; an artifact URL never does.
        return "~/" + joined.lstrip("/").removeprefix("../").lstrip("/")
    return urljoin(base, reference)


def source_mapping_url(minified: bytes) -> str | None:
    """The `//# sourceMappingURL=` reference at the end of a minified file, if there is one."""
    for line in reversed(minified[-4096:].splitlines()[-5:]):
        match = _SOURCE_MAPPING_URL.search(line.strip().removesuffix(b"*/").strip())
        if match:
            return match.group(1).decode("utf-8", "replace")
    return None


def decode_data_url(url: str) -> bytes | None:
    """The bytes of an inline `data:application/json;base64,...` source map, None if it is not one."""
    if not url.startswith("data:") or "," not in url:
        return None
    header, payload = url[5:].split(",", 1)
    if header.endswith(";base64"):
        try:
            return base64.b64decode(payload, validate=False)
        except (binascii.Error, ValueError):
            return None
    return unquote(payload).encode()


def original_source_path(source: str) -> str:
    """A source map's source name as a repository-relative path.

    >>> original_source_path("../src/features/PaidFeatures.js")
    'src/features/PaidFeatures.js'
    >>> original_source_path("webpack://my-app/./src/App.tsx")
    'src/App.tsx'
    >>> original_source_path("webpack:///./node_modules/react/index.js")
    'node_modules/react/index.js'
    >>> original_source_path("file:///home/ci/build/src/x.js")
    'home/ci/build/src/x.js'
    """
    path = source.strip()
    if path.startswith("webpack://"):
        path = _WEBPACK_NAMESPACE.sub("", path, count=1) if not path.startswith("webpack:///") else path[11:]
    elif "://" in path:
        path = urlsplit(path).path
    path = path.split("?", 1)[0]
    while True:
        stripped = path.removeprefix("./").removeprefix("../").lstrip("/")
        if stripped == path:
            return path or source
        path = stripped


def is_in_app_path(path: str) -> bool:
    """False for third-party code (`node_modules/`) and bundler runtime (`webpack/bootstrap`)."""
    return "node_modules/" not in path and not path.startswith(("webpack/", "(webpack)"))
