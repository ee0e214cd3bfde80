"""Group commit for intake: many concurrent requests, one transaction.

Each request hands its rows to `write()` and is answered only after the transaction holding them
committed, so an acknowledged event is durable; committing many requests at once is what lets a
single SQLite file take thousands of events per second.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy.orm import Session, sessionmaker

from detector.store.db import transaction
from detector.store.queue import enqueue_items

log = logging.getLogger(__name__)


@dataclass
class _Pending:
    rows: Sequence[dict[str, object]]
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[None]


@dataclass
class GroupCommitWriter:
    factory: sessionmaker[Session]
    max_rows_per_commit: int = 2000
    _pending: list[_Pending] = field(default_factory=list)
    _cond: threading.Condition = field(default_factory=threading.Condition)
    _thread: threading.Thread | None = None
    _stopping: bool = False

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="intake-writer", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify()
        if self._thread is not None:
            self._thread.join(timeout=30)

    async def write(self, rows: Sequence[dict[str, object]]) -> None:
        """Store `rows` in the raw queue; returns once they are committed (raises if the commit failed)."""
        if not rows:
            return
        loop = asyncio.get_running_loop()
        pending = _Pending(rows, loop, loop.create_future())
        with self._cond:
            if self._stopping:
                raise RuntimeError("the intake writer is stopping")
            self._pending.append(pending)
            self._cond.notify()
        await pending.future

    def _take(self) -> list[_Pending]:
        with self._cond:
            while not self._pending and not self._stopping:
                self._cond.wait()
            taken: list[_Pending] = []
            count = 0
            while self._pending and count < self.max_rows_per_commit:
                item = self._pending.pop(0)
                taken.append(item)
                count += len(item.rows)
            return taken

    def _run(self) -> None:
        while True:
            batch = self._take()
            if not batch:
                return
            error: BaseException | None = None
            try:
                with transaction(self.factory) as session:
                    enqueue_items(session, [row for pending in batch for row in pending.rows])
            except Exception as exc:  # the task boundary: report to every waiting request
                log.exception("intake commit failed for %d requests", len(batch))
                error = exc
            for pending in batch:
                pending.loop.call_soon_threadsafe(_resolve, pending.future, error)


def _resolve(future: asyncio.Future[None], error: BaseException | None) -> None:
    if future.done():
        return
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(error)
