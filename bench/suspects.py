"""Benchmark for suspect-commit ranking on real git repositories of generated frontend apps.

    python -m bench.suspects [--quick] [--cases N] [--seed S]

Each case builds a small app (layouts: flat, feature folders, tsconfig aliases, barrel index files, hooks
between features and the API), commits it, then makes a deploy of 1-15 commits of which exactly one
introduces a bug, the others being distractors (commits touching the crashing file, the same API module,
styles, docs, tests, sweeping refactors). The error is derived from the deployed code the way a
source-mapped browser event carries it (type, message, frames with file, line, function, context line).

Printed: top-1 / top-3 accuracy of `rank_suspects` (with the repository, and with paths and diffs only)
and of the frame-file baseline (Sentry's heuristic), per bug kind; the seed incident on its own; and the
time to rank a 50-commit deploy on a 2,000-file repository once its import graph is built.
With --quick, fewer cases, and the last line printed is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import posixpath
import random
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from detector.blame.baseline import frame_file_baseline
from detector.blame.graph import SnapshotIndexCache
from detector.blame.model import ErrorContext
from detector.blame.rank import rank_suspects
from detector.blame.snapshot import GitSnapshot
from detector.sources.git_repo import GitRepo

RESOURCES = [
    "entitlements", "invoices", "projects", "members", "teams", "reports", "alerts", "plans", "coupons",
    "orders", "widgets", "comments", "payments", "shipments", "tickets", "dashboards", "contracts",
    "licenses", "webhooks", "tokens", "channels", "messages", "schedules", "budgets",
]  # fmt: skip
LAYOUTS = ["flat", "feature", "alias", "barrel", "hooks"]
METHODS = ["map", "filter", "forEach", "reduce", "find", "some"]
BUG_KINDS = ["shape", "throws", "rename", "consumer"]
GIT_ENV = {
    "GIT_AUTHOR_NAME": "Bench",
    "GIT_AUTHOR_EMAIL": "bench@example.com",
    "GIT_COMMITTER_NAME": "Bench",
    "GIT_COMMITTER_EMAIL": "bench@example.com",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_CONFIG_NOSYSTEM": "1",
}


def cap(name: str) -> str:
    return name[:1].upper() + name[1:]


# -- the app model -----------------------------------------------------------------------------------


@dataclass
class Module:
    """A source file as import lines plus named top-level blocks (functions), rendered in order."""

    path: str
    imports: list[str] = field(default_factory=list)
    blocks: dict[str, list[str]] = field(default_factory=dict)

    def render(self) -> str:
        parts = ["\n".join(self.imports)] if self.imports else []
        parts += ["\n".join(lines) for lines in self.blocks.values()]
        return "\n\n".join(parts) + "\n"


@dataclass
class App:
    layout: str
    ext: str
    modules: dict[str, Module] = field(default_factory=dict)
    other_files: dict[str, str] = field(default_factory=dict)
    resources: list[str] = field(default_factory=list)
    var: dict[str, str] = field(default_factory=dict)  # resource → local variable name in its panel
    method: dict[str, str] = field(default_factory=dict)

    def files(self) -> dict[str, str]:
        out = dict(self.other_files)
        out.update({m.path: m.render() for m in self.modules.values()})
        return out

    # paths
    def provider(self, res: str) -> str:
        return f"src/{res}Api{self.ext}" if self.layout == "flat" else f"src/api/{res}{self.ext}"

    def consumer(self, res: str) -> str:
        if self.layout == "flat":
            return f"src/{cap(res)}Panel{self.ext}x"
        return f"src/features/{res}/{cap(res)}Panel{self.ext}x"

    def hook(self, res: str) -> str:
        return f"src/hooks/use{cap(res)}{self.ext}"

    def lib(self, name: str) -> str:
        return f"src/lib/{name}{self.ext}"

    def spec(self, importer: str, target: str, *, barrel_ok: bool = True) -> str:
        """The specifier `importer` uses for `target`, as the layout's developers would write it."""
        stem = posixpath.splitext(target)[0]
        if self.layout == "barrel" and barrel_ok and target.startswith("src/api/"):
            stem = "src/api"
        if self.layout in ("alias", "barrel") and stem.startswith("src/"):
            return "@/" + stem[len("src/") :]
        rel = posixpath.relpath(stem, posixpath.dirname(importer))
        return rel if rel.startswith(".") else "./" + rel


