"""Rank a deploy's commits by how well they explain an error, with evidence a person can check.

Each commit gets features (numbers in 0..1, defined in docs/BLAME.md), the score is a hand-weighted sum
of them (WEIGHTS), and every feature that fires comes with one sentence naming the file, frame, symbol or
line behind it. The function is pure apart from the snapshot it is given (reading files, blame).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from detector.blame.graph import (
    ImportGraph,
    SnapshotIndex,
    SnapshotIndexCache,
    imports_within,
    is_barrel,
    is_source_file,
    names_along,
)
from detector.blame.model import ErrorContext, RepoSnapshot, Suspect, SuspectRanking
from detector.blame.paths import Frame, frame_file_matches, in_app_frames, resolve_frame_path
from detector.blame.priors import commit_kind, fragility, is_runtime_path, recency, size_specificity
from detector.blame.symbols import (
    DiffSymbols,
    ErrorSymbols,
    IdentifierStats,
    changed_symbols,
    crash_symbols,
    error_symbols,
    identifier_stats,
)
from detector.sources.git_repo import CommitInfo

# Points each feature adds at full strength (features are 0..1). Line-level and symbol-level links are
# specific, so they weigh most; file-level links are common (many commits touch a busy file).
WEIGHTS: dict[str, float] = {
    "crash_line": 4.0,
    "frame_function": 2.0,
    "crash_symbol": 4.5,
    "imported_symbol": 2.0,
    "symbol_overlap": 2.0,
    "frame_file": 1.5,
    "import_link": 1.0,
    "recency": 0.3,
    "fragility": 0.3,
    "non_runtime": -4.0,
    "merge": -0.5,
}
# Locality features overlap (writing the crashing line implies changing its function): only the stronger
# of WEIGHTS["crash_line"] * crash_line and WEIGHTS["frame_function"] * frame_function counts.
_LOCALITY = ("crash_line", "frame_function")
# How many in-app frames, from the crash down, are examined.
FRAME_DEPTH = 5
# Identifier weights by where the error names them (the crashing line's other identifiers are left out:
# line-level evidence covers the crashing file, and they name too much, e.g. the rendering helpers).
_SOURCE_WEIGHT = {"message": 1.0, "functions": 0.7}
# Rarity mass of matched identifiers at which symbol_overlap reaches 1 - 1/e.
_OVERLAP_SCALE = 6.0

_KIND_SENTENCES = {
    "style": "Only changes stylesheets, which cannot throw a JavaScript error.",
    "docs": "Only changes documentation.",
    "test": "Only changes tests, which do not ship to users.",
    "asset": "Only changes images or fonts.",
    "lockfile": "Only changes a lockfile.",
    "ci": "Only changes CI configuration.",
    "non-runtime": "Changes no code that runs in the app (styles, docs, tests or assets only).",
    "empty": "Changes no files.",
}

DEFAULT_CACHE = SnapshotIndexCache(maxsize=8)


def _decay(depth: int) -> float:
    """Weight of a frame by distance from the crash: 1, 1/2, 1/3, …"""
    return 1.0 / (1.0 + depth)


def _frame_label(frame: Frame, path: str) -> str:
    fn = f", `{frame.function}`" if frame.function else ""
    if frame.depth == 0:
        return f"{path} (the crashing frame{fn})"
    return f"{path} (a frame {frame.depth} below the crash{fn})"


@dataclass
class _Best:
    """The strongest instance of one feature for one commit, with its sentence."""

    value: float = 0.0
    sentence: str = ""

    def offer(self, value: float, sentence: str) -> None:
        if value > self.value:
            self.value, self.sentence = value, sentence


@dataclass
class _Context:
    """What is computed once per ranking and shared by all commits."""

    frames: list[Frame]
    repo_path: dict[int, str]  # frame depth → repository path (frame path when no snapshot)
    reach: dict[int, dict[str, list[str]]]  # frame depth → {file it imports: chain}
    blamed: dict[int, str]  # frame depth → sha that last changed the frame's line
    symbols: ErrorSymbols
    crash: dict[int, dict[str, str]]  # frame depth → {function the crash depends on: why}
    stats: IdentifierStats
    index: SnapshotIndex | None
    unavailable: list[str] = field(default_factory=list)


def rank_suspects(
    error: ErrorContext,
    commits: Sequence[CommitInfo],
    snapshot: RepoSnapshot | None,
    *,
    break_counts: Mapping[str, int] | None = None,
    cache: SnapshotIndexCache | None = None,
) -> SuspectRanking:
    """Rank `commits` (a deploy's commits, oldest first) as causes of `error`, best first.

    `snapshot` gives the repository at the deployed commit (None when no repository is linked: frame
    paths and diffs still rank, and `unavailable` names what could not be used). `break_counts` maps paths
    to how often they were blamed before. `cache` keeps import graphs between calls (DEFAULT_CACHE when
    omitted). Every commit is returned; scores only compare within one ranking.
    """
    ctx = _prepare(error, commits, snapshot, cache or DEFAULT_CACHE)
    suspects = [
        _score_commit(ctx, commit, position, len(commits), break_counts) for position, commit in enumerate(commits)
    ]
    order = sorted(range(len(suspects)), key=lambda i: (-suspects[i].score, -i))
    return SuspectRanking(suspects=[suspects[i] for i in order], unavailable=ctx.unavailable)


def _prepare(
    error: ErrorContext,
    commits: Sequence[CommitInfo],
    snapshot: RepoSnapshot | None,
    cache: SnapshotIndexCache,
) -> _Context:
    frames = in_app_frames(error.frames, limit=FRAME_DEPTH)
    unavailable: list[str] = []
    if not frames:
        unavailable.append("stack trace evidence (no in-app frames)")
    index = cache.get(snapshot) if snapshot is not None else None
    repo_path: dict[int, str] = {}
    reach: dict[int, dict[str, list[str]]] = {}
    blamed: dict[int, str] = {}
    if index is None:
        unavailable += ["import graph (no linked repository)", "line blame (no linked repository)"]
        repo_path = {f.depth: f.path for f in frames}
    else:
        for frame in frames:
            resolved = resolve_frame_path(frame.path, index.files)
            if resolved is not None:
                repo_path[frame.depth] = resolved
                reach[frame.depth] = imports_within(index.graph, resolved, hops=2)
        if frames and not repo_path:
            unavailable.append("frame files (no stack frame matches a repository file; are source maps uploaded?)")
        if frames and not any(f.lineno for f in frames):
            unavailable.append("line blame (frames have no line numbers)")
        assert snapshot is not None
        for frame in frames[:3]:
            path = repo_path.get(frame.depth)
            if path and frame.lineno:
                sha = snapshot.blame_line(path, frame.lineno)
                if sha:
                    blamed[frame.depth] = sha
    crash: dict[int, dict[str, str]] = {}
    texts = snapshot.read_files(set(repo_path.values())) if snapshot is not None else {}
    for frame in frames[:3]:
        found = crash_symbols(error.value, frame, texts.get(repo_path.get(frame.depth, "")))
        if found:
            crash[frame.depth] = found
    if not any(c.patch for commit in commits for c in commit.files):
        unavailable.append("changed symbols (no diffs)")
    if index is not None:
        stats = index.stats
    else:
        stats = identifier_stats(c.patch for commit in commits for c in commit.files if c.patch)
    return _Context(
        frames=frames,
        repo_path=repo_path,
        reach=reach,
        blamed=blamed,
        symbols=error_symbols(error.type, error.value, frames),
        crash=crash,
        stats=stats,
        index=index,
        unavailable=unavailable,
    )


def _score_commit(
    ctx: _Context,
    commit: CommitInfo,
    position: int,
    count: int,
    break_counts: Mapping[str, int] | None,
) -> Suspect:
    paths = [c.path for c in commit.files]
    kind = commit_kind(paths)
    diffs: dict[str, DiffSymbols] = {c.path: changed_symbols(c.patch) for c in commit.files if c.patch}
    runtime = [c for c in commit.files if is_runtime_path(c.path)]
    lines = sum(c.additions + c.deletions for c in commit.files)
    specificity = size_specificity(len(runtime) or len(paths), lines)

    crash_line, frame_function, crash_symbol = _Best(), _Best(), _Best()
    frame_file, import_link, imported_symbol, overlap = _Best(), _Best(), _Best(), _Best()
    frame_paths = set(ctx.repo_path.values())

    for frame in ctx.frames:
        path = ctx.repo_path.get(frame.depth)
        if path is None:
            continue
        w = _decay(frame.depth)
        code = f" (`{_short(frame.context_line)}`)" if frame.context_line else ""
        if ctx.blamed.get(frame.depth) == commit.sha:
            fn_name = frame.function or "?"
            where = "the crashing line" if frame.depth == 0 else f"a line of `{fn_name}` in the stack"
            crash_line.offer(w, f"Last changed line {frame.lineno} of {path}, {where}{code}.")
        for match in frame_file_matches([frame], paths):
            quality = 1.0 if match.exact else (0.8 if match.score >= 2 else 0.5)
            which = "the crashing file" if frame.depth == 0 else "a file in the stack trace"
            frame_file.offer(w * quality * specificity, f"Changed {match.changed_path}, {which}.")
            diff = diffs.get(match.changed_path)
            if diff is None:
                continue
            if frame.context_line and frame.context_line in diff.added_lines.values():
                where = "the crashing line" if frame.depth == 0 else "a line in the stack trace"
                crash_line.offer(w * quality, f"Wrote {where} of {match.changed_path}{code}.")
            fn = (frame.function or "").split(".")[-1]
            if fn and fn in diff.functions:
                role = "the crashing function" if frame.depth == 0 else "a function in the stack trace"
                frame_function.offer(w * quality, f"Changed `{fn}` in {match.changed_path}, {role}.")
        _offer_crash_symbols(ctx, commit, frame, path, diffs, crash_symbol)
        for changed in commit.files:
            chain = ctx.reach.get(frame.depth, {}).get(changed.path)
            # A changed file that is itself in the stack is covered by the frame evidence above.
            if chain is None or changed.path in frame_paths or not is_runtime_path(changed.path):
                continue
            if ctx.index is None:
                continue
            hops = _hops(ctx, chain)
            via = "" if len(chain) == 2 else f" (through {', '.join(chain[1:-1])})"
            label = _frame_label(frame, path)
            import_link.offer(
                w * (1.0 if hops == 1 else 0.5) * specificity,
                f"Changed {changed.path}, which {label} imports{via}.",
            )
            diff = diffs.get(changed.path)
            if diff is None:
                continue
            names = names_along(ctx.index.graph, chain) - {"*", "default"}
            touched = sorted(names & (diff.functions | diff.exports | diff.changed))
            if touched:
                symbol_list = ", ".join(f"`{n}`" for n in touched[:3])
                imported_symbol.offer(
                    w * (1.0 if hops == 1 else 0.6) * specificity,
                    f"Changed {symbol_list} in {changed.path}, which {label} imports{via}.",
                )

    other_diffs = {p: d for p, d in diffs.items() if p not in frame_paths}
    if other_diffs and ctx.symbols.all:
        overlap_value, matched = _symbol_overlap(ctx, other_diffs)
        if matched:
            named = ", ".join(f"`{n}`" for n in matched[:4])
            overlap.offer(overlap_value * specificity, f"Its diff changes {named}, which the error also names.")

    features = {
        "crash_line": crash_line.value,
        "frame_function": frame_function.value,
        "crash_symbol": crash_symbol.value,
        "imported_symbol": imported_symbol.value,
        "symbol_overlap": overlap.value,
        "frame_file": frame_file.value,
        "import_link": import_link.value,
        "recency": recency(position, count),
        "fragility": fragility(paths, dict(break_counts) if break_counts else None),
        "non_runtime": 0.0 if kind == "code" else 1.0,
        "merge": 1.0 if commit.is_merge else 0.0,
        "specificity": specificity,
    }
    score = combine(features)
    bests = {
        "crash_line": crash_line,
        "crash_symbol": crash_symbol,
        "imported_symbol": imported_symbol,
        "frame_function": frame_function,
        "symbol_overlap": overlap,
        "frame_file": frame_file,
        "import_link": import_link,
    }
    evidence_parts = [(WEIGHTS[name] * best.value, best.sentence) for name, best in bests.items() if best.value]
    evidence = [sentence for _, sentence in sorted(evidence_parts, key=lambda p: -p[0])]
    # One sentence per fact: a named symbol already says the file is imported, a line its function.
    if (imported_symbol.value or crash_symbol.value) and import_link.sentence in evidence:
        evidence.remove(import_link.sentence)
    if crash_line.value and frame_function.sentence in evidence:
        evidence.remove(frame_function.sentence)
    if kind != "code":
        evidence.append(_KIND_SENTENCES[kind])
    if commit.is_merge:
        evidence.append("A merge commit: its changes are those of the commits it merges.")
    if specificity < 0.6 and (frame_file.value or import_link.value or overlap.value):
        size = f"{len(paths)} files, {lines} lines"
        evidence.append(f"A large commit ({size}), so file-level links weigh less.")
    return Suspect(
        sha=commit.sha,
        message=commit.message,
        author=f"{commit.author_name} <{commit.author_email}>" if commit.author_email else commit.author_name,
        score=round(score, 4),
        evidence=evidence,
        features={k: round(v, 4) for k, v in features.items()},
    )


def combine(features: Mapping[str, float]) -> float:
    """The score: the weighted sum of the features, counting only the stronger locality feature."""
    locality = max(WEIGHTS[name] * features.get(name, 0.0) for name in _LOCALITY)
    rest = sum(WEIGHTS[n] * v for n, v in features.items() if n in WEIGHTS and n not in _LOCALITY)
    return locality + rest


def _hops(ctx: _Context, chain: list[str]) -> int:
    """Import distance along `chain`, not counting barrel files (they only pass names through)."""
    assert ctx.index is not None
    return sum(1 for p in chain[1:-1] if not is_barrel(ctx.index.graph, p)) + 1


def _offer_crash_symbols(
    ctx: _Context,
    commit: CommitInfo,
    frame: Frame,
    path: str,
    diffs: Mapping[str, DiffSymbols],
    best: _Best,
) -> None:
    """Did the commit change a function the crash depends on (see symbols.crash_symbols)?

    Directly: the function, in the file the frame imports it from (or in the frame's own file). Through
    one more file: a function that file imports and the commit changed (a hook calling the API)."""
    symbols = ctx.crash.get(frame.depth, {})
    if not symbols:
        return
    w = _decay(frame.depth)
    graph = ctx.index.graph if ctx.index is not None else None
    for name, reason in symbols.items():
        sources = _sources_of(graph, path, name) if graph is not None else set()
        for changed, diff in diffs.items():
            defined = diff.functions | diff.exports | diff.removed
            if graph is None:
                if name in diff.functions or name in diff.exports:
                    best.offer(0.8 * w, f"Changed `{name}` in {changed}; {reason}.")
                continue
            if name in defined and (changed in sources or (changed == path and name in diff.functions)):
                best.offer(w, f"Changed `{name}` in {changed}; {reason}.")
                continue
            for source in sources:
                taken = graph.imports.get(source, {}).get(changed)
                touched = sorted((taken or frozenset()) & (diff.functions | diff.exports))
                if touched:
                    best.offer(
                        0.8 * w,
                        f"Changed `{touched[0]}` in {changed}, which `{name}` ({source}) calls; {reason}.",
                    )


def _sources_of(graph: ImportGraph, path: str, name: str, depth: int = 3) -> set[str]:
    """The files `path` takes `name` from, looking through barrel files to the defining module."""
    found: set[str] = set()
    for target, names in graph.imports.get(path, {}).items():
        if name not in names and "*" not in names:
            continue
        if is_barrel(graph, target) and depth > 0:
            found |= _sources_of(graph, target, name, depth - 1)
        elif name in names:
            found.add(target)
    return found


def _symbol_overlap(ctx: _Context, diffs: Mapping[str, DiffSymbols]) -> tuple[float, list[str]]:
    """Rarity-weighted overlap of the identifiers a commit changed (in code files) with those of the error."""
    changed: set[str] = set()
    for path, diff in diffs.items():
        if is_source_file(path) or is_runtime_path(path):
            changed |= diff.changed | diff.functions
    mass = 0.0
    matched: list[tuple[float, str]] = []
    for source, weight in _SOURCE_WEIGHT.items():
        for name in getattr(ctx.symbols, source):
            if name in changed and name not in {m for _, m in matched}:
                value = weight * ctx.stats.idf(name)
                mass += value
                matched.append((value, name))
    matched.sort(reverse=True)
    return 1.0 - math.exp(-mass / _OVERLAP_SCALE), [name for _, name in matched]


def _short(code: str | None, limit: int = 60) -> str:
    text = " ".join((code or "").split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
