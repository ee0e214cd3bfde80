"""The import graph of a repository snapshot, and walks over it.

`build_import_graph` is pure ({path: text} in, graph out). `SnapshotIndexCache` keeps the graph (and the
identifier statistics built from the same files) per snapshot key, so a deploy with many commits, or many
anomalies of one deploy, pay for reading and parsing the repository once.
"""

from __future__ import annotations

import itertools
import posixpath
from collections import OrderedDict, deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from threading import Lock

from detector.blame.imports import (
    CONFIG_NAMES,
    SOURCE_EXTENSIONS,
    PathAliases,
    Resolver,
    parse_imports,
    parse_path_aliases,
)
from detector.blame.model import RepoSnapshot
from detector.blame.symbols import IdentifierStats, identifier_stats


@dataclass(frozen=True)
class ImportGraph:
    """`imports[a][b]` = names file `a` takes from file `b` ('*' for everything); `importers` is the
    reverse adjacency; `reexports[a]` = files `a` re-exports from (barrel files)."""

    imports: dict[str, dict[str, frozenset[str]]] = field(default_factory=dict)
    importers: dict[str, set[str]] = field(default_factory=dict)
    reexports: dict[str, set[str]] = field(default_factory=dict)


def is_source_file(path: str) -> bool:
    return path.endswith(SOURCE_EXTENSIONS) and "node_modules/" not in path and not path.endswith(".d.ts")


def build_import_graph(files: Mapping[str, str]) -> ImportGraph:
    """The graph of imports between the files of a snapshot {path: text}.

    tsconfig.json/jsconfig.json files in `files` supply path aliases (each applies to files below its
    folder; the nearest one wins). Imports that name packages are left out.
    """
    aliases: dict[str, PathAliases] = {}
    for path, text in files.items():
        if posixpath.basename(path) in CONFIG_NAMES:
            parsed = parse_path_aliases(path, text)
            if parsed is not None and parsed.directory not in aliases:
                aliases[parsed.directory] = parsed
    resolver = Resolver(files.keys(), aliases)
    graph = ImportGraph()
    for path, text in files.items():
        if not is_source_file(path):
            continue
        edges: dict[str, frozenset[str]] = {}
        for statement in parse_imports(text):
            target = resolver.resolve(path, statement.specifier)
            if target is None or target == path:
                continue
            edges[target] = edges.get(target, frozenset()) | statement.names
            graph.importers.setdefault(target, set()).add(path)
            if statement.reexport:
                graph.reexports.setdefault(path, set()).add(target)
        graph.imports[path] = edges
    return graph


def importers_within(graph: ImportGraph, changed_path: str, hops: int = 2) -> dict[str, int]:
    """Files that import `changed_path` directly (1) or through up to `hops` files, with their distance."""
    distance: dict[str, int] = {}
    queue: deque[tuple[str, int]] = deque([(changed_path, 0)])
    while queue:
        node, d = queue.popleft()
        if d == hops:
            continue
        for importer in graph.importers.get(node, ()):
            if importer != changed_path and importer not in distance:
                distance[importer] = d + 1
                queue.append((importer, d + 1))
    return distance


def imports_within(graph: ImportGraph, path: str, hops: int = 2) -> dict[str, list[str]]:
    """Files `path` imports directly or through up to `hops` files, each with the chain of files from
    `path` to it (both ends included). Going through a barrel file (one that only re-exports) does not
    count as a hop, so `@/api` → `api/index.ts` → `api/users.ts` is one hop."""
    chains: dict[str, list[str]] = {}
    queue: deque[tuple[str, list[str], int]] = deque([(path, [path], 0)])
    while queue:
        node, chain, d = queue.popleft()
        if d >= hops:
            continue
        for target in graph.imports.get(node, {}):
            if target == path or target in chains:
                continue
            chains[target] = [*chain, target]
            through_barrel = is_barrel(graph, target)
            queue.append((target, [*chain, target], d if through_barrel else d + 1))
    return chains


def is_barrel(graph: ImportGraph, path: str) -> bool:
    """True for a file whose every import is a re-export (an `index.ts` that only gathers modules)."""
    edges = graph.imports.get(path, {})
    reexported = graph.reexports.get(path, set())
    return bool(edges) and set(edges) <= reexported


def names_along(graph: ImportGraph, chain: list[str]) -> frozenset[str]:
    """The names the last file of `chain` gives to the first, following names through re-exports: on a
    path through a barrel file the names the first file asked for pass through; through an ordinary module
    they become that module's own imports."""
    if len(chain) < 2:
        return frozenset()
    names = graph.imports.get(chain[0], {}).get(chain[1], frozenset())
    for a, b in itertools.pairwise(chain[1:]):
        edge = graph.imports.get(a, {}).get(b, frozenset())
        if b in graph.reexports.get(a, set()) and ("*" in edge or names & edge):
            names = names if "*" in edge else names & edge
            continue
        names = edge
    return names


@dataclass(frozen=True)
class SnapshotIndex:
    """Everything ranking derives from a whole snapshot, built once per snapshot key."""

    graph: ImportGraph
    files: tuple[str, ...]
    stats: IdentifierStats


def build_snapshot_index(snapshot: RepoSnapshot, max_files: int = 20_000) -> SnapshotIndex:
    """Read the snapshot's source and config files and build the import graph and identifier statistics."""
    files = snapshot.list_files()
    wanted = [p for p in files if is_source_file(p) or posixpath.basename(p) in CONFIG_NAMES][:max_files]
    texts = snapshot.read_files(wanted)
    return SnapshotIndex(
        graph=build_import_graph(texts),
        files=tuple(files),
        stats=identifier_stats(t for p, t in texts.items() if is_source_file(p)),
    )


class SnapshotIndexCache:
    """A thread-safe LRU of SnapshotIndex keyed by the snapshot's key (repository path, sha)."""

    def __init__(self, maxsize: int = 8) -> None:
        self.maxsize = maxsize
        self._items: OrderedDict[tuple[str, str], SnapshotIndex] = OrderedDict()
        self._lock = Lock()

    def get(self, snapshot: RepoSnapshot) -> SnapshotIndex:
        """The index of `snapshot`, built on first use."""
        key = snapshot.key
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        index = build_snapshot_index(snapshot)
        with self._lock:
            self._items[key] = index
            self._items.move_to_end(key)
            while len(self._items) > self.maxsize:
                self._items.popitem(last=False)
        return index

    def __len__(self) -> int:
        return len(self._items)