def build_app(rng: random.Random, layout: str, n_resources: int, n_fillers: int) -> App:
    ext = ".ts" if layout in ("alias", "barrel") else ".js"
    app = App(layout=layout, ext=ext)
    app.resources = rng.sample(RESOURCES, n_resources)
    http = Module(app.lib("http"))
    http.blocks["request"] = [
        "export async function request(url) {",
        "  const response = await fetch(url);",
        "  return response.json();",
        "}",
    ]
    analytics = Module(app.lib("analytics"))
    analytics.blocks["logEvent"] = [
        "export function logEvent(name, data) {",
        "  window.dataLayer?.push({ event: name, ...data });",
        "}",
    ]
    app.modules = {"http": http, "analytics": analytics}
    for res in app.resources:
        p = Module(app.provider(res), [f'import {{ request }} from "{app.spec(app.provider(res), http.path)}";'])
        p.blocks[f"get{cap(res)}"] = [
            f"export async function get{cap(res)}(userId) {{",
            f"  const response = await request(`/api/{res}?user=${{userId}}`);",
            f"  return response.{res};",
            "}",
        ]
        p.blocks[f"format{cap(res)}Label"] = [
            f"export function format{cap(res)}Label(item) {{",
            "  return `${item.name} (${item.status})`;",
            "}",
        ]
        p.blocks[f"count{cap(res)}"] = [
            f"export function count{cap(res)}(list) {{",
            "  return list.length;",
            "}",
        ]
        app.modules[f"p:{res}"] = p
        var = rng.choice([res, "items", "list", "rows", "data", res[:-1] + "List"])
        method = rng.choice(METHODS)
        app.var[res], app.method[res] = var, method
        c = Module(app.consumer(res))
        source = f"use{cap(res)}" if layout == "hooks" else f"get{cap(res)}"
        if layout == "hooks":
            h = Module(app.hook(res), [f'import {{ get{cap(res)} }} from "{app.spec(app.hook(res), p.path)}";'])
            h.blocks[f"use{cap(res)}"] = [
                f"export async function use{cap(res)}(userId) {{",
                f"  const result = await get{cap(res)}(userId);",
                "  return result;",
                "}",
            ]
            app.modules[f"h:{res}"] = h
            c.imports.append(f'import {{ use{cap(res)} }} from "{app.spec(c.path, h.path)}";')
            c.imports.append(f'import {{ format{cap(res)}Label }} from "{app.spec(c.path, p.path)}";')
        else:
            c.imports.append(f'import {{ get{cap(res)}, format{cap(res)}Label }} from "{app.spec(c.path, p.path)}";')
        c.imports.append(f'import {{ logEvent }} from "{app.spec(c.path, analytics.path)}";')
        c.blocks[f"render{cap(res)}Panel"] = [
            f"export async function render{cap(res)}Panel(userId) {{",
            f"  const {var} = await {source}(userId);",
            f'  logEvent("{res}_panel_viewed");',
            f"  return {var}.{method}((item) => `<li>${{format{cap(res)}Label(item)}}</li>`);",
            "}",
        ]
        c.blocks[f"{res}PanelTitle"] = [
            f"export function {res}PanelTitle(count) {{",
            f"  return `{cap(res)} (${{count}})`;",
            "}",
        ]
        app.modules[f"c:{res}"] = c
    main = Module("src/main" + ext)
    for res in app.resources:
        c = app.modules[f"c:{res}"]
        main.imports.append(f'import {{ render{cap(res)}Panel }} from "{app.spec(main.path, c.path)}";')
    main.blocks["run"] = (
        ["export async function run(userId) {"]
        + [
            f"  document.getElementById('{res}').innerHTML = await render{cap(res)}Panel(userId);"
            for res in app.resources
        ]
        + ["}"]
    )
    app.modules["main"] = main
    for i in range(n_fillers):
        f = Module(f"src/components/widget{i}{ext}x")
        targets = rng.sample([m.path for m in app.modules.values() if m.path != main.path], 2)
        for t in targets:
            f.imports.append(f'import * as dep{len(f.imports)} from "{app.spec(f.path, t)}";')
        f.blocks[f"Widget{i}"] = [
            f"export function Widget{i}(props) {{",
            f"  const value{i} = dep0 && props.value{i};",
            f'  return `<div class="widget{i}">${{value{i}}}</div>`;',
            "}",
        ]
        app.modules[f"w:{i}"] = f
    if layout == "barrel":
        index = Module(f"src/api/index{ext}")
        index.imports = [f'export * from "./{res}";' for res in app.resources]
        app.modules["index"] = index
    if layout in ("alias", "barrel"):
        app.other_files["tsconfig.json"] = (
            '{\n  // path aliases\n  "compilerOptions": {\n    "baseUrl": ".",\n'
            '    "paths": { "@/*": ["src/*"] },\n  },\n}\n'
        )
    for res in app.resources:
        app.other_files[f"src/styles/{res}.css"] = f".{res}-panel {{ color: #333; }}\n"
        app.other_files[f"src/api/__tests__/{res}.test.js"] = f"test('{res}', () => {{ expect(1).toBe(1); }});\n"
    app.other_files["README.md"] = "# App\n\nGenerated for the suspects benchmark.\n"
    app.other_files["package.json"] = '{ "name": "app", "version": "1.0.0" }\n'
    return app


