from __future__ import annotations

from detector.blame.imports import Resolver, parse_imports, parse_path_aliases

SOURCE = """
import { getEntitlements } from "../api/entitlements";
import Panel, { a as b,
  type C } from '@/components/Panel';
import * as ns from "./ns";
import "./side.css";
export * from './all';
export { q, r as s } from "./qr";
const { u, v: w } = require('./uv');
const lazy = () => import('./lazy');
// import { dead } from './dead';
/* import { dead2 } from './dead2'; */
"""


def test_parse_imports_covers_every_form_and_skips_comments() -> None:
    found = {s.specifier: (s.names, s.reexport) for s in parse_imports(SOURCE)}
    assert found["../api/entitlements"] == (frozenset({"getEntitlements"}), False)
    assert found["@/components/Panel"][0] == frozenset({"default", "Panel", "a", "C"})
    assert found["./ns"][0] == frozenset({"*", "ns"})
    assert found["./side.css"][0] == frozenset()
    assert found["./all"] == (frozenset({"*"}), True)
    assert found["./qr"] == (frozenset({"q", "r"}), True)
    assert found["./uv"][0] == frozenset({"u", "v"})
    assert found["./lazy"][0] == frozenset({"*"})
    assert "./dead" not in found and "./dead2" not in found


def test_tsconfig_aliases_with_comments_and_trailing_commas() -> None:
    config = '{\n // aliases\n "compilerOptions": { "baseUrl": "./", "paths": { "@/*": ["src/*"], }, },\n}'
    aliases = parse_path_aliases("tsconfig.json", config)
    assert aliases is not None and aliases.base_url == ""
    files = ["src/api/x.ts", "src/api/index.ts", "src/lib/http.js", "src/features/P.tsx", "src/y.ts"]
    resolver = Resolver(files, {"": aliases})
    assert resolver.resolve("src/features/P.tsx", "@/api/x") == "src/api/x.ts"
    assert resolver.resolve("src/features/P.tsx", "@/api") == "src/api/index.ts"
    assert resolver.resolve("src/features/P.tsx", "../lib/http") == "src/lib/http.js"
    assert resolver.resolve("src/features/P.tsx", "../y.js") == "src/y.ts"
    assert resolver.resolve("src/features/P.tsx", "src/api/x") == "src/api/x.ts"  # via baseUrl
    assert resolver.resolve("src/features/P.tsx", "react") is None


def test_nested_config_applies_to_its_folder_only() -> None:
    web = parse_path_aliases("apps/web/jsconfig.json", '{"compilerOptions": {"paths": {"~lib/*": ["lib/*"]}}}')
    assert web is not None
    resolver = Resolver(["apps/web/lib/a.js", "lib/a.js"], {"apps/web": web})
    assert resolver.resolve("apps/web/src/x.js", "~lib/a") == "apps/web/lib/a.js"
    assert resolver.resolve("other/x.js", "~lib/a") is None


def test_at_alias_falls_back_to_src_without_config() -> None:
    assert Resolver(["src/api/x.js"], {}).resolve("src/a.js", "@/api/x") == "src/api/x.js"
