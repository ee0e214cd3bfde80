"""`detector deploy verify`: a CI step that waits for the deploy's verdict over HTTP and exits with it.

Exit codes (the contract CI scripts rely on): 0 healthy, 1 failing, 2 inconclusive (or still pending at
--timeout), 3 the server cannot be reached, refuses the request, or the command is misused.
"""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Callable
from typing import Annotated, Any

import typer
from typer._click.exceptions import UsageError  # typer vendors click: its usage errors are these
from typer.core import TyperCommand

EXIT_HEALTHY, EXIT_FAILING, EXIT_INCONCLUSIVE, EXIT_UNUSABLE = 0, 1, 2, 3
EXIT_BY_STATUS = {"healthy": EXIT_HEALTHY, "failing": EXIT_FAILING, "inconclusive": EXIT_INCONCLUSIVE}
UNREACHABLE_TRIES = 3
"""Transport failures in a row before giving up (a restarting server is not a verdict)."""

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


class MisuseExitsThree(TyperCommand):
    """Usage errors (a missing or malformed option) exit 3, not click's 2, which means `inconclusive` here."""

    def parse_args(self, ctx: typer.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except UsageError as exc:
            exc.exit_code = EXIT_UNUSABLE
            raise


def parse_duration(text: str, *, name: str) -> float:
    """Seconds in `15m`, `90s`, `1h`, `500ms` or plain seconds."""
    match = _DURATION.match(text)
    if not match:
        raise typer.BadParameter(f"{text!r} is not a duration such as 15m, 90s or 1h", param_hint=name)
    return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]


def verify_command(
    project: Annotated[str, typer.Option("--project", help="Project slug.")],
    release: Annotated[str, typer.Option("--release", help="The release deployed, as the SDK reports it.")],
    environment: Annotated[str, typer.Option("--environment", "-e", help="Environment, e.g. production.")],
    url: Annotated[str, typer.Option("--url", envvar="DETECTOR_URL", help="The detector's URL.")],
    token: Annotated[str, typer.Option("--token", envvar="DETECTOR_TOKEN", help="API token.")],
    timeout: Annotated[
        str, typer.Option("--timeout", help="Give up waiting after this long (15m, 90s): exit 2 if still pending.")
    ] = "15m",
    interval: Annotated[str, typer.Option("--interval", help="Time between polls.")] = "30s",
    tolerance: Annotated[
        float | None, typer.Option("--tolerance", min=1.0, help="Relative margin (default: the project's, 1.25).")
    ] = None,
    min_sessions: Annotated[
        int | None, typer.Option("--min-sessions", min=1, help="Sessions needed for healthy (default: the project's).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the final verdict as one JSON object.")] = False,
) -> None:
    """Wait for the deploy's verdict and exit with it: 0 healthy, 1 failing, 2 inconclusive, 3 unusable."""
    from detector.remote import Remote, RemoteError

    try:
        wait = parse_duration(timeout, name="--timeout")
        every = max(parse_duration(interval, name="--interval"), 0.5)
    except UsageError as exc:
        exc.exit_code = EXIT_UNUSABLE
        raise
    remote = Remote(url, token, timeout=min(30.0, max(wait, 5.0)))

    def fetch() -> dict[str, Any]:
        return remote.release_verdict(
            project=project, release=release, environment=environment, tolerance=tolerance, min_sessions=min_sessions
        )

    try:
        verdict = poll(fetch, wait=wait, every=every, show=_progress)
    except RemoteError as exc:
        _say(f"error: {exc}")
        raise typer.Exit(EXIT_UNUSABLE) from exc
    if as_json:
        from detector.cli import echo_json

        echo_json(verdict)
    report(verdict)
    raise typer.Exit(EXIT_BY_STATUS.get(str(verdict.get("status")), EXIT_INCONCLUSIVE))


