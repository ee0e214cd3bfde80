"""Slack mrkdwn left in the alert's text, rendered for a terminal: links, emoji codes, escapes."""

from __future__ import annotations

import re

EMOJI = {
    "rotating_light": "🚨",
    "warning": "⚠️",
    "chart_with_upwards_trend": "📈",
    "white_check_mark": "✅",
    "new": "🆕",
    "fire": "🔥",
    "mag": "🔍",
}
"""The codes the alert blocks use, as the characters a terminal shows; other codes are dropped."""

_LINK = re.compile(r"<((?:https?|mailto):[^|>\s]+)(?:\|([^>]*))?>")
_EMOJI_CODE = re.compile(r":([a-z][a-z0-9_+-]*):( ?)")  # a letter first, so 12:30:45 is left alone


def for_terminal(text: str) -> str:
    """`text` with Slack's `<url|label>` as `label (url)`, `<url>` as the url, `:code:` as its emoji (or
    nothing), `*bold*` / `_italic_` markers dropped (`render_alert_text` has undone the escapes)."""

    def link(match: re.Match[str]) -> str:
        url, label = match.group(1), match.group(2)
        return f"{label} ({url})" if label and label != url else url

    text = _LINK.sub(link, text)
    text = _EMOJI_CODE.sub(lambda m: EMOJI[m.group(1)] + m.group(2) if m.group(1) in EMOJI else "", text)
    text = re.sub(r"(?<![\w*])\*([^*\n]+)\*(?![\w*])", r"\1", text)
    text = re.sub(r"(?<![\w_])_([^_\n]+)_(?![\w_])", r"\1", text)
    lines = [line.rstrip() for line in text.splitlines()]
    for i in range(1, len(lines)):
        if lines[i] and set(lines[i]) == {"="}:  # a header's underline follows its (now shorter) title
            lines[i] = "=" * min(len(lines[i - 1]), 100)
    return "\n".join(lines) + "\n"
