"""Identifiers: those a commit's diff changed, those an error names, and how rare each is.

All functions are pure. Rarity is an inverse document frequency over the files of the deployed snapshot
(each file one document; the same smoothed formula as scikit-learn's TfidfVectorizer), so `map` or
`props` weigh little and `getEntitlements` weighs a lot.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from detector.blame.paths import Frame

_IDENT = re.compile(r"[A-Za-z_$][\w$]*")


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


_KEYWORDS = _words(
    """
    abstract any arguments as async await boolean break case catch class const constructor continue debugger
    declare default delete do else enum export extends false finally for from function get if implements
    import in instanceof interface let module namespace never new null number object of package private
    protected public readonly return set static string super switch symbol this throw true try type typeof
    undefined unknown var void while with yield console log window document require exports props state
    """
)
# Words of browser error messages that are not identifiers of the program.
_MESSAGE_WORDS = _words(
    """
    cannot can't read reading properties property of is not a an the function defined iterable object
    evaluating access destructure it as assignment to constant variable failed fetch error uncaught
    typeerror referenceerror rangeerror syntaxerror invalid maximum call stack size exceeded unexpected
    token null undefined has no method constructor at in be converted value does exist on type
    """
)

_DECLARATIONS = (
    re.compile(r"\bfunction\s*\*?\s*([A-Za-z_$][\w$]*)"),
    re.compile(
        r"\b(?:const|let|var)\s+([A-Za-z_$][\w$]*)\s*=\s*(?:async\s*)?(?:function\b|\([^)]*\)\s*=>|[\w$]+\s*=>)"
    ),
    re.compile(r"\bclass\s+([A-Za-z_$][\w$]*)"),
    re.compile(r"^\s*(?:async\s+)?(?:static\s+)?(?:get\s+|set\s+)?([A-Za-z_$][\w$]*)\s*\([^)]*\)\s*\{"),
    re.compile(r"\b([A-Za-z_$][\w$]*)\s*:\s*(?:async\s*)?(?:function\b|\([^)]*\)\s*=>)"),
)
_EXPORTED = re.compile(
    r"\bexport\s+(?:default\s+)?(?:async\s+)?(?:function\s*\*?|class|const|let|var)\s+([A-Za-z_$][\w$]*)"
)
_EXPORT_LIST = re.compile(r"\bexport\s*\{([^}]*)\}")
_NOT_NAMES = frozenset({"if", "for", "while", "switch", "catch", "function", "return", "with"})


def identifiers(text: str, min_length: int = 3) -> list[str]:
    """Identifiers in `text` (in order, repeats kept), without keywords and very short names."""
    return [t for t in _IDENT.findall(text) if len(t) >= min_length and t not in _KEYWORDS]


def declared_name(line: str) -> str | None:
    """The function, class or method a line declares, if any."""
    for pattern in _DECLARATIONS:
        m = pattern.search(line)
        if m and m.group(1) not in _NOT_NAMES:
            return m.group(1)
    return None


@dataclass(frozen=True)
class DiffSymbols:
    """What one file's diff changed: identifiers on added and removed lines, the functions whose bodies
    changed (by name), the exported names declared on changed lines, and the line numbers (in the new file)
    of added lines."""

    added: frozenset[str] = frozenset()
    removed: frozenset[str] = frozenset()
    functions: frozenset[str] = frozenset()
    exports: frozenset[str] = frozenset()
    added_lines: dict[int, str] = field(default_factory=dict)

    @property
    def changed(self) -> frozenset[str]:
        return self.added | self.removed


_HUNK = re.compile(r"^@@ -\d+(?:,\d+)? \+(\d+)(?:,\d+)? @@ ?(.*)$")


def changed_symbols(patch: str) -> DiffSymbols:
    """Parse one file's unified diff hunks (as FileChange.patch holds them)."""
    added: set[str] = set()
    removed: set[str] = set()
    functions: set[str] = set()
    exports: set[str] = set()
    added_lines: dict[int, str] = {}
    enclosing: str | None = None
    new_line = 0
    for line in patch.splitlines():
        hunk = _HUNK.match(line)
        if hunk:
            new_line = int(hunk.group(1))
            enclosing = declared_name(hunk.group(2)) if hunk.group(2) else None
            continue
        if not line or line[0] not in "+- ":
            continue
        sign, body = line[0], line[1:]
        declared = declared_name(body)
        if declared:
            enclosing = declared
        elif sign == " " and body.startswith("}"):
            enclosing = None  # a closing brace in column 0 ends a top-level declaration
        if sign == " ":
            new_line += 1
            continue
        stripped = body.strip()
        if not stripped or stripped.startswith(("//", "/*", "*")):
            if sign == "+":
                new_line += 1
            continue
        names = identifiers(body)
        (added if sign == "+" else removed).update(names)
        if enclosing:
            functions.add(enclosing)
        exported = _EXPORTED.search(body)
        if exported:
            exports.add(exported.group(1))
        export_list = _EXPORT_LIST.search(body)
        if export_list:
            exports.update(n.split()[0] for n in export_list.group(1).split(",") if n.strip())
        if sign == "+":
            added_lines[new_line] = stripped
            new_line += 1
    return DiffSymbols(
        added=frozenset(added),
        removed=frozenset(removed),
        functions=frozenset(functions),
        exports=frozenset(exports),
        added_lines=added_lines,
    )


