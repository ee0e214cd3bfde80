"""Which artifact names are safe to store: no `..` segment and no absolute path, in a bundle file's
path inside the zip or in the URL it is served under.

A stored name is later joined to other paths and URLs (when a frame's URL is matched, when a bundle is
read back); `../` or an absolute path there would point outside the release's own files.
"""

from __future__ import annotations

import re
from urllib.parse import unquote, urlsplit

_DRIVE = re.compile(r"^[A-Za-z]:")


def _segments(path: str) -> list[str]:
    return re.split(r"[/\\]", path)


def unsafe_path_problem(path: str) -> str | None:
    """Why a file's path inside a bundle may not be stored, or None when it may."""
    decoded = unquote(path)
    if decoded.startswith(("/", "\\")) or _DRIVE.match(decoded):
        return "is an absolute path"
    if ".." in _segments(decoded):
        return "has a '..' segment"
    if "\x00" in decoded:
        return "holds a NUL character"
    return None


def unsafe_url_problem(url: str) -> str | None:
    """Why a file's URL (`~/static/app.js`, `https://cdn.example/app.js`) may not be stored, or None."""
    decoded = unquote(url)
    if decoded.startswith("~"):
        rest = decoded[1:]
    elif "://" in decoded:
        rest = urlsplit(decoded).path
    else:
        if decoded.startswith(("/", "\\")) or _DRIVE.match(decoded):
            return "is an absolute path (name files by URL, such as '~/static/app.js')"
        rest = decoded
    if ".." in _segments(rest):
        return "has a '..' segment"
    if "\x00" in decoded:
        return "holds a NUL character"
    return None
