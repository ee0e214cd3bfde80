from __future__ import annotations

import time

from detector.blame.graph import (
    SnapshotIndexCache,
    build_import_graph,
    importers_within,
    imports_within,
    is_barrel,
    names_along,
)
from detector.blame.model import MemorySnapshot

FILES = {
    "tsconfig.json": '{"compilerOptions": {"baseUrl": ".", "paths": {"@/*": ["src/*"]}}}',
    "src/api/entitlements.ts": "export async function getEntitlements() { return []; }\n",
    "src/api/index.ts": "export * from './entitlements';\n",
    "src/hooks/useEntitlements.ts": "import { getEntitlements } from '@/api';\nexport const useE = () => 1;\n",
    "src/features/Paid.tsx": "import { useE } from '../hooks/useEntitlements';\n",
    "src/features/Direct.tsx": "import { getEntitlements } from '@/api/entitlements';\n",
    "src/main.ts": "import './features/Paid';\n",
}


def test_importers_within_two_hops() -> None:
    graph = build_import_graph(FILES)
    assert importers_within(graph, "src/api/entitlements.ts", hops=1) == {
        "src/api/index.ts": 1,
        "src/features/Direct.tsx": 1,
    }
    assert importers_within(graph, "src/api/entitlements.ts", hops=2) == {
        "src/api/index.ts": 1,
        "src/features/Direct.tsx": 1,
        "src/hooks/useEntitlements.ts": 2,
    }


def test_imports_within_treats_barrels_as_pass_through_and_carries_names() -> None:
    graph = build_import_graph(FILES)
    assert is_barrel(graph, "src/api/index.ts")
    reach = imports_within(graph, "src/hooks/useEntitlements.ts", hops=1)
    chain = reach["src/api/entitlements.ts"]
    assert chain == ["src/hooks/useEntitlements.ts", "src/api/index.ts", "src/api/entitlements.ts"]
    assert names_along(graph, chain) == frozenset({"getEntitlements"})
    two = imports_within(graph, "src/features/Paid.tsx", hops=2)
    assert "src/api/entitlements.ts" in two


def test_cache_builds_once_per_key_and_is_bounded() -> None:
    calls = []

    class Counting(MemorySnapshot):
        def list_files(self) -> list[str]:
            calls.append(self.sha)
            return super().list_files()

    cache = SnapshotIndexCache(maxsize=2)
    a = Counting(FILES, sha="a")
    assert cache.get(a) is cache.get(Counting(FILES, sha="a"))
    cache.get(Counting(FILES, sha="b"))
    cache.get(Counting(FILES, sha="c"))
    assert calls == ["a", "b", "c"] and len(cache) == 2


def test_building_two_thousand_files_is_fast() -> None:
    files = {
        f"src/m{i // 50}/f{i}.ts": f"import {{ x{i - 1} }} from '../m{(i - 1) // 50}/f{i - 1}';\n"
        f"export const x{i} = 1;\n"
        for i in range(1, 2001)
    }
    started = time.perf_counter()
    graph = build_import_graph(files)
    assert time.perf_counter() - started < 2.0
    assert importers_within(graph, "src/m0/f1.ts", hops=2) == {"src/m0/f2.ts": 1, "src/m0/f3.ts": 2}
