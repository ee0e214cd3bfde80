"""JavaScript/TypeScript import statements: parsing them and resolving them to repository files.

Regular expressions, not a parser: fast on thousands of files and good enough for import statements,
which have a rigid shape. Handled: `import … from`, `import '…'`, `export … from`, `require()`, dynamic
`import()`, relative paths, extensions, `index` files, and `compilerOptions.paths`/`baseUrl` aliases
from tsconfig.json/jsconfig.json.
"""

from __future__ import annotations

import json
import posixpath
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

EXTENSIONS = (".ts", ".tsx", ".js", ".jsx", ".mjs", ".cjs", ".vue", ".json")
SOURCE_EXTENSIONS = (".ts", ".tsx", ".js", ".jsx", ".mjs", ".cjs", ".vue", ".mts", ".cts")
CONFIG_NAMES = ("tsconfig.json", "jsconfig.json")

_BLOCK_COMMENT = re.compile(r"/\*.*?\*/", re.S)
_LINE_COMMENT = re.compile(r"(?m)^\s*//.*$")
_STR = r"""['"`]([^'"`\n]+)['"`]"""
_STATIC_IMPORT = re.compile(r"\bimport\s+(?:type\s+)?([\w$*{}\s,]+?)\s+from\s*" + _STR)
_BARE_IMPORT = re.compile(r"\bimport\s*" + _STR)
_EXPORT_FROM = re.compile(r"\bexport\s+(?:type\s+)?(\*(?:\s+as\s+[\w$]+)?|\{[^}]*\})\s*from\s*" + _STR)
_REQUIRE = re.compile(r"(?:\b(?:const|let|var)\s+([\w$]+|\{[^}]*\})\s*=\s*)?\brequire\s*\(\s*" + _STR + r"\s*\)")
_DYNAMIC = re.compile(r"\bimport\s*\(\s*" + _STR + r"\s*\)")
_NAME = re.compile(r"[A-Za-z_$][\w$]*")


@dataclass(frozen=True)
class ImportStatement:
    """One import of `specifier`; `names` are the names taken from the target module as the target
    exports them ('default' for a default import, '*' for a namespace or re-export of everything), plus the
    local name of default and namespace imports; `reexport` is True for `export … from`."""

    specifier: str
    names: frozenset[str]
    reexport: bool = False


def strip_comments(text: str) -> str:
    """Remove block comments and whole-line `//` comments (trailing ones are left: URLs contain `//`)."""
    return _LINE_COMMENT.sub("", _BLOCK_COMMENT.sub("", text))


def _braced_names(clause: str) -> set[str]:
    """`{ a, b as c, type d }` → {'a', 'b', 'd'} (the exported names, not the local aliases)."""
    names: set[str] = set()
    for part in clause.strip().strip("{}").split(","):
        words = part.replace("type ", " ").split()
        if words and _NAME.fullmatch(words[0]):
            names.add(words[0])
    return names


def _clause_names(clause: str) -> set[str]:
    """Names of an import clause: `X`, `{a, b}`, `* as ns`, `X, {a}`, `X, * as ns`."""
    names: set[str] = set()
    brace = re.search(r"\{[^}]*\}", clause)
    if brace:
        names |= _braced_names(brace.group(0))
        clause = clause[: brace.start()] + clause[brace.end() :]
    star = re.search(r"\*\s*as\s+([\w$]+)", clause)
    if star:
        names |= {"*", star.group(1)}
        clause = clause[: star.start()] + clause[star.end() :]
    default = [w for w in re.split(r"[\s,]+", clause) if _NAME.fullmatch(w)]
    if default:
        names |= {"default", default[0]}
    return names


def parse_imports(text: str) -> list[ImportStatement]:
    """Every import, re-export, require and dynamic import in `text`, in no particular order."""
    code = strip_comments(text)
    found: list[ImportStatement] = []
    for m in _STATIC_IMPORT.finditer(code):
        found.append(ImportStatement(m.group(2), frozenset(_clause_names(m.group(1)))))
    for m in _BARE_IMPORT.finditer(code):
        found.append(ImportStatement(m.group(1), frozenset()))
    for m in _EXPORT_FROM.finditer(code):
        clause = m.group(1)
        names = {"*"} if clause.startswith("*") else _braced_names(clause)
        found.append(ImportStatement(m.group(2), frozenset(names), reexport=True))
    for m in _REQUIRE.finditer(code):
        target = m.group(1)
        if target is None:
            names: set[str] = {"*"}
        elif target.startswith("{"):
            names = {n.split(":")[0].strip() for n in target.strip("{}").split(",") if n.strip()}
        else:
            names = {"*", target}
        found.append(ImportStatement(m.group(2), frozenset(names)))
    for m in _DYNAMIC.finditer(code):
        found.append(ImportStatement(m.group(1), frozenset({"*"})))
    return found


