"""Slack message bodies (Block Kit) for anomaly alerts. Pure: values in, dicts out.

`alert_blocks` renders the first message of an alert, `update_blocks` the thread reply (or message
update) that follows when the anomaly grows or changes state. Both return `{"text": ..., "blocks":
[...]}`, ready to post to an incoming webhook or `chat.postMessage`.

Callers may rely on the output staying inside Slack's documented Block Kit limits whatever the input
(at most 50 blocks; header text 150 characters; section text 3000; at most 10 fields of 2000; at most
10 context elements; every text object non-empty) and on every user-provided string being escaped for
mrkdwn (`&`, `<`, `>`), so a title such as `TypeError: <x>.map is not a function` cannot turn into a
Slack link or mention. Long values are cut with an ellipsis, never in the middle of an escape or link.
Lengths are counted in UTF-16 code units, which is never less than the character count, so the limits
hold however Slack counts.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from detector.alerts.content import AlertContent, Segment, SuspectCommit, TestedSegment

MAX_BLOCKS = 50
HEADER_TEXT_MAX = 150
SECTION_TEXT_MAX = 3000
FIELDS_MAX = 10
FIELD_TEXT_MAX = 2000
CONTEXT_ELEMENTS_MAX = 10
CONTEXT_TEXT_MAX = 3000
FALLBACK_TEXT_MAX = 300

TOP_SUSPECTS = 3
# Enough to explain a score; the rest is one click away in the API.
EVIDENCE_PER_SUSPECT = 4
EVIDENCE_SENTENCE_MAX = 400
UNAVAILABLE_SHOWN = 5
LINK_URL_MAX = 1000
ELLIPSIS = "…"

KIND_LABELS = {
    "new_signature": "New error signature",
    "regression": "Regression of a known error",
    "release_error_rate": "Release error rate rose",
    "spike": "Error spike without a deploy",
}
HEADER_PREFIXES = {
    "open": ":rotating_light: ",
    "acknowledged": ":eyes: Acknowledged: ",
    "resolved": ":white_check_mark: Resolved: ",
    "muted": ":no_bell: Muted: ",
}
# Singular and plural names for segment columns, used in "all browsers".
COLUMN_NOUNS = {
    "browser": ("browser", "browsers"),
    "os": ("OS", "OSes"),
    "device": ("device", "devices"),
    "url": ("URL", "URLs"),
    "transaction": ("route", "routes"),
    "route": ("route", "routes"),
    "country": ("country", "countries"),
}


def alert_blocks(content: AlertContent) -> dict[str, Any]:
    """The first Slack message for an anomaly: what broke, its impact, the deploy, suspects, links."""
    blocks: list[dict[str, Any]] = [
        _header(HEADER_PREFIXES.get(content.state, "") + _title(content)),
        _section(_summary_lines(content)),
        _section([_deploy_line(content)]),
        {"type": "divider"},
    ]
    blocks.extend(_suspect_blocks(content))
    if content.evidence_unavailable:
        blocks.append(_context(_unavailable_elements(content.evidence_unavailable)))
    blocks.append(_section([_links_line(content)]))
    blocks.append(_context([_footer(content)]))
    return {"text": _fallback_text(content), "blocks": _cap_blocks(blocks)}


def update_blocks(content: AlertContent, *, previous: AlertContent | None = None) -> dict[str, Any]:
    """A short follow-up for the alert's thread: grown (compared with `previous` when given),
    acknowledged, muted or resolved."""
    title = _code(_title(content), 300)
    if content.state == "resolved":
        lines = [f":white_check_mark: *Resolved:* {title}", f"Final impact: {_impact(content)}"]
    elif content.state == "acknowledged":
        lines = [f":eyes: *Acknowledged:* {title}", f"Impact so far: {_impact(content)}"]
    elif content.state == "muted":
        lines = [f":no_bell: *Muted:* {title}", "No further updates will be posted for this anomaly."]
    elif content.ended_at is not None:
        lines = [
            f":white_check_mark: *Back to normal:* {title}",
            f"Back to its usual rate since {_clock(content.ended_at)}. Impact: {_impact(content)}",
        ]
    elif previous is not None:
        lines = [f":chart_with_upwards_trend: *Grown:* {title}", _growth(previous, content)]
    else:
        lines = [f":chart_with_upwards_trend: *Still open:* {title}", f"Impact: {_impact(content)}"]
    blocks = [_section(lines), _section([_links_line(content)]), _context([_footer(content)])]
    word = {"open": "Update"}.get(content.state, content.state.capitalize())
    if content.state == "open" and content.ended_at is not None:
        word = f"Back to its usual rate since {_clock(content.ended_at)}"
    text = f"{word}: {_escape(_title(content))}. {_impact(content)}"
    return {"text": _fit_escaped(text, FALLBACK_TEXT_MAX), "blocks": blocks}


def follow_up_blocks(content: AlertContent) -> dict[str, Any]:
    """A thread reply saying what a later release shows: still present (at what rate), or not seen since
    its deploy (a likely fix, which a person can resolve by)."""
    title = _code(_title(content), 300)
    follow = content.follow_up
    if follow is None:
        return update_blocks(content)
    release = _code(follow["release"], 100)
    if follow["status"] == "absent":
        line = (
            f":white_check_mark: *Not seen in* {release} since its deploy "
            f"({_count(follow['sessions'], 'session')}): a likely fix of {title}"
        )
        text = f"Not seen in {follow['release']} since its deploy ({follow['sessions']:,} sessions): a likely fix"
    else:
        same = "same rate" if follow["same_rate"] else "a different rate"
        rate = f"{_percent(follow['rate'])} of its sessions"
        if content.rate is not None:
            rate += f" against {_percent(content.rate)}"
        line = f":repeat: *Still present in* {release}, {same}: {title} ({rate})"
        text = f"Still present in {follow['release']}, {same} ({_percent(follow['rate'])} of its sessions)"
    blocks = [_section([line]), _section([_links_line(content)]), _context([_footer(content)])]
    return {"text": _fit_escaped(_escape(text), FALLBACK_TEXT_MAX), "blocks": blocks}


VERDICT_LINES = {
    "failing": (":no_entry: *Deploy verdict: failing*", "`detector deploy verify` exits 1; the gate answers 412"),
    "healthy": (":white_check_mark: *Deploy verdict: healthy*", "`detector deploy verify` exits 0"),
    "inconclusive": (":grey_question: *Deploy verdict: inconclusive*", "`detector deploy verify` exits 2"),
    "pending": (":hourglass: *Deploy verdict: pending*", "still watching"),
}


def verdict_blocks(content: AlertContent, verdict: dict[str, Any]) -> dict[str, Any]:
    """A thread reply giving the deploy's verdict (`status`, `reason`, `release`), for the alert of the
    anomaly that decided it: what CI and rollout controllers now do with the deploy."""
    status = str(verdict.get("status") or "pending")
    head, action = VERDICT_LINES.get(status, VERDICT_LINES["pending"])
    release = _code(str(verdict.get("release") or content.release or ""), 100)
    reason = _mrkdwn(_one_line(str(verdict.get("reason") or "")), 600)
    line = f"{head} for {release}: {reason} ({action})"
    text = f"Deploy verdict: {status} for {verdict.get('release') or content.release or ''}"
    blocks = [_section([line]), _section([_links_line(content)]), _context([_footer(content)])]
    return {"text": _fit_escaped(_escape(text), FALLBACK_TEXT_MAX), "blocks": blocks}


# ---- text pieces -----------------------------------------------------------------------------------


def _summary_lines(content: AlertContent) -> list[str]:
    where = [f"*{_mrkdwn(content.project_slug, 100)}*"]
    where += [_code(value, 100) for value in (content.environment, content.release) if value]
    lines = [f"*{KIND_LABELS.get(content.kind, content.kind)}* in " + " · ".join(where)]
    if content.culprit:
        lines.append(_code(_one_line(content.culprit), 300))
    lines.append(f"*Impact:* {_impact(content)}")
    if content.segments:
        lines.append(f"*Where:* {_segments(content.segments)}")
    return lines


def _impact(content: AlertContent) -> str:
    parts = [f"{_count(content.sessions_affected, 'session')} and {_count(content.users, 'user')} affected"]
    if content.tested_segment is not None:
        parts.append(_tested_segment(content.tested_segment))
    if content.rate is not None:
        rate = f"{_percent(content.rate)} of sessions"
        if content.baseline_rate is not None:
            rate += f" (baseline {_percent(content.baseline_rate)})"
        parts.append(rate)
    parts.append(_count(content.events, "event"))
    return " · ".join(parts)


def _tested_segment(tested: TestedSegment) -> str:
    """ "Safari 14 only: 4.0% of its sessions (46 of 1,142)"."""
    name = _mrkdwn(_one_line(tested["segment"]), 120)
    return (
        f"{name} only: {_percent(tested['rate'])} of its sessions "
        f"({tested['sessions_affected']:,} of {tested['sessions']:,})"
    )


def _growth(previous: AlertContent, current: AlertContent) -> str:
    parts = [
        f"{previous.sessions_affected:,} → {_count(current.sessions_affected, 'session')}",
        f"{previous.users:,} → {_count(current.users, 'user')}",
    ]
    if previous.rate is not None and current.rate is not None:
        rate = f"{_percent(previous.rate)} → {_percent(current.rate)} of sessions"
        if current.baseline_rate is not None:
            rate += f" (baseline {_percent(current.baseline_rate)})"
        parts.append(rate)
    parts.append(f"{previous.events:,} → {_count(current.events, 'event')}")
    return " · ".join(parts)


def _segments(segments: Sequence[Segment]) -> str:
    shown = []
    # Concentrations first ("92% on /billing"), then the columns with none ("all browsers").
    ordered = sorted(segments, key=lambda s: (s["value"] is None, -s["share"]))
    for segment in ordered[:5]:
        if segment["value"] is None:
            noun = COLUMN_NOUNS.get(segment["column"], (segment["column"], segment["column"] + "s"))[1]
            shown.append(f"all {_mrkdwn(noun, 60)}")
        else:
            shown.append(f"{_share(segment['share'])} on {_mrkdwn(_one_line(segment['value']), 120)}")
    return ", ".join(shown)


def _deploy_line(content: AlertContent) -> str:
    if content.deploy is None:
        if content.kind == "spike":
            return "*Deploy:* none in the window; this spike is not linked to a deploy."
        return "*Deploy:* not linked to a deploy."
    deploy = content.deploy
    line = (
        f"*Deploy:* {_code(deploy['release'], 200)} to {_code(deploy['environment'], 100)}"
        f" at {_time(deploy['deployed_at'])}"
    )
    if content.minutes_after_deploy is not None:
        line += f", caught {_minutes(content.minutes_after_deploy)} after the deploy"
    return line + "."


def _suspect_blocks(content: AlertContent) -> list[dict[str, Any]]:
    ranked = sorted(content.suspects, key=lambda s: s["score"], reverse=True)
    if not ranked:
        return [_section(["*Suspect commits:* none ranked for this anomaly."])]
    heading = "*Suspect commits*"
    if len(ranked) > TOP_SUSPECTS:
        heading += f" (top {TOP_SUSPECTS} of {len(ranked)}; all of them in the API)"
    blocks = [_section([heading])]
    for position, suspect in enumerate(ranked[:TOP_SUSPECTS], start=1):
        blocks.append(_section(_suspect_lines(position, suspect)))
    return blocks


def _suspect_lines(position: int, suspect: SuspectCommit) -> list[str]:
    message = suspect["message"].strip().splitlines()
    first_line = message[0] if message else "(no commit message)"
    lines = [
        f"*{position}.* {_code(suspect['sha'][:7], 20)} {_mrkdwn(first_line, 150)}"
        f" · {_mrkdwn(_one_line(suspect['author']), 100)} · score {suspect['score']:.2f}"
    ]
    evidence = [sentence for sentence in suspect["evidence"] if sentence.strip()]
    lines += [f"• {_mrkdwn(_one_line(s), EVIDENCE_SENTENCE_MAX)}" for s in evidence[:EVIDENCE_PER_SUSPECT]]
    if len(evidence) > EVIDENCE_PER_SUSPECT:
        lines.append(f"• …and {len(evidence) - EVIDENCE_PER_SUSPECT} more in the API")
    return lines


def _unavailable_elements(reasons: Sequence[str]) -> list[str]:
    shown = [f"Evidence unavailable: {_mrkdwn(_one_line(r), 300)}" for r in reasons[:UNAVAILABLE_SHOWN]]
    if len(reasons) > UNAVAILABLE_SHOWN:
        shown.append(f"…and {len(reasons) - UNAVAILABLE_SHOWN} more")
    return shown


def _links_line(content: AlertContent) -> str:
    links = [_link(content.links["api_url"], f"Anomaly {content.anomaly_id} in the API")]
    ui_url = content.links.get("ui_url")
    if ui_url:
        links.append(_link(ui_url, "Open in the UI"))
    # One per line: a line that cannot fit is dropped alone.
    return "\n".join(links)


def _footer(content: AlertContent) -> str:
    return (
        f"Anomaly {_code(str(content.anomaly_id), 60)} · detected {_time(content.detected_at)}"
        f" · state *{content.state}* · deploy-detector"
    )


def _clock(moment: datetime) -> str:
    """HH:MM UTC (a thread reply sits under its alert, which gives the date)."""
    moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%H:%M UTC")


def _fallback_text(content: AlertContent) -> str:
    label = KIND_LABELS.get(content.kind, content.kind)
    where = ", ".join(v for v in (content.project_slug, content.environment, content.release) if v)
    text = (
        f"{label}: {_escape(_title(content))} ({_escape(where)}), "
        f"{_count(content.sessions_affected, 'session')} affected"
    )
    if content.tested_segment is not None:
        tested = content.tested_segment
        text += f", {_escape(_one_line(tested['segment']))} only: {_percent(tested['rate'])} of its sessions"
    return _fit_escaped(text, FALLBACK_TEXT_MAX)


# ---- formatting helpers ----------------------------------------------------------------------------


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}" + ("" if n == 1 else "s")


def _percent(rate: float) -> str:
    if 0 < rate < 0.0005:
        return "<0.1%"
    return f"{rate * 100:.1f}%"


def _share(share: float) -> str:
    return f"{share * 100:.0f}%"


def _minutes(minutes: float) -> str:
    if minutes < 1:
        return f"{max(minutes, 0.0):.1f} min"
    if minutes < 120:
        return f"{round(minutes)} min"
    return f"{minutes / 60:.1f} h"


def _time(moment: datetime) -> str:
    # Naive datetimes are UTC throughout the detector.
    aware = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return aware.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _title(content: AlertContent) -> str:
    return _one_line(content.title) or "Unnamed error"


def _one_line(text: str) -> str:
    return " ".join(text.split())


def slack_len(text: str) -> int:
    """Length as UTF-16 code units: never less than the character count."""
    return len(text.encode("utf-16-le")) // 2


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _mrkdwn(raw: str, limit: int) -> str:
    """`raw` escaped for mrkdwn and cut to `limit`, the cut made before escaping so that no
    `&amp;` is ever split."""
    escaped = _escape(raw)
    if slack_len(escaped) <= limit:
        return escaped
    budget = limit - slack_len(ELLIPSIS)
    cut = min(len(raw), budget)
    while cut > 0:
        candidate = _escape(raw[:cut]).rstrip()
        overflow = slack_len(candidate) - budget
        if overflow <= 0:
            return candidate + ELLIPSIS
        cut -= overflow
    return ELLIPSIS


def _fit_escaped(text: str, limit: int) -> str:
    """Cut already-escaped text to `limit` without splitting an entity such as `&amp;`."""
    if slack_len(text) <= limit:
        return text
    cut = limit - slack_len(ELLIPSIS)
    while slack_len(text[:cut]) > cut:
        cut -= 1
    head = text[:cut]
    amp = head.rfind("&")
    if amp != -1 and ";" not in head[amp:]:
        head = head[:amp]
    return head.rstrip() + ELLIPSIS


def _plain(raw: str, limit: int) -> str:
    if slack_len(raw) <= limit:
        return raw
    cut = limit - slack_len(ELLIPSIS)
    while slack_len(raw[:cut]) > limit - slack_len(ELLIPSIS):
        cut -= 1
    return raw[:cut].rstrip() + ELLIPSIS


def _code(raw: str, limit: int) -> str:
    # A backtick inside would end the code span early.
    inner = _mrkdwn(raw.replace("`", "'"), limit - 2)
    return f"`{inner}`"


def _link(url: str, label: str) -> str:
    if not url.startswith(("https://", "http://")):
        return f"{_mrkdwn(label, 200)}: {_code(url, 300)}"
    # `|` and `>` end a Slack link; percent-encoding keeps the URL meaning the same.
    safe_url = _escape(quote(url, safe=":/?#[]@!$&'()*+,;=%~-._"))
    if slack_len(safe_url) > LINK_URL_MAX:
        # A cut URL would lead nowhere; say so instead.
        return f"{_mrkdwn(label, 200)}: (link too long to show)"
    return f"<{safe_url}|{_mrkdwn(label, 200)}>"


# ---- blocks ----------------------------------------------------------------------------------------


def _header(text: str) -> dict[str, Any]:
    plain = {"type": "plain_text", "text": _plain(text, HEADER_TEXT_MAX), "emoji": True}
    return {"type": "header", "text": plain}


def _section(lines: Iterable[str]) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": _join_within(lines, SECTION_TEXT_MAX)}}


def _context(elements: Sequence[str]) -> dict[str, Any]:
    if len(elements) > CONTEXT_ELEMENTS_MAX:
        hidden = len(elements) - CONTEXT_ELEMENTS_MAX + 1
        elements = [*elements[: CONTEXT_ELEMENTS_MAX - 1], f"…and {hidden} more"]
    return {
        "type": "context",
        "elements": [{"type": "mrkdwn", "text": _join_within([e], CONTEXT_TEXT_MAX)} for e in elements],
    }


def _join_within(lines: Iterable[str], limit: int) -> str:
    """Whole lines joined by newlines while they fit; a line that does not fit ends the text with an
    ellipsis instead of being cut inside its markup."""
    lines = list(lines)
    whole = "\n".join(lines)
    if slack_len(whole) <= limit:
        return whole or ELLIPSIS
    kept: list[str] = []
    used = 0
    budget = limit - slack_len("\n" + ELLIPSIS)
    for line in lines:
        extra = slack_len(line) + (1 if kept else 0)
        if used + extra > budget:
            break
        kept.append(line)
        used += extra
    return "\n".join([*kept, ELLIPSIS])


def _cap_blocks(blocks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    if len(blocks) <= MAX_BLOCKS:
        return blocks
    # Keep the start (what broke) and the last two blocks (links and footer).
    return [*blocks[: MAX_BLOCKS - 2], *blocks[-2:]]