# -- git ----------------------------------------------------------------------------------------------


class Repo:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.clock = 1_760_000_000
        path.mkdir(parents=True, exist_ok=True)
        self.git("init", "-q", "-b", "main")

    def git(self, *args: str) -> str:
        env = {**os.environ, **GIT_ENV}
        env["GIT_AUTHOR_DATE"] = env["GIT_COMMITTER_DATE"] = f"{self.clock} +0000"
        return subprocess.run(
            ["git", "-C", str(self.path), *args], env=env, check=True, capture_output=True, text=True
        ).stdout.strip()

    def commit(self, files: dict[str, str], message: str) -> str:
        for path, text in files.items():
            target = self.path / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
        self.clock += 600
        self.git("add", "-A")
        self.git("commit", "-q", "--allow-empty", "-m", message)
        return self.git("rev-parse", "HEAD")


# -- edits: each returns the commit message after mutating the app ----------------------------------


Edit = Callable[[App, random.Random], str]


def edit_consumer_title(res: str) -> Edit:
    def apply(app: App, rng: random.Random) -> str:
        block = app.modules[f"c:{res}"].blocks[f"{res}PanelTitle"]
        block.insert(1, f"  if (count === {rng.randint(0, 9)}) return `No {res} yet`;")
        return f"{cap(res)}Panel: friendlier empty title"

    return apply


def edit_consumer_crash_line(res: str) -> Edit:
    def apply(app: App, rng: random.Random) -> str:
        block = app.modules[f"c:{res}"].blocks[f"render{cap(res)}Panel"]
        block[-2] = block[-2].replace("<li>", '<li class="row">', 1)
        return f"{cap(res)}Panel: style rows"

    return apply


def edit_provider_format(res: str) -> Edit:
    def apply(app: App, rng: random.Random) -> str:
        block = app.modules[f"p:{res}"].blocks[f"format{cap(res)}Label"]
        block[1] = "  return `${item.name} · ${item.status ?? 'unknown'}`;"
        return f"{res}: show unknown status"

    return apply


