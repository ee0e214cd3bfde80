from __future__ import annotations

from detector.blame.paths import Frame
from detector.blame.symbols import (
    changed_symbols,
    crash_symbols,
    declared_name,
    error_symbols,
    identifier_stats,
    message_identifiers,
)

PATCH = """@@ -1,3 +1,4 @@
 export async function getEntitlements(userId) {
-  return [{ feature: "export-pdf", plan: "pro" }];
+  // now an object
+  return { items: [{ feature: "export-pdf", plan: "pro" }], userId };
 }
@@ -10,3 +11,3 @@ export function formatPlan(plan) {
-  return plan.name;
+  return plan.title;
 }
"""
PAID = """import { getEntitlements } from "../api/entitlements";
export async function renderPaidFeatures(userId) {
  const entitlements = await getEntitlements(userId);
  return entitlements.map((e) => `<li>${e.feature}</li>`).join("");
}
"""


def test_changed_symbols_from_hunks() -> None:
    diff = changed_symbols(PATCH)
    assert diff.functions == frozenset({"getEntitlements", "formatPlan"})
    assert {"items", "userId", "feature"} <= diff.added
    assert "name" in diff.removed and "title" in diff.added
    assert diff.added_lines[3] == 'return { items: [{ feature: "export-pdf", plan: "pro" }], userId };'
    assert diff.added_lines[11] == "return plan.title;"


def test_renamed_export_shows_in_removed_and_exports() -> None:
    diff = changed_symbols("@@ -1,2 +1,2 @@\n-export function getUser(id) {\n+export function loadUser(id) {\n")
    assert "getUser" in diff.removed and {"getUser", "loadUser"} <= diff.exports


def test_declared_name_forms() -> None:
    assert declared_name("export default async function load() {") == "load"
    assert declared_name("const useThing = (a) => a") == "useThing"
    assert declared_name("  render() {") == "render"
    assert declared_name("  if (x) {") is None


def test_message_identifiers_of_browser_messages() -> None:
    assert message_identifiers("TypeError", "entitlements.map is not a function") == {"entitlements", "map"}
    assert message_identifiers("TypeError", "(0 , _api__WEBPACK_IMPORTED_MODULE_0__.getUser) is not a function") == {
        "getUser"
    }
    assert message_identifiers("TypeError", "Cannot read properties of undefined (reading 'region')") == {"region"}
    assert message_identifiers("Error", "Failed to fetch /api/billing 503") == set()


def test_error_symbols_uses_top_frames() -> None:
    frame = Frame("src/P.js", "Module.renderPaidFeatures", 4, "return entitlements.map((e) => e)", 0)
    symbols = error_symbols("TypeError", "entitlements.map is not a function", [frame])
    assert symbols.functions == frozenset({"renderPaidFeatures"})
    assert "entitlements" in symbols.message and "map" in symbols.context


def test_crash_symbols_find_where_the_value_came_from() -> None:
    frame = Frame("src/P.js", "renderPaidFeatures", 4, "return entitlements.map((e) => e);", 0)
    found = crash_symbols("entitlements.map is not a function", frame, PAID)
    assert set(found) == {"getEntitlements"}
    assert "comes from `getEntitlements`" in found["getEntitlements"]
    deref = Frame("src/P.js", "render", 3, "const headline = rows[0].name.trim();", 0)
    text = "function render() {\n  const { rows } = await useRows(1);\n  const headline = rows[0].name.trim();\n"
    assert set(crash_symbols("Cannot read properties of undefined (reading 'name')", deref, text)) == {"useRows"}
    assert set(crash_symbols("(0 , r.getX) is not a function", frame, None)) == {"getX"}


def test_idf_weighs_rare_names_more() -> None:
    stats = identifier_stats(["const map = a.map(x)", "b.map(y)", "getEntitlements()"])
    assert stats.idf("getEntitlements") > stats.idf("map")
    assert stats.idf("neverSeen") > stats.idf("getEntitlements")