def message_identifiers(error_type: str, value: str) -> set[str]:
    """Program identifiers an error message names: quoted names, dotted paths (`entitlements.map`), the
    subject of `… is not a function/defined/iterable`, and camelCase or snake_case words."""
    found: set[str] = set()
    for quoted in re.findall(r"""['"`]([^'"`]{1,120})['"`]""", value):
        found.update(_IDENT.findall(quoted))
    for dotted in re.findall(r"[A-Za-z_$][\w$]*(?:\.[A-Za-z_$][\w$]*)+", value):
        found.update(p for p in dotted.split(".") if not p.startswith("_"))
    for subject in re.findall(r"([A-Za-z_$][\w$]*)\)?\s+is\s+(?:not|undefined|null)", value):
        found.add(subject)
    for word in _IDENT.findall(value):
        if re.search(r"[a-z][A-Z]|_|\$", word.strip("_$")):
            found.add(word)
    # Names a bundler generated (`_api__WEBPACK_IMPORTED_MODULE_0__`, `_user`) are not in the source.
    found = {w for w in found if not w.startswith("_")}
    return {
        w for w in found if len(w) >= 2 and w.lower() not in _MESSAGE_WORDS and w not in _KEYWORDS and w != error_type
    }


@dataclass(frozen=True)
class ErrorSymbols:
    """Identifiers of an error: from the message, from frame function names, and from the crashing
    frame's context line."""

    message: frozenset[str]
    functions: frozenset[str]
    context: frozenset[str]

    @property
    def all(self) -> frozenset[str]:
        return self.message | self.functions | self.context


def error_symbols(error_type: str, value: str, frames: Sequence[Frame], depth: int = 3) -> ErrorSymbols:
    """Identifiers of an error; frames are in-app frames, crashing first; only the top `depth` count."""
    top = frames[:depth]
    functions = {f.function.split(".")[-1] for f in top if f.function}
    context: set[str] = set()
    if top and top[0].context_line:
        context.update(identifiers(top[0].context_line, min_length=2))
    return ErrorSymbols(
        message=frozenset(message_identifiers(error_type, value)),
        functions=frozenset(f for f in functions if f not in ("<anonymous>", "?") and len(f) >= 2),
        context=frozenset(context),
    )


@dataclass(frozen=True)
class IdentifierStats:
    """Document frequencies of identifiers over a set of documents (files)."""

    documents: int
    frequency: Counter[str]

    def idf(self, name: str) -> float:
        """Smoothed inverse document frequency, ln((1 + n) / (1 + df)) + 1, as scikit-learn computes it:
        1.0 for a name in every file, growing for rarer names; unseen names get the largest value."""
        return math.log((1 + self.documents) / (1 + self.frequency.get(name, 0))) + 1.0

    def weight(self, names: Iterable[str]) -> float:
        return sum(self.idf(n) for n in set(names))


def identifier_stats(documents: Iterable[str]) -> IdentifierStats:
    """Count, for each identifier, the number of documents that contain it."""
    frequency: Counter[str] = Counter()
    count = 0
    for text in documents:
        count += 1
        frequency.update(set(_IDENT.findall(text)))
    return IdentifierStats(documents=count, frequency=frequency)


# `getX is not a function`, or a bundler's call of an imported binding: `(0 , _mod.getX) is not a function`.
_NOT_A_FUNCTION = re.compile(r"(?:^|\(0\s*,\s*(?:[\w$]+\.)+)([A-Za-z_$][\w$]*)\)?\s+is not a function")
_RECEIVER_CALL = re.compile(r"([A-Za-z_$][\w$]*)\.([A-Za-z_$][\w$]*)\s+is not (?:a function|iterable)")
_READING = re.compile(r"""reading '([^']+)'|can't access property "([^"]+)"|evaluating '([^']+)'""")


def _receivers(value: str, context_line: str | None) -> set[str]:
    """Variables whose value the error is about: `x` of `x.map is not a function` or of `x.name` when the
    message says `reading 'name'`."""
    found = {m.group(1) for m in _RECEIVER_CALL.finditer(value)}
    for m in _READING.finditer(value):
        if m.group(3):  # Safari: evaluating 'a.b.c' names the path itself
            found.add(m.group(3).split(".")[0])
            continue
        prop = m.group(1) or m.group(2)
        if context_line:
            pattern = r"([A-Za-z_$][\w$]*)(?:\[[^\]]*\])*\??\.\s*" + re.escape(prop) + r"\b"
            found.update(re.findall(pattern, context_line))
    return {r for r in found if r not in _KEYWORDS}


def crash_symbols(value: str, frame: Frame, file_text: str | None) -> dict[str, str]:
    """Functions the crash directly depends on, each with a short reason a person can check:
    the function the message says is not a function, and the functions whose return value was assigned
    to the variable the error is about (found in the frame's file, above the crashing line)."""
    symbols: dict[str, str] = {}
    for m in _NOT_A_FUNCTION.finditer(value):
        symbols[m.group(1)] = f"`{m.group(1)}` is the call that fails"
    if not file_text or not frame.lineno:
        return symbols
    lines = file_text.split("\n")[: frame.lineno]
    for receiver in _receivers(value, frame.context_line):
        assign = re.compile(
            r"(?:\b" + re.escape(receiver) + r"|\{[^}]*\b" + re.escape(receiver) + r"\b[^}]*\}|\[[^\]]*\b"
            + re.escape(receiver) + r"\b[^\]]*\])\s*=\s*(?:await\s+)?(?:[\w$]+\.)*([A-Za-z_$][\w$]*)\s*\("
        )  # fmt: skip
        for line in reversed(lines):
            m = assign.search(line)
            if m and m.group(1) not in _KEYWORDS:
                symbols.setdefault(m.group(1), f"`{receiver}` at the crashing line comes from `{m.group(1)}`")
                break
    return symbols
