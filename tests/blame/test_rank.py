from __future__ import annotations

from datetime import UTC, datetime

from detector.blame.baseline import frame_file_baseline
from detector.blame.graph import SnapshotIndexCache
from detector.blame.model import ErrorContext, MemorySnapshot
from detector.blame.rank import WEIGHTS, combine, rank_suspects
from detector.sources.git_repo import CommitInfo, FileChange

ENTITLEMENTS = (
    "export async function getEntitlements(userId) {\n"
    "  // now returns an object\n"
    '  return { items: [{ feature: "export-pdf", plan: "pro" }], userId };\n'
    "}\n"
)
PAID = (
    'import { getEntitlements } from "../api/entitlements";\n'
    "export async function renderPaidFeatures(userId) {\n"
    "  const entitlements = await getEntitlements(userId);\n"
    '  return entitlements.map((e) => `<li>${e.feature}</li>`).join("");\n'
    "}\n"
    "export const PAID_TITLE = 'Paid features';\n"
)
BUG_PATCH = (
    "@@ -1,3 +1,4 @@\n export async function getEntitlements(userId) {\n"
    '-  return [{ feature: "export-pdf", plan: "pro" }];\n'
    "+  // now returns an object\n"
    '+  return { items: [{ feature: "export-pdf", plan: "pro" }], userId };\n }\n'
)
TITLE_PATCH = "@@ -4,2 +4,3 @@\n   return 1;\n }\n+export const PAID_TITLE = 'Paid features';\n"
CRASH_LINE = '  return entitlements.map((e) => `<li>${e.feature}</li>`).join("");'
T = datetime(2026, 11, 27, tzinfo=UTC)


def commit(sha: str, message: str, *files: FileChange) -> CommitInfo:
    return CommitInfo(sha, message, "Ada", "ada@example.com", T, ("p",), list(files))


COMMITS = [
    commit("bug", "entitlements: return an object", FileChange("src/api/entitlements.js", "M", None, 2, 1, BUG_PATCH)),
    commit("title", "PaidFeatures: title", FileChange("src/features/PaidFeatures.js", "M", None, 1, 0, TITLE_PATCH)),
    commit("css", "style: padding", FileChange("src/styles/app.css", "M", None, 1, 1, "@@ -1 +1 @@\n-a{}\n+a{b:c}\n")),
]
ERROR = ErrorContext(
    "TypeError",
    "entitlements.map is not a function",
    "TypeError: entitlements.map is not a function",
    [
        {"filename": "../src/main.js", "function": "run", "lineno": 3, "in_app": True},
        {
            "filename": "../src/features/PaidFeatures.js",
            "function": "renderPaidFeatures",
            "lineno": 4,
            "context_line": CRASH_LINE,
            "in_app": True,
        },
    ],
)


def snapshot(blame: dict[tuple[str, int], str] | None = None) -> MemorySnapshot:
    files = {
        "src/api/entitlements.js": ENTITLEMENTS,
        "src/features/PaidFeatures.js": PAID,
        "src/main.js": 'import { renderPaidFeatures } from "./features/PaidFeatures";\n',
        "src/styles/app.css": "a{b:c}",
    }
    return MemorySnapshot(files, blame=blame or {}, name="test-repo", sha=str(id(blame)))


def test_seed_incident_ranks_the_commit_that_changed_the_imported_function_first() -> None:
    ranking = rank_suspects(ERROR, COMMITS, snapshot(), cache=SnapshotIndexCache())
    assert [s.sha for s in ranking.suspects] == ["bug", "title", "css"]
    top = ranking.suspects[0]
    assert top.evidence[0] == (
        "Changed `getEntitlements` in src/api/entitlements.js; `entitlements` at the crashing line comes from "
        "`getEntitlements`."
    )
    assert (
        "Changed `getEntitlements` in src/api/entitlements.js, which src/features/PaidFeatures.js "
        "(the crashing frame, `renderPaidFeatures`) imports."
    ) in top.evidence
    assert top.features["crash_symbol"] == 1.0
    assert top.author == "Ada <ada@example.com>"
    assert ranking.unavailable == []


def test_the_baseline_misses_the_seed_incident() -> None:
    assert frame_file_baseline(ERROR, COMMITS) == ["title"]


def test_innocent_commit_touching_the_crashing_file_gets_file_evidence_only() -> None:
    ranking = rank_suspects(ERROR, COMMITS, snapshot(), cache=SnapshotIndexCache())
    title = next(s for s in ranking.suspects if s.sha == "title")
    assert title.evidence == ["Changed src/features/PaidFeatures.js, the crashing file."]


def test_stylesheet_commit_is_strongly_down_weighted_with_a_reason() -> None:
    css = rank_suspects(ERROR, COMMITS, snapshot(), cache=SnapshotIndexCache()).suspects[-1]
    assert css.sha == "css" and css.score < 0
    assert css.evidence == ["Only changes stylesheets, which cannot throw a JavaScript error."]


def test_line_blame_names_the_line() -> None:
    blamed = snapshot({("src/features/PaidFeatures.js", 4): "title"})
    ranking = rank_suspects(ERROR, COMMITS, blamed, cache=SnapshotIndexCache())
    title = next(s for s in ranking.suspects if s.sha == "title")
    assert title.features["crash_line"] == 1.0
    assert title.evidence[0].startswith("Last changed line 4 of src/features/PaidFeatures.js, the crashing line")


def test_without_repository_paths_and_diffs_still_rank_and_say_what_is_missing() -> None:
    ranking = rank_suspects(ERROR, COMMITS, None)
    assert ranking.unavailable == ["import graph (no linked repository)", "line blame (no linked repository)"]
    assert [s.sha for s in ranking.suspects][-1] == "css"
    title = next(s for s in ranking.suspects if s.sha == "title")
    assert "Changed src/features/PaidFeatures.js, the crashing file." in title.evidence


def test_without_diffs_symbols_are_reported_unavailable() -> None:
    bare = [commit(c.sha, c.message, *(FileChange(f.path, f.change_type) for f in c.files)) for c in COMMITS]
    ranking = rank_suspects(ERROR, bare, None)
    assert "changed symbols (no diffs)" in ranking.unavailable
    assert ranking.suspects[0].sha == "title"  # only the frame-file link is left


def test_wrote_the_crashing_line_from_the_diff_alone() -> None:
    patch = f"@@ -3,2 +3,2 @@\n   const entitlements = await getEntitlements(userId);\n-  return [];\n+{CRASH_LINE}\n"
    change = commit("line", "render", FileChange("src/features/PaidFeatures.js", "M", None, 1, 1, patch))
    ranking = rank_suspects(ERROR, [*COMMITS, change], None)
    assert ranking.suspects[0].sha == "line"
    assert ranking.suspects[0].evidence[0].startswith("Wrote the crashing line of src/features/PaidFeatures.js")


def test_combine_counts_only_the_stronger_locality_feature() -> None:
    both = combine({"crash_line": 1.0, "frame_function": 1.0})
    assert both == WEIGHTS["crash_line"]
    assert combine({"frame_function": 1.0, "frame_file": 1.0}) == WEIGHTS["frame_function"] + WEIGHTS["frame_file"]


def test_no_in_app_frames_is_reported() -> None:
    error = ErrorContext("Error", "boom", "", [{"filename": "node_modules/x/index.js"}])
    ranking = rank_suspects(error, COMMITS, None)
    assert "stack trace evidence (no in-app frames)" in ranking.unavailable
    assert len(ranking.suspects) == 3