def edit_css(res: str) -> Edit:
    def apply(app: App, rng: random.Random) -> str:
        app.other_files[f"src/styles/{res}.css"] += f".{res}-panel li {{ padding: {rng.randint(1, 9)}px; }}\n"
        return f"style: spacing in the {res} panel"

    return apply


def edit_docs(app: App, rng: random.Random) -> str:
    app.other_files["README.md"] += f"\nRelease note {rng.randint(1, 999)}.\n"
    return "docs: release notes"


def edit_test(res: str) -> Edit:
    def apply(app: App, rng: random.Random) -> str:
        app.other_files[f"src/api/__tests__/{res}.test.js"] += f"test('{res} {rng.randint(1, 99)}', () => {{}});\n"
        return f"test: more {res} cases"

    return apply


def edit_refactor(app: App, rng: random.Random) -> str:
    """A sweeping rename touching every consumer (including the crashing one) and the analytics module."""
    old = "logEvent" if "logEvent" in app.modules["analytics"].blocks else "trackEvent"
    new = "trackEvent" if old == "logEvent" else "logEvent"
    analytics = app.modules["analytics"]
    analytics.blocks = {new: [line.replace(old, new) for line in analytics.blocks[old]]}
    for key, module in app.modules.items():
        if key.startswith("c:"):
            module.imports = [line.replace(old, new) for line in module.imports]
            module.blocks = {k: [line.replace(old, new) for line in v] for k, v in module.blocks.items()}
    return f"refactor: rename {old} to {new} everywhere"


def edit_http(app: App, rng: random.Random) -> str:
    app.modules["http"].blocks["request"].insert(2, "  if (response.status === 204) return {};")
    return "http: handle 204 responses"


def edit_filler(app: App, rng: random.Random) -> str:
    widgets = [k for k in app.modules if k.startswith("w:")]
    key = rng.choice(widgets)
    block = next(iter(app.modules[key].blocks.values()))
    block.insert(1, f"  const ratio = {rng.random():.2f};")
    return f"widgets: tweak {key[2:]}"


def edit_other_provider(res: str) -> Edit:
    def apply(app: App, rng: random.Random) -> str:
        block = app.modules[f"p:{res}"].blocks[f"count{cap(res)}"]
        block[1] = "  return list ? list.length : 0;"
        return f"{res}: count tolerates null"

    return apply


# -- bugs: mutate the app and return (message, error-deriving function) ------------------------------


@dataclass
class Bug:
    kind: str
    res: str
    message: str
    derive: Callable[[App, dict[str, str]], ErrorContext]


def frame(app: App, files: dict[str, str], path: str, function: str, needle: str, style: str) -> dict[str, Any]:
    """A frame as a source-mapped browser event carries it, pointing at the first line containing needle
    inside `function`."""
    lines = files[path].split("\n")
    start = next(i for i, line in enumerate(lines) if f"function {function}(" in line)
    lineno = next(i for i in range(start, len(lines)) if needle in lines[i]) + 1
    filename = {"relative": f"../{path}", "webpack": f"webpack:///./{path}", "plain": f"./{path}"}[style]
    return {
        "filename": filename,
        "abs_path": "https://app.example.com/assets/index-3f9a.js",
        "function": function,
        "lineno": lineno,
        "colno": 12,
        "context_line": lines[lineno - 1],
        "in_app": True,
    }


