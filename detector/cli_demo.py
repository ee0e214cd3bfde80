"""`detector demo`, registered on the main app by `register`.

Helpers are imported from `detector.cli` when the command runs, because `detector.cli` imports this
module to register it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

DEMO_HELP = (
    "Replay the seed incident in simulated time and show the alert.\n\n"
    "Creates a project `shop` and a real git repository in `detector-demo/` beside the database (a folder git "
    "ignores); a second run resets both (a `shop` project that is not the demo's is kept: the run takes `shop-2`). "
    "Then it records a healthy deploy and an hour of traffic through the real intake, then a deploy whose commit "
    "breaks /billing; detection runs every simulated minute until it catches the new error. The alert is "
    "printed, and posted to Slack when DETECTOR_SLACK_WEBHOOK_URL (or a bot token and channel) is set. "
    "The database is left for `detector serve` and the notebooks."
)


def demo_command(
    workdir: Annotated[
        Path | None,
        typer.Option("--workdir", help="Where to keep the demo's folder (default: beside the database)."),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the simulated traffic.")] = 7,
) -> None:
    from detector.cli import fail, load_settings, ready_database
    from detector.demo import DemoError, run_demo
    from detector.errors import DetectorError

    settings = load_settings()
    ready_database(settings)
    try:
        run_demo(settings, workdir=workdir, seed=seed, echo=lambda line: typer.echo(line))
    except (DemoError, DetectorError) as exc:
        raise fail(str(exc)) from exc


def register(app: typer.Typer) -> None:
    """Add `demo` to `app`."""
    app.command("demo", help=DEMO_HELP)(demo_command)
