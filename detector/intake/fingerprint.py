"""Group events into signatures: the same bug gets the same hash across builds, deploys and line shifts.

A signature's hash is the SHA-1 of its grouping components:

* the exception type;
* the in-app frames, outermost first, each as ``file:function`` where *file* is the module (Python,
  Java...) or the source path with hosts, query strings and content hashes removed (``app.9f3b2c1d.js``
  -> ``app.js``; a source-mapped ``src/features/PaidFeatures.js`` is kept as that path) and *function*
  is dropped when it is minified (``Pl``, ``t``) or anonymous. Line and column numbers are never used:
  they move with every edit and every build. Native, polyfill, extension and library frames are skipped;
* the normalised message (numbers, ids, hex, UUIDs, URLs, emails and quoted values parameterised; minified
  receivers folded, so ``e.map is not a function`` and ``(intermediate value).map is not a function``
  agree) -- but only when the stack cannot tell errors apart by itself, i.e. when the innermost in-app
  frame has no usable function name (minified code before source maps, or no frames at all). With a
  named innermost frame Sentry's rule applies: type + stack, so a message with a variable part that the
  normaliser missed does not split one bug into many "new" signatures.

An SDK ``fingerprint`` replaces these components, or extends them when it contains ``{{ default }}``.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, replace
from functools import lru_cache
from urllib.parse import urlsplit

from detector.intake.normalize import Frame, NormalizedEvent, remember

__all__ = [
    "Signature",
    "file_key",
    "frame_key",
    "function_key",
    "is_app_frame",
    "is_minified_name",
    "normalize_message",
    "signature_for_event",
    "strip_content_hash",
]

GROUPING_VERSION = "v1"
"""Part of every hash: bump it when the components change so old and new groupings never mix silently."""

MAX_FRAMES = 10
"""Innermost in-app frames used: framework call chains differ per entry point, the error site does not."""

MAX_TITLE = 200
_MAX_MESSAGE = 512
_JS_PLATFORMS = {"javascript", "node"}


@dataclass(frozen=True, slots=True)
class Signature:
    """What an event is grouped by: ``hash`` (40 hex, SHA-1) identifies the group; the rest describes it.

    ``value`` is the normalised message, ``culprit`` the innermost in-app function (or file), ``title``
    ``"Type: value"`` in at most 200 characters, ``frames_key`` the frame components (outermost first).
    """

    hash: str
    type: str
    value: str
    culprit: str
    title: str
    frames_key: tuple[str, ...]


# ---------------------------------------------------------------------------------------------------------
# messages

# Protected property names survive the quoted-value parameterisation: the property is the bug's identity.
_OPEN, _CLOSE = "\x00", "\x01"


def _keep(name: str) -> str:
    return f"{_OPEN}{name}{_CLOSE}"


_RECEIVER = r"[\w$<>()\[\]]+(?:\.[\w$<>()\[\]]+)*?"
_JS_RULES: list[tuple[re.Pattern[str], str]] = [
    # Safari appends the expression again: "e.map is not a function. (In 'e.map(...)', 'e.map' is undefined)".
    (re.compile(r"\. \(In '.*', '.*' is (?:undefined|null|an instance of \w+)\)$"), "drop"),
    (re.compile(r"\(intermediate value\)"), "receiver"),
    # One form for "reading a property of nothing", whatever the browser says.
    (re.compile(r"Cannot read propert(?:y|ies) of (?:undefined|null) \(reading '([^']*)'\)"), "read"),
    (re.compile(r"Cannot read property '([^']*)' of (?:undefined|null)"), "read"),
    (re.compile(r"(?:undefined|null) is not an object \(evaluating '(?:[^']*\.)?([^'.]*)'\)"), "read"),
    (re.compile(r"can't access property \"([^\"]*)\",? \S+ is (?:undefined|null)"), "read"),
    (re.compile(r"Cannot set propert(?:y|ies) of (?:undefined|null) \(setting '([^']*)'\)"), "set"),
    (re.compile(r"Cannot set property '([^']*)' of (?:undefined|null)"), "set"),
    (
        re.compile(r"Cannot destructure property '([^']*)' of '[^']*' as it is (undefined|null)"),
        "destructure",
    ),
    (re.compile(r"Cannot destructure '[^']*' as it is (undefined|null)"), "destructure-all"),
    # "a.b.map is not a function" -> "<x>.map is not a function": only the property names the bug.
    (
        re.compile(
            rf"(?<![\w$.]){_RECEIVER}\.([\w$#]+) (is not a function|is not a constructor|is not iterable|"
            r"is undefined|is null)"
        ),
        "member",
    ),
    (
        re.compile(r"(?<![\w$.<])([\w$]+) (is not a function|is not a constructor|is not iterable|is not defined)"),
        "bare",
    ),
]


def _apply_js_rule(kind: str, match: re.Match[str]) -> str:
    if kind == "drop":
        return ""
    if kind == "receiver":
        return "<x>"
    if kind == "read":
        return f"Cannot read properties of <x> (reading {_keep(match.group(1))})"
    if kind == "set":
        return f"Cannot set properties of <x> (setting {_keep(match.group(1))})"
    if kind == "destructure":
        return f"Cannot destructure property {_keep(match.group(1))} of <x> as it is {match.group(2)}"
    if kind == "destructure-all":
        return f"Cannot destructure <x> as it is {match.group(1)}"
    if kind == "member":
        return f"<x>.{match.group(1)} {match.group(2)}"
    name = match.group(1)
    return f"{'<x>' if is_minified_name(name) else name} {match.group(2)}"


_GENERIC_RULES: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"\b[a-z][a-z0-9+.-]*://[^\s'\"<>)]+", re.IGNORECASE), "<url>"),
    (re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+"), "<email>"),
    (
        re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b", re.IGNORECASE),
        "<uuid>",
    ),
    (re.compile(r"(?<!\w)'[^'\n]*'(?!\w)|\"[^\"\n]*\"|`[^`\n]*`"), "<str>"),
    (re.compile(r"\b0x[0-9a-f]+\b", re.IGNORECASE), "<hex>"),
    (re.compile(r"\b(?=[0-9a-f]*\d)(?=[0-9a-f]*[a-f])[0-9a-f]{8,}\b", re.IGNORECASE), "<hex>"),
    (re.compile(r"(?<![\w$.<])\d+(?:\.\d+)*"), "<n>"),
    (re.compile(r"\s+"), " "),
]


@lru_cache(maxsize=8192)  # the same few messages repeat across a batch; the function is pure
def normalize_message(text: str | None) -> str:
    """The message with its variable parts replaced by placeholders, for grouping and titles.

    URLs -> ``<url>``, emails -> ``<email>``, UUIDs -> ``<uuid>``, quoted values -> ``<str>``, hex ->
    ``<hex>``, numbers -> ``<n>``. JavaScript TypeErrors are folded to one form per browser family with the
    receiver replaced by ``<x>`` and the property kept: ``t.map is not a function`` -> ``<x>.map is not a
    function``; ``Cannot read properties of null (reading 'foo')`` and Safari's ``undefined is not an object
    (evaluating 'e.foo')`` -> ``Cannot read properties of <x> (reading 'foo')``.
    """
    if not text:
        return ""
    value = text.strip()[: _MAX_MESSAGE * 2]
    for pattern, kind in _JS_RULES:
        value = pattern.sub(lambda match, kind=kind: _apply_js_rule(kind, match), value)
    for pattern, replacement in _GENERIC_RULES:
        value = pattern.sub(replacement, value)
    value = value.replace(_OPEN, "'").replace(_CLOSE, "'").strip()
    return value[:_MAX_MESSAGE]


# ---------------------------------------------------------------------------------------------------------
# frames

_MINIFIED = re.compile(r"^[A-Za-z_$][A-Za-z0-9_$]?$|^[A-Za-z_$]*\$[A-Za-z0-9_$]*$")
_ANONYMOUS = {"?", "<anonymous>", "anonymous", "<unknown>", "Anonymous function", "<computed>", "Object"}
_NOT_A_FILE = {"<anonymous>", "[native code]", "native", "<unknown>", "<eval>", "[eval]", "eval", "unknown"}
_LIBRARY_PATH = re.compile(
    r"node_modules/|site-packages/|dist-packages/|/usr/lib/python|/lib/python\d|\bpolyfills?\b|"
    r"^(?:chrome|moz|safari(?:-web)?|ms-browser)-extension://|^webkit-masked-url://|^node:|^internal/",
    re.IGNORECASE,
)
_SOURCE_SCHEMES = {"webpack", "webpack-internal", "app", "turbopack", "vite", "rollup", "file"}
_HASH_CHARS = re.compile(r"^[A-Za-z0-9_-]+$")
_HEX = re.compile(r"^[0-9a-fA-F]+$")
_HASH_SUFFIX = re.compile(r"^(?P<stem>.+?)[-_.~](?P<hash>[A-Za-z0-9_-]{5,})$")


def is_minified_name(name: str) -> bool:
    """True for names a minifier produced: one or two characters (``t``, ``Pl``) or ``$``-mangled ones."""
    return bool(_MINIFIED.match(name))


def _is_hash(part: str) -> bool:
    """True for a file-name part that is a build artefact: a numeric chunk id or a content hash."""
    if part.isdigit():
        return True
    if len(part) < 5 or not _HASH_CHARS.match(part):
        return False
    has_digit = any(c.isdigit() for c in part)
    if _HEX.match(part):
        return has_digit
    if has_digit:
        # base36/base64 hashes ("AB12CD", "Bx3e8Lq9"); 6+ so that "es5" or "v2" names survive.
        return len(part) >= 6 and any(c.isalpha() for c in part)
    # Letters only: a hash only with the mixed case of base64 in Vite's 8 characters ("BKxqeRLq").
    return len(part) == 8 and sum(c.isupper() for c in part) >= 2 and any(c.islower() for c in part)


def strip_content_hash(basename: str) -> str:
    """The name without build hashes: ``main.3f9a1c.js`` -> ``main.js``, ``chunk-AB12CD.js`` -> ``chunk.js``.

    Dot-separated parts that are hashes or numeric chunk ids are dropped, then a ``-hash``/``_hash`` suffix
    of the stem; a name that would become empty is kept as it was.
    """
    stem, dot, extension = basename.rpartition(".")
    if not dot:
        stem, extension = basename, ""
    parts = stem.split(".")
    kept = [p for p in parts if not _is_hash(p)] or parts[:1]
    stem = ".".join(kept)
    suffix = _HASH_SUFFIX.match(stem)
    if suffix and _is_hash(suffix.group("hash")):
        stem = suffix.group("stem")
    return f"{stem}.{extension}" if extension else stem


def _clean_source_path(path: str) -> str:
    path = path.split("?", 1)[0].split("#", 1)[0]
    while path.startswith(("./", "../", "~/", "/")):
        path = path.split("/", 1)[1] if "/" in path else path
    head, _, basename = path.rpartition("/")
    basename = strip_content_hash(basename)
    return f"{head}/{basename}" if head else basename


def file_key(frame: Frame) -> str | None:
    """The file part of a frame's grouping component, or None when the frame has no real file.

    The module when it is a dotted/colon name (Python, Java, Node); for http(s) URLs and absolute paths
    the basename without query, host or content hash; for source-mapped paths (``webpack:///src/x.js``,
    ``src/x.js``) the relative path.
    """
    return _file_key(frame.module, frame.filename or frame.abs_path)


@lru_cache(maxsize=8192)  # bundles have few files; every event of a batch names the same ones
def _file_key(module: str | None, path: str | None) -> str | None:
    if module and "/" not in module and not module.startswith("<"):
        return module
    if not path or path in _NOT_A_FILE or path.startswith("<"):
        return None
    scheme_match = re.match(r"^([a-z][\w+.-]*):/+", path, re.IGNORECASE)
    if scheme_match:
        scheme = scheme_match.group(1).lower()
        if scheme in _SOURCE_SCHEMES and scheme != "file":
            # webpack://my-app/./src/x.js: the host part is the bundle's namespace, not a folder.
            return _clean_source_path(urlsplit(path).path) or None
        url_path = urlsplit(path).path
        basename = url_path.rstrip("/").rpartition("/")[2]
        return strip_content_hash(basename) if basename else None
    if path.startswith("/") or re.match(r"^[A-Za-z]:\\", path):
        basename = re.split(r"[\\/]", path.rstrip("/\\"))[-1]
        return strip_content_hash(basename) if basename else None
    return _clean_source_path(path) or None


@lru_cache(maxsize=8192)
def function_key(name: str | None, *, minified_names: bool) -> str | None:
    """The function part of a component, or None for anonymous names and (if ``minified_names``) mangled ones.

    ``async window.run`` -> ``window.run``; ``Pl.render`` -> ``render``; ``Object.<anonymous>`` -> None.
    """
    if not name:
        return None
    name = re.sub(r"^(?:(?:async|new|bound|get|set|static)\s+)+", "", name.strip())
    name = re.sub(r"\s*\[as [^\]]*\]$", "", name)
    parts = [p for p in name.split(".") if p]
    if not parts or parts[-1] in _ANONYMOUS or parts[-1].startswith("<anonymous"):
        return None
    if minified_names:
        if is_minified_name(parts[-1]):
            return None
        parts = [p for p in parts if not is_minified_name(p)]
    return ".".join(p for p in parts if p not in _ANONYMOUS) or None


def is_app_frame(frame: Frame) -> bool:
    """False for frames marked ``in_app: false`` and for library, extension, native and polyfill code."""
    if frame.in_app is False:
        return False
    if not frame.module and (frame.filename or frame.abs_path or "") in _NOT_A_FILE:
        # Engine-internal frames ("[native code]" Array.map, "<anonymous>" Promise) say nothing about the app.
        return False
    return not _is_library_path(frame.abs_path or frame.filename or "") and not _is_library_path(frame.filename or "")


@lru_cache(maxsize=8192)  # bundles have few files
def _is_library_path(path: str) -> bool:
    return _LIBRARY_PATH.search(path) is not None


def frame_key(frame: Frame, *, minified_names: bool) -> tuple[str | None, str | None]:
    """``(file, function)`` grouping parts of one frame; either may be None."""
    return file_key(frame), function_key(frame.function, minified_names=minified_names)


# ---------------------------------------------------------------------------------------------------------
# signature


def _frames_key(event: NormalizedEvent) -> tuple[tuple[str, ...], str, bool]:
    """The frames' components (outermost first), the culprit, and whether the innermost frame is named."""
    minified_names = event.platform in _JS_PLATFORMS
    components: list[str] = []
    culprit = ""
    innermost_named = False
    for frame in reversed(event.frames):
        if not is_app_frame(frame):
            continue
        file, function = frame_key(frame, minified_names=minified_names)
        if file is None and function is None:
            continue
        if not components:
            innermost_named = function is not None
            culprit = function or (file or "").rpartition("/")[2]
        component = f"{file}:{function}" if file and function else file or function or ""
        # Recursion depth is not identity: repeated identical frames count once.
        if not components or components[-1] != component:
            components.append(component)
        if len(components) == MAX_FRAMES:
            break
    return tuple(reversed(components)), culprit, innermost_named