def make_bug(kind: str, res: str, app: App, rng: random.Random, style: str) -> Bug:
    R = cap(res)
    p = app.modules[f"p:{res}"]
    var, method = app.var[res], app.method[res]
    main_frame = lambda a, f: frame(a, f, a.modules["main"].path, "run", f"render{R}Panel(", style)  # noqa: E731

    if kind == "shape":
        key = rng.choice(["items", "results", "data", "records"])
        p.blocks[f"get{R}"][2] = f"  return {{ {key}: response.{res}, total: response.count }};"

        def derive(a: App, f: dict[str, str]) -> ErrorContext:
            top = frame(a, f, a.consumer(res), f"render{R}Panel", f"{var}.{method}(", style)
            return ErrorContext("TypeError", f"{var}.{method} is not a function", "", [main_frame(a, f), top])

        return Bug(kind, res, f"{res}: return {key} with the total count", derive)

    if kind == "throws":
        variant = rng.choice(["deref", "throw"])
        block = p.blocks[f"get{R}"]
        if variant == "deref":
            prop = rng.choice(["region", "locale", "currency", "tier"])
            block.insert(2, f"  const {prop} = response.meta.settings.{prop};")
            needle, value = f"response.meta.settings.{prop}", f"Cannot read properties of undefined (reading '{prop}')"
        else:
            block.insert(2, f'  if (!response.ok) throw new Error("Failed to load {res}");')
            needle, value = "throw new Error", f"Failed to load {res}"
        source = f"use{R}" if app.layout == "hooks" else f"get{R}"

        def derive(a: App, f: dict[str, str]) -> ErrorContext:
            frames = [main_frame(a, f)]
            frames.append(frame(a, f, a.consumer(res), f"render{R}Panel", f"await {source}(", style))
            if a.layout == "hooks":
                frames.append(frame(a, f, a.hook(res), f"use{R}", f"await get{R}(", style))
            frames.append(frame(a, f, a.provider(res), f"get{R}", needle, style))
            etype = "TypeError" if variant == "deref" else "Error"
            return ErrorContext(etype, value, "", frames)

        return Bug(kind, res, f"{res}: read regional settings", derive)

    if kind == "rename":
        block = p.blocks.pop(f"get{R}")
        p.blocks = {f"load{R}": [block[0].replace(f"get{R}", f"load{R}"), *block[1:]], **p.blocks}
        style_msg = rng.choice(["plain", "webpack", "esbuild"])

        def derive(a: App, f: dict[str, str]) -> ErrorContext:
            mod = f"_api_{res}__WEBPACK_IMPORTED_MODULE_0__"
            value = {
                "plain": f"get{R} is not a function",
                "webpack": f"(0 , {mod}.get{R}) is not a function",
                "esbuild": f"(0 , r.get{R}) is not a function",
            }[style_msg]
            frames = [main_frame(a, f)]
            if a.layout == "hooks":
                frames.append(frame(a, f, a.consumer(res), f"render{R}Panel", f"await use{R}(", style))
                frames.append(frame(a, f, a.hook(res), f"use{R}", f"await get{R}(", style))
            else:
                frames.append(frame(a, f, a.consumer(res), f"render{R}Panel", f"await get{R}(", style))
            return ErrorContext("TypeError", value, "", frames)

        return Bug(kind, res, f"{res}: rename get{R} to load{R}", derive)

    # "consumer": the bug is written into the crashing file itself.
    block = app.modules[f"c:{res}"].blocks[f"render{R}Panel"]
    prop = rng.choice(["name", "owner", "label"])
    block.insert(2, f"  const headline = {var}[0].{prop}.trim();")

    def derive(a: App, f: dict[str, str]) -> ErrorContext:
        top = frame(a, f, a.consumer(res), f"render{R}Panel", "const headline", style)
        value = f"Cannot read properties of undefined (reading '{prop}')"
        return ErrorContext("TypeError", value, "", [main_frame(a, f), top])

    return Bug(kind, res, f"{cap(res)}Panel: show headline", derive)


def distractor(rng: random.Random, app: App, res: str, kind: str) -> Edit:
    others = [r for r in app.resources if r != res]
    choices: list[tuple[float, Edit]] = [
        (3.0, edit_consumer_title(res)),
        (0.6 if kind == "shape" else 0.0, edit_consumer_crash_line(res)),
        (1.5, edit_provider_format(res)),
        (1.0, edit_other_provider(res)),
        (1.5, edit_css(rng.choice(app.resources))),
        (0.7, edit_docs),
        (1.0, edit_test(res)),
        (0.5, edit_refactor),
        (0.7, edit_http),
        (1.5, edit_filler),
        (1.5, edit_consumer_title(rng.choice(others)) if others else edit_filler),
        (1.0, edit_provider_format(rng.choice(others)) if others else edit_filler),
    ]
    weights = [w for w, _ in choices]
    return rng.choices([e for _, e in choices], weights=weights)[0]


