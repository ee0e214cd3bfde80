"""The intake's group commit: concurrent requests share commits, spaced requests wait a moment for company,
and a request is answered only once its rows are committed."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from sqlalchemy import event, func, select
from sqlalchemy.orm import Session, sessionmaker

from detector.store.models import Project, RawItem
from detector.store.writer import GroupCommitWriter


def row(project: Project, n: int) -> dict[str, object]:
    return {
        "project_id": project.id,
        "item_type": "event",
        "event_id": f"{n:032d}",
        "received_at": datetime.now(UTC),
        "payload": b"{}",
    }


def commits_for_spaced_requests(
    factory: sessionmaker[Session], project: Project, writer: GroupCommitWriter, *, first_id: int
) -> int:
    """Commits used for 40 requests arriving 1 ms apart (as browsers' requests arrive, one by one)."""
    engine = factory.kw["bind"]
    commits: list[int] = []
    listener = lambda _conn: commits.append(1)  # noqa: E731
    event.listen(engine, "commit", listener)

    async def spaced() -> None:
        tasks = []
        for n in range(40):
            tasks.append(asyncio.create_task(writer.write([row(project, first_id + n)])))
            await asyncio.sleep(0.001)
        await asyncio.gather(*tasks)

    writer.start()
    try:
        asyncio.run(spaced())
    finally:
        writer.stop()
        event.remove(engine, "commit", listener)
    return len(commits)


def test_spaced_requests_share_commits_while_the_writer_lingers(
    factory: sessionmaker[Session], project: Project
) -> None:
    eager = commits_for_spaced_requests(factory, project, GroupCommitWriter(factory, linger_seconds=0.0), first_id=0)
    lingering = commits_for_spaced_requests(
        factory, project, GroupCommitWriter(factory, linger_seconds=0.05, linger_rows=20), first_id=100
    )
    assert lingering <= 4 < eager  # 40 requests: about two commits of 20, against one per request or so
    with factory() as session:
        assert session.scalar(select(func.count(RawItem.id))) == 80  # every row of both runs, once


def test_a_request_returns_only_after_its_rows_are_committed(factory: sessionmaker[Session], project: Project) -> None:
    writer = GroupCommitWriter(factory, linger_seconds=0.2, linger_rows=1000)
    seen: list[int] = []

    async def one() -> None:
        await writer.write([row(project, 1)])
        with factory() as session:  # another connection sees it as soon as the request returns
            seen.append(session.scalar(select(func.count(RawItem.id))) or 0)

    writer.start()
    try:
        asyncio.run(one())
    finally:
        writer.stop()
    assert seen == [1]