_TEMPLATE = re.compile(r"^\{\{\s*([\w.]+)\s*\}\}$")


def _title(exception_type: str, value: str) -> str:
    title = f"{exception_type}: {value}" if exception_type and value else exception_type or value
    title = title or "<unlabeled event>"
    return title if len(title) <= MAX_TITLE else title[: MAX_TITLE - 1] + "…"


@lru_cache(maxsize=8192)  # a batch has far fewer signatures than events; the hash is pure
def _components_hash(components: tuple[str, ...]) -> str:
    return hashlib.sha1(json.dumps([GROUPING_VERSION, *components]).encode(), usedforsecurity=False).hexdigest()


SIGNATURE_MEMO_SIZE = 8192
"""Distinct (stack, message, SDK fingerprint) combinations whose signature is remembered."""

_signature_memo: dict[tuple[object, ...], tuple[tuple[Frame, ...], Signature]] = {}


def signature_for_event(event: NormalizedEvent) -> Signature:
    """Group ``event``: equal hashes mean the same bug (see the module docstring for the components).

    Memoised: the same error repeats with the same stack thousands of times, and the digest gives equal
    stacks the same Frame objects (``normalize_event_json``), so the memo is keyed by the frames' identity
    (and every other input). The entry holds its frames, so no other object can take their ids while it
    lives; frames are immutable in what grouping reads. Events built otherwise simply miss.
    """
    frames = event.frames
    fingerprint = event.fingerprint
    key = (
        event.platform in _JS_PLATFORMS,
        event.exception_type,
        event.exception_value or event.message,
        tuple(fingerprint) if fingerprint else None,
        *map(id, frames),
    )
    entry = _signature_memo.get(key)
    if entry is None:
        entry = remember(_signature_memo, key, (tuple(frames), _signature(event)), SIGNATURE_MEMO_SIZE)
    signature = entry[1]
    # The one per-event input: the page route names an event whose stack names nothing.
    return signature if signature.culprit or not event.route else replace(signature, culprit=event.route)


def _signature(event: NormalizedEvent) -> Signature:
    """`signature_for_event` without the memo, with an empty culprit where the route would stand in."""
    exception_type = event.exception_type or ""
    value = normalize_message(event.exception_value or event.message)
    frames, culprit, innermost_named = _frames_key(event)
    default: list[str] = [exception_type, *frames]
    if not innermost_named:
        default.append(value)
    if event.fingerprint:
        components: list[str] = []
        custom = True
        for part in event.fingerprint:
            template = _TEMPLATE.match(part.strip())
            variable = template.group(1).lower() if template else None
            if variable == "default":
                components.extend(default)
                custom = False
            elif variable in ("type", "error.type"):
                components.append(exception_type)
            elif variable in ("message", "error.value"):
                components.append(value)
            else:
                components.append(part)
        # A custom fingerprint lives in its own namespace: it can never collide with a default grouping.
        components.insert(0, "custom" if custom else "default")
    else:
        components = ["default", *default]
    return Signature(
        hash=_components_hash(tuple(components)),
        type=exception_type,
        value=value,
        culprit=culprit,
        title=_title(exception_type, value),
        frames_key=frames,
    )
