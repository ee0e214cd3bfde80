"""`detector queue`: the intake queue's dead letters (items the digest failed on repeatedly), listed,
replayed into the queue, or dropped.

The commands import their helpers from `detector.cli` when they run, not at import time, because
`detector.cli` imports this module to register them.
"""

from __future__ import annotations

from typing import Annotated

import typer

queue_app = typer.Typer(help="The intake queue: dead letters, their replay.", no_args_is_help=True)

IDS = typer.Argument(metavar="[ID]...", help="Dead letter ids (from `detector queue dead-letters`).")


def dead_letters_command(
    limit: Annotated[int, typer.Option(min=1, help="Show at most this many, oldest first.")] = 100,
    project: Annotated[str | None, typer.Option(help="Only this project's (slug).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON list.")] = False,
) -> None:
    """List the dead letters: intake items the digest failed on repeatedly, with the last error."""
    from rich.console import Console
    from rich.table import Table

    from detector.cli import echo_json, fail, load_settings, session_factory
    from detector.errors import DetectorError
    from detector.store.dead_letters import count_dead_letters, list_dead_letters
    from detector.store.projects import get_project_by_slug

    factory = session_factory(load_settings())
    with factory() as session:
        try:
            project_id = get_project_by_slug(session, project).id if project else None
        except DetectorError as exc:
            raise fail(str(exc)) from exc
        letters = list_dead_letters(session, limit=limit, project_id=project_id)
        total = count_dead_letters(session)
    if as_json:
        echo_json([letter._asdict() for letter in letters])
        return
    if not letters:
        typer.echo("no dead letters")
        return
    table = Table("id", "project", "type", "event id", "received", "failed", "attempts", "bytes", "error")
    for letter in letters:
        table.add_row(
            str(letter.id),
            str(letter.project_id),
            letter.item_type,
            letter.event_id or "",
            letter.received_at.isoformat(timespec="seconds"),
            letter.failed_at.isoformat(timespec="seconds"),
            str(letter.attempts),
            str(letter.payload_bytes),
            letter.error,
        )
    Console().print(table)
    if total > len(letters):
        typer.echo(f"{len(letters)} of {total} dead letters shown (--limit)")


def _chosen(ids: list[int] | None, every: bool, verb: str) -> list[int] | None:
    from detector.cli import fail

    if every == bool(ids):
        raise fail(f"name the dead letters to {verb} (their ids), or --all", code=2)
    return None if every else ids


def replay_command(
    ids: Annotated[list[int] | None, IDS] = None,
    every: Annotated[bool, typer.Option("--all", help="Replay every dead letter.")] = False,
) -> None:
    """Put dead letters back in the queue (as received, no attempts counted).

    A worker digests them again; one that fails again returns to the dead letters."""
    from detector.cli import load_settings, session_factory
    from detector.store.dead_letters import replay_dead_letters

    chosen = _chosen(ids, every, "replay")
    replayed = replay_dead_letters(session_factory(load_settings()), ids=chosen)
    typer.echo(f"replayed {replayed} dead letter{'' if replayed == 1 else 's'} into the queue")


def drop_command(
    ids: Annotated[list[int] | None, IDS] = None,
    every: Annotated[bool, typer.Option("--all", help="Drop every dead letter.")] = False,
) -> None:
    """Delete dead letters for good (their items are never counted)."""
    from detector.cli import load_settings, session_factory
    from detector.store.db import transaction
    from detector.store.dead_letters import drop_dead_letters

    chosen = _chosen(ids, every, "drop")
    with transaction(session_factory(load_settings())) as session:
        dropped = drop_dead_letters(session, ids=chosen)
    typer.echo(f"dropped {dropped} dead letter{'' if dropped == 1 else 's'}")


def register(app: typer.Typer) -> None:
    """Add the `queue` group to `app`."""
    queue_app.command("dead-letters")(dead_letters_command)
    queue_app.command("replay-dead-letters")(replay_command)
    queue_app.command("drop-dead-letters")(drop_command)
    app.add_typer(queue_app, name="queue")
