"""One minified JavaScript frame through one source map, with Sentry's `symbolic`.

Sentry SDK frames carry 1-based lines and columns into the file the browser ran; source maps are
0-based. The original function name comes from `symbolic` when it can tell it, else from the name the
source map records for the minified function's own name where it is defined (`function Pl(` maps
`Pl` to `renderPaidFeatures`), which also covers `async function` and `Pl = function` forms that
`symbolic`'s heuristic skips.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from urllib.parse import urlsplit

from symbolic.sourcemap import SourceMapView, SourceView

from detector.intake.normalize import Frame
from detector.sourcemaps.urls import is_in_app_path, join_url, original_source_path

__all__ = ["LoadedSourceMap", "original_function_name", "resolve_frame"]

CONTEXT_LINES = 5
MAX_CONTEXT_LINE = 150
# How far back from the error position the function's definition is looked for.
MAX_LOOKBACK_CHARS = 20_000
MAX_LOOKBACK_LINES = 200
_IDENTIFIER = re.compile(r"^[A-Za-z_$][\w$]*$")


@dataclass(frozen=True, slots=True)
class LoadedSourceMap:
    """A parsed source map, the minified file it maps (when uploaded) and the map's artifact URL."""

    sourcemap: SourceMapView
    minified: SourceView | None
    map_url: str


_DEFINED_AFTER_KEYWORD = re.compile(r"\bfunction\s*\*?\s*$")
_DEFINED_BY_ASSIGNMENT = re.compile(r"^\s*[:=]\s*(?:async\s*)?(?:function\b|\(|[\w$]+\s*=>)")
_IDENTIFIER_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_$")


def _is_definition(text: str, position: int, name: str) -> bool:
    """True when `name` at `position` is where a function gets that name (`function Pl(`, `Pl=()=>`)."""
    end = position + len(name)
    if position > 0 and text[position - 1] in _IDENTIFIER_CHARS:
        return False
    if end < len(text) and text[end] in _IDENTIFIER_CHARS:
        return False
    before = text[max(0, position - 24) : position]
    after = text[end : end + 48]
    if _DEFINED_AFTER_KEYWORD.search(before):
        return True
    # `a == b(...)` compares, it does not define
    return bool(_DEFINED_BY_ASSIGNMENT.match(after)) and not after.lstrip().startswith("==")


def _last_definition_before(text: str, start: int, end: int, name: str) -> int | None:
    """The position of the nearest definition of `name` in `text[start:end]`, scanning backwards."""
    position = text.rfind(name, start, end)
    while position >= 0:
        if _is_definition(text, position, name):
            return position
        position = text.rfind(name, start, position)
    return None


def minified_name_of(function: str | None) -> str | None:
    """The identifier a minified frame's function is defined under: `async n.run` -> `run`."""
    if not function:
        return None
    name = function.strip()
    for prefix in ("async ", "new ", "Object.", "Module."):
        name = name.removeprefix(prefix)
    name = name.rsplit(".", 1)[-1].split(" ", 1)[0]
    return name if _IDENTIFIER.match(name) else None


def original_function_name(
    sourcemap: SourceMapView, minified: SourceView, line: int, col: int, minified_name: str
) -> str | None:
    """The original name of the function named `minified_name` that encloses `line:col` (0-based)."""
    lines_back = 0
    chars_back = 0
    current = line
    while current >= 0 and lines_back <= MAX_LOOKBACK_LINES and chars_back <= MAX_LOOKBACK_CHARS:
        try:
            text = minified[current]
        except IndexError:
            return None
        end = col if current == line else len(text)
        window_start = max(0, end - (MAX_LOOKBACK_CHARS - chars_back))
        position = _last_definition_before(text, window_start, end, minified_name)
        if position is not None:
            token = sourcemap.lookup(current, position)
            if token is not None and token.dst_line == current and token.dst_col == position:
                return token.name
            return None
        chars_back += end - window_start
        lines_back += 1
        current -= 1
    return None


def _trim(line: str, col: int | None = None) -> str:
    """Long lines (minified code without a map for it) cut to a window around the column."""
    line = line.rstrip("\r\n")
    if len(line) <= MAX_CONTEXT_LINE:
        return line
    start = max(0, min((col or 0) - MAX_CONTEXT_LINE // 2, len(line) - MAX_CONTEXT_LINE))
    end = start + MAX_CONTEXT_LINE
    return ("{snip} " if start > 0 else "") + line[start:end] + (" {snip}" if end < len(line) else "")


def _absolute_source_url(frame_url: str | None, map_url: str, source: str) -> str:
    """Where the original source lives, as Sentry shows it: resolved against the map's real URL."""
    if urlsplit(source).scheme:
        return source
    base = map_url
    frame_parts = urlsplit(frame_url or "")
    if map_url.startswith("~/") and frame_parts.scheme and frame_parts.netloc:
        # `~` stands for the scheme and host the page was served from
        base = f"{frame_parts.scheme}://{frame_parts.netloc}{map_url[1:]}"
    return join_url(base, source)


def resolve_frame(frame: Frame, loaded: LoadedSourceMap, *, frame_url: str | None = None) -> Frame | None:
    """`frame` in original source, or None when the map has no token for its position.

    The result has `filename` as a repository-relative path (`src/features/PaidFeatures.js`),
    `abs_path` as the original source's URL, the original `function` when it can be told (else the
    frame's own), 1-based `lineno`/`colno`, `context_line` with up to five lines before and after
    when the map embeds the source, and `in_app` False for `node_modules`.
    """
    if frame.lineno is None or frame.colno is None or frame.lineno < 1 or frame.colno < 1:
        return None
    line, col = frame.lineno - 1, frame.colno - 1
    sourcemap = loaded.sourcemap
    if frame.function and loaded.minified is not None:
        token = sourcemap.lookup(line, col, frame.function, loaded.minified)
    else:
        token = sourcemap.lookup(line, col)
    if token is None or token.src is None or token.dst_line != line:
        # the map has nothing on this line: the nearest earlier token would be a wrong answer
        return None

    function = token.function_name
    minified_name = minified_name_of(frame.function)
    if not function and minified_name and loaded.minified is not None:
        function = original_function_name(sourcemap, loaded.minified, line, col, minified_name)
        if function == minified_name:
            # not minified (`async window.run` stays as the SDK wrote it)
            function = None

    path = original_source_path(token.src)
    context_line: str | None = None
    pre_context: list[str] = []
    post_context: list[str] = []
    source_view = sourcemap.get_sourceview(token.src_id) if token.src_id is not None else None
    if source_view is not None and token.src_line < len(source_view):
        context_line = _trim(source_view[token.src_line], token.src_col)
        first = max(0, token.src_line - CONTEXT_LINES)
        pre_context = [_trim(x) for x in source_view[first : token.src_line]]
        post_context = [_trim(x) for x in source_view[token.src_line + 1 : token.src_line + 1 + CONTEXT_LINES]]

    return replace(
        frame,
        filename=path,
        abs_path=_absolute_source_url(frame_url or frame.abs_path or frame.filename, loaded.map_url, token.src),
        function=function or frame.function,
        lineno=token.src_line + 1,
        colno=token.src_col + 1,
        in_app=is_in_app_path(path),
        context_line=context_line,
        pre_context=pre_context,
        post_context=post_context,
    )