def poll(
    fetch: Callable[[], dict[str, Any]],
    *,
    wait: float,
    every: float,
    show: Callable[[dict[str, Any]], None],
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """Fetch until the verdict is not `pending` or `wait` seconds passed (then the last, pending, one).
    A missing deploy (404) is retried as pending within `wait` (sentry-cli may still be recording it);
    `UNREACHABLE_TRIES` transport failures in a row, or any other refusal, raise `RemoteError`."""
    from detector.remote import RemoteError

    deadline = clock() + wait
    failures = 0
    last: dict[str, Any] | None = None
    error: RemoteError | None = None
    while True:
        try:
            last, error = fetch(), None
            failures = 0
        except RemoteError as exc:
            error = exc
            failures = failures + 1 if exc.status is None else 0
            if exc.status not in (None, 404) or failures >= UNREACHABLE_TRIES:
                raise
        if error is None and last is not None:
            if last.get("status") != "pending":
                return last
            show(last)
        if clock() + every > deadline:
            break
        sleep(every)
    if error is not None:
        raise error
    assert last is not None
    return last


def _progress(verdict: dict[str, Any]) -> None:
    _say(
        f"[{verdict.get('minutes_since_deploy', 0):>3} min] {verdict.get('status')}: "
        f"{verdict.get('sessions', 0)} sessions; {verdict.get('reason', '')}"
    )


def report(verdict: dict[str, Any]) -> None:
    """The verdict for a CI log: status and reason, then each anomaly with its top suspect."""
    status = str(verdict.get("status"))
    bound, margin = verdict.get("bound"), verdict.get("margin")
    figures = f"{verdict.get('sessions', 0)} sessions in {verdict.get('minutes_since_deploy', 0)} min"
    if bound is not None and margin is not None:
        figures += f"; errored-session rate at most {bound:.2%} (margin {margin:.2%})"
    typer.echo(f"{verdict.get('release')} in {verdict.get('environment')}: {status.upper()} ({figures})")
    typer.echo(f"  {verdict.get('reason', '')}")
    for anomaly in verdict.get("anomalies") or []:
        typer.echo(f"  anomaly {anomaly['id']} ({anomaly['kind']}): {anomaly['title']}")
        suspect = anomaly.get("top_suspect")
        if suspect:
            summary = (str(suspect.get("message") or "").splitlines() or [""])[0]
            typer.echo(f"    top suspect {str(suspect.get('sha', ''))[:12]} {summary}")
    if status == "pending":
        typer.echo("  still pending at --timeout: treated as inconclusive (exit 2)")


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def set_gate_command(
    slug: Annotated[str, typer.Argument(metavar="SLUG", help="The project.")],
    tolerance: Annotated[float | None, typer.Option(min=1.0, help="Relative margin (default 1.25).")] = None,
    absolute_margin: Annotated[
        float | None, typer.Option(min=0.0, max=1.0, help="Absolute margin as a rate (default 0.005).")
    ] = None,
    min_sessions: Annotated[int | None, typer.Option(min=1, help="Sessions before healthy (default 1000).")] = None,
    watch_minutes: Annotated[
        int | None, typer.Option(min=1, max=1440, help="Minutes before inconclusive (default 60).")
    ] = None,
    webhook_url: Annotated[str | None, typer.Option(help="Posted once per failing deploy ('' removes it).")] = None,
    webhook_secret: Annotated[str | None, typer.Option(help="HMAC-SHA256 key of the webhook's signature.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the settings as one JSON object.")] = False,
) -> None:
    """Set the project's deploy-verdict settings; options not given stay as they are."""
    from detector.cli import echo_json, fail, load_settings, session_factory
    from detector.errors import DetectorError
    from detector.store.db import transaction
    from detector.store.projects import get_project_by_slug, set_gate_settings

    if webhook_url and not webhook_url.startswith(("https://", "http://")):
        raise fail("--webhook-url must be an http(s) URL")
    factory = session_factory(load_settings())
    try:
        with transaction(factory) as session:
            values = set_gate_settings(
                session,
                get_project_by_slug(session, slug),
                gate_tolerance=tolerance,
                gate_absolute_margin=absolute_margin,
                gate_min_sessions=min_sessions,
                gate_watch_minutes=watch_minutes,
                verdict_webhook_url=webhook_url,
                verdict_webhook_secret=webhook_secret,
            )
    except DetectorError as exc:
        raise fail(str(exc)) from exc
    shown = {k: ("***" if k == "verdict_webhook_secret" and v else v) for k, v in values.items()}
    if as_json:
        echo_json(shown)
        return
    typer.echo(f"project {slug} verdict settings: " + ", ".join(f"{k}={v}" for k, v in shown.items()))