# -- resolution --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PathAliases:
    """`compilerOptions.paths` and `baseUrl` of one tsconfig/jsconfig, made relative to the repository root.

    `patterns` is a list of (prefix, suffix, [target templates with one '*']) for patterns with a '*',
    exact patterns have an empty suffix and no '*'; `base_url` is the repository-relative base directory
    or None.
    """

    directory: str
    base_url: str | None
    patterns: tuple[tuple[str, str, tuple[str, ...]], ...]


def _loads_jsonc(text: str) -> object:
    """JSON with comments and trailing commas, as tsconfig files are written."""
    text = re.sub(r'("(?:\\.|[^"\\])*")|/\*.*?\*/|//[^\n]*', lambda m: m.group(1) or "", text, flags=re.S)
    text = re.sub(r",(\s*[}\]])", r"\1", text)
    return json.loads(text)


def parse_path_aliases(config_path: str, text: str) -> PathAliases | None:
    """The aliases of a tsconfig.json/jsconfig.json at repository path `config_path`; None when it has
    neither `baseUrl` nor `paths` or is not valid JSON(C). `extends` is not followed."""
    try:
        data = _loads_jsonc(text)
    except ValueError:
        return None
    options = data.get("compilerOptions") if isinstance(data, dict) else None
    if not isinstance(options, dict):
        return None
    directory = posixpath.dirname(config_path)
    base = options.get("baseUrl")
    paths = options.get("paths")
    if not isinstance(base, str) and not isinstance(paths, dict):
        return None
    base_dir = _join(directory, base) if isinstance(base, str) else None
    patterns: list[tuple[str, str, tuple[str, ...]]] = []
    if isinstance(paths, dict):
        root = base_dir if base_dir is not None else directory
        for pattern, targets in paths.items():
            if not isinstance(targets, list):
                continue
            prefix, _, suffix = pattern.partition("*")
            resolved = tuple(_join(root, t) for t in targets if isinstance(t, str))
            patterns.append((prefix, suffix if "*" in pattern else "\x00exact", resolved))
    # Longest prefix first, as TypeScript picks the most specific pattern.
    patterns.sort(key=lambda p: -len(p[0]))
    return PathAliases(directory=directory, base_url=base_dir, patterns=tuple(patterns))


def _join(directory: str, relative: str) -> str:
    joined = posixpath.normpath(posixpath.join(directory, relative))
    return "" if joined == "." else joined


class Resolver:
    """Resolves import specifiers to files of one repository snapshot.

    Built from the set of file paths and the parsed aliases; resolution is a pure lookup, no file access.
    """

    def __init__(self, files: Iterable[str], aliases: Mapping[str, PathAliases]) -> None:
        self.files = frozenset(files)
        self.aliases = dict(aliases)
        self._alias_dirs = sorted(self.aliases, key=len, reverse=True)

    def _aliases_for(self, importer: str) -> PathAliases | None:
        for directory in self._alias_dirs:
            if directory == "" or importer.startswith(directory + "/"):
                return self.aliases[directory]
        return None

    def _file_for(self, base: str) -> str | None:
        """`base` as a file, with an extension added, or as a directory's index file."""
        if base in self.files:
            return base
        for ext in EXTENSIONS:
            if base + ext in self.files:
                return base + ext
        for ext in EXTENSIONS:
            candidate = f"{base}/index{ext}" if base else f"index{ext}"
            if candidate in self.files:
                return candidate
        stem, ext = posixpath.splitext(base)
        if ext in (".js", ".jsx", ".mjs", ".cjs"):
            # TypeScript ESM style: `import './x.js'` names the compiled output of x.ts.
            for ts_ext in (".ts", ".tsx", ".mts", ".cts"):
                if stem + ts_ext in self.files:
                    return stem + ts_ext
        return None

    def resolve(self, importer: str, specifier: str) -> str | None:
        """The repository file `specifier` (imported from file `importer`) names, or None (a package)."""
        spec = specifier.split("?", 1)[0]
        if spec.startswith("."):
            return self._file_for(_join(posixpath.dirname(importer), spec))
        if spec.startswith("/"):
            return self._file_for(spec.lstrip("/"))
        config = self._aliases_for(importer)
        if config is not None:
            for prefix, suffix, targets in config.patterns:
                if suffix == "\x00exact":
                    if spec != prefix:
                        continue
                    middle = ""
                elif spec.startswith(prefix) and spec.endswith(suffix) and len(spec) >= len(prefix + suffix):
                    middle = spec[len(prefix) : len(spec) - len(suffix)] if suffix else spec[len(prefix) :]
                else:
                    continue
                for target in targets:
                    found = self._file_for(target.replace("*", middle))
                    if found:
                        return found
            if config.base_url is not None:
                found = self._file_for(_join(config.base_url, spec))
                if found:
                    return found
        if spec.startswith(("@/", "~/")):
            # Vite/Nuxt convention when no tsconfig declares the alias: `@/x` is `src/x`.
            return self._file_for("src/" + spec[2:])
        return None