# -- cases ----------------------------------------------------------------------------------------------


@dataclass
class Case:
    name: str
    kind: str
    layout: str
    repo: Path
    base: str
    head: str
    bug_sha: str
    error: ErrorContext


def build_case(root: Path, index: int, rng: random.Random) -> Case:
    layout = LAYOUTS[index % len(LAYOUTS)]
    kind = BUG_KINDS[(index // len(LAYOUTS)) % len(BUG_KINDS)]
    app = build_app(rng, layout, n_resources=rng.randint(3, 8), n_fillers=rng.randint(5, 40))
    repo = Repo(root / f"case{index}")
    base = repo.commit(app.files(), "initial app")
    res = rng.choice(app.resources)
    size = rng.randint(1, 15)
    bug_position = rng.randrange(size)
    style = rng.choice(["relative", "webpack", "plain"])
    bug: Bug | None = None
    bug_sha = ""
    for i in range(size):
        if i == bug_position:
            bug = make_bug(kind, res, app, rng, style)
            if rng.random() < 0.3:
                edit_test(res)(app, rng)  # bug commits often carry a test change too
            bug_sha = repo.commit(app.files(), bug.message)
        else:
            message = distractor(rng, app, res, kind)(app, rng)
            repo.commit(app.files(), message)
    assert bug is not None
    head = repo.git("rev-parse", "HEAD")
    error = bug.derive(app, app.files())
    return Case(f"case{index}-{kind}-{layout}", kind, layout, repo.path, base, head, bug_sha, error)


SEED_ENTITLEMENTS_V1 = """export async function getEntitlements(userId) {
  return [{ feature: "export-pdf", plan: "pro" }];
}
"""
SEED_ENTITLEMENTS_V2 = """export async function getEntitlements(userId) {
  // changed in 1.2.0: now returns an object instead of an array
  return { items: [{ feature: "export-pdf", plan: "pro" }], userId };
}
"""
SEED_PAID = """import { getEntitlements } from "../api/entitlements";
export async function renderPaidFeatures(userId) {
  const entitlements = await getEntitlements(userId);
  return entitlements.map((e) => `<li>${e.feature}</li>`).join("");
}
"""
SEED_MAIN = """import { renderPaidFeatures } from "./features/PaidFeatures";
window.run = async () => {
  document.body.innerHTML = await renderPaidFeatures("u-17");
};
"""


def build_seed_case(root: Path) -> Case:
    """The incident of the fixtures: getEntitlements now returns an object, PaidFeatures.js calls .map; a
    later innocent commit touches PaidFeatures.js, and a stylesheet commit rides along."""
    repo = Repo(root / "seed")
    files = {
        "src/api/entitlements.js": SEED_ENTITLEMENTS_V1,
        "src/features/PaidFeatures.js": SEED_PAID,
        "src/main.js": SEED_MAIN,
        "src/styles/app.css": "body { margin: 0; }\n",
    }
    base = repo.commit(files, "web 1.1.0")
    bug = repo.commit({"src/api/entitlements.js": SEED_ENTITLEMENTS_V2}, "entitlements: return items with user id")
    paid = SEED_PAID + "export const PAID_TITLE = 'Paid features';\n"
    repo.commit({"src/features/PaidFeatures.js": paid}, "PaidFeatures: add title constant")
    head = repo.commit({"src/styles/app.css": "body { margin: 0; padding: 0; }\n"}, "style: reset padding")
    frames = [
        {"filename": "../src/main.js", "function": "window.run", "lineno": 3, "in_app": True,
         "context_line": '  document.body.innerHTML = await renderPaidFeatures("u-17");'},
        {"filename": "../src/features/PaidFeatures.js", "function": "renderPaidFeatures", "lineno": 4,
         "in_app": True, "context_line": "  return entitlements.map((e) => `<li>${e.feature}</li>`).join(\"\");"},
    ]  # fmt: skip
    error = ErrorContext("TypeError", "entitlements.map is not a function", "", frames)
    return Case("seed-incident", "seed", "feature", repo.path, base, head, bug, error)


# -- evaluation ---------------------------------------------------------------------------------------


@dataclass
class Outcome:
    case: Case
    ours: int | None  # rank of the bug commit (1-based), None when absent
    paths_only: int | None
    baseline: int | None
    evidence: list[str]


def rank_of(shas: list[str], target: str) -> int | None:
    return shas.index(target) + 1 if target in shas else None


def evaluate(case: Case, cache: SnapshotIndexCache) -> Outcome:
    repo = GitRepo(case.repo)
    commits = repo.commits_between(case.base, case.head)
    snapshot = GitSnapshot(repo, case.head)
    ranking = rank_suspects(case.error, commits, snapshot, cache=cache)
    paths_only = rank_suspects(case.error, commits, None, cache=cache)
    shas = [s.sha for s in ranking.suspects]
    top_evidence = ranking.suspects[0].evidence if ranking.suspects else []
    return Outcome(
        case,
        rank_of(shas, case.bug_sha),
        rank_of([s.sha for s in paths_only.suspects], case.bug_sha),
        rank_of(frame_file_baseline(case.error, commits), case.bug_sha),
        top_evidence,
    )


def accuracy(ranks: list[int | None], k: int) -> float:
    return sum(1 for r in ranks if r is not None and r <= k) / len(ranks) if ranks else 0.0


def time_large_deploy(root: Path, rng: random.Random) -> dict[str, float]:
    """Rank a 50-commit deploy on a repository of about 2,000 files; report build and ranking times."""
    app = build_app(rng, "alias", n_resources=len(RESOURCES), n_fillers=10)
    files = app.files()
    for i in range(2000 - len(files)):
        folder = f"src/modules/m{i // 50}"
        target = rng.choice([m.path for m in app.modules.values()])
        spec = app.spec(f"{folder}/x.ts", target)
        files[f"{folder}/item{i}.ts"] = (
            f'import {{ request }} from "{spec}";\n'
            f"export async function loadItem{i}(id) {{\n  const r = await request(`/api/item{i}/${{id}}`);\n"
            f"  return r.value{i};\n}}\n"
        )
    repo = Repo(root / "large")
    base = repo.commit(files, "large app")
    res = app.resources[0]
    bug_at = rng.randrange(50)
    bug = None
    for i in range(50):
        if i == bug_at:
            bug = make_bug("shape", res, app, rng, "relative")
            repo.commit(app.files(), bug.message)
        else:
            extra = {}
            for _ in range(rng.randint(1, 5)):
                path = rng.choice(list(files))
                if path.endswith(".ts") and path.startswith("src/modules/"):
                    files[path] += f"export const touched{rng.randint(0, 10**6)} = {i};\n"
                    extra[path] = files[path]
            distractor(rng, app, res, "shape")(app, rng)
            repo.commit({**app.files(), **extra}, f"change {i}")
    assert bug is not None
    head = repo.git("rev-parse", "HEAD")
    error = bug.derive(app, app.files())
    git = GitRepo(repo.path)
    cache = SnapshotIndexCache()
    t0 = time.perf_counter()
    commits = git.commits_between(base, head)
    t1 = time.perf_counter()
    snapshot = GitSnapshot(git, head)
    rank_suspects(error, commits, snapshot, cache=cache)  # first call builds the import graph
    t2 = time.perf_counter()
    rank_suspects(error, commits, snapshot, cache=cache)
    t3 = time.perf_counter()
    return {
        "files": len(git.list_files(head)),
        "commits": len(commits),
        "read_commits_s": round(t1 - t0, 3),
        "first_rank_with_graph_build_s": round(t2 - t1, 3),
        "rank_after_build_s": round(t3 - t2, 3),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer cases; last line is JSON")
    parser.add_argument("--cases", type=int, default=None, help="number of generated cases")
    parser.add_argument("--seed", type=int, default=20261127)
    parser.add_argument("--verbose", action="store_true", help="print every miss with its evidence")
    args = parser.parse_args(argv)
    n_cases = args.cases or (40 if args.quick else 120)
    rng = random.Random(args.seed)
    cache = SnapshotIndexCache(maxsize=4)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-suspects-") as tmp:
        root = Path(tmp)
        seed = evaluate(build_seed_case(root), cache)
        outcomes = [evaluate(build_case(root, i, rng), cache) for i in range(n_cases)]
        timing = time_large_deploy(root, random.Random(args.seed + 1))
    elapsed = time.perf_counter() - started

    by_kind: dict[str, list[Outcome]] = defaultdict(list)
    for o in outcomes:
        by_kind[o.case.kind].append(o)
    print(f"suspect ranking benchmark: {n_cases} generated cases (seed {args.seed}) + the seed incident")
    header = ["ours@1", "ours@3", "paths@1", "paths@3", "base@1", "base@3"]
    print(f"{'cases':<22}{'n':>4}  " + "".join(f"{h:>9}" for h in header))
    layouts = sorted((f"layout {k}", v) for k, v in _group(outcomes, lambda o: o.case.layout).items())
    for name, group in [("all", outcomes), *sorted(by_kind.items()), *layouts]:
        ranks = ([o.ours for o in group], [o.paths_only for o in group], [o.baseline for o in group])
        figures = [accuracy(r, k) for r in ranks for k in (1, 3)]
        print(f"{name:<22}{len(group):>4}  " + "".join(f"{f:>9.0%}" for f in figures))
    print(f"seed incident: ours rank {seed.ours}, paths-only rank {seed.paths_only}, baseline rank {seed.baseline}")
    for sentence in seed.evidence:
        print(f"  - {sentence}")
    print(
        f"large deploy: {timing['commits']:.0f} commits on {timing['files']:.0f} files; read commits "
        f"{timing['read_commits_s']}s, first ranking (builds graph) {timing['first_rank_with_graph_build_s']}s, "
        f"ranking after build {timing['rank_after_build_s']}s"
    )
    if args.verbose:
        for o in outcomes:
            if o.ours != 1:
                print(f"miss {o.case.name}: ours {o.ours}, baseline {o.baseline}; top evidence: {o.evidence}")
    print(f"total time {elapsed:.1f}s")
    summary = {
        "cases": n_cases,
        "top1": round(accuracy([o.ours for o in outcomes], 1), 3),
        "top3": round(accuracy([o.ours for o in outcomes], 3), 3),
        "paths_only_top1": round(accuracy([o.paths_only for o in outcomes], 1), 3),
        "paths_only_top3": round(accuracy([o.paths_only for o in outcomes], 3), 3),
        "baseline_top1": round(accuracy([o.baseline for o in outcomes], 1), 3),
        "baseline_top3": round(accuracy([o.baseline for o in outcomes], 3), 3),
        "seed_rank": seed.ours,
        "seed_baseline_rank": seed.baseline,
        "rank_50_commits_2000_files_s": timing["rank_after_build_s"],
        "graph_build_s": timing["first_rank_with_graph_build_s"],
    }
    if args.quick:
        print(json.dumps(summary))
    return 0


def _group(outcomes: list[Outcome], key: Callable[[Outcome], str]) -> dict[str, list[Outcome]]:
    groups: dict[str, list[Outcome]] = defaultdict(list)
    for o in outcomes:
        groups[key(o)].append(o)
    return groups


if __name__ == "__main__":
    sys.exit(main())
