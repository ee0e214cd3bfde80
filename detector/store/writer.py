"""Group commit for intake: many concurrent requests, one transaction.

Each request hands its rows to `write()` and is answered only after the transaction holding them
committed, so an acknowledged event is durable; committing many requests at once is what lets a
single SQLite file take thousands of events per second.

The commit runs in a thread of its own. While it commits, new requests queue up and go into the
next commit together, so the batch grows with the load by itself (no timer, no added latency when
idle). Waiting requests are woken once per event loop per commit, not once each.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from sqlalchemy.orm import Session, sessionmaker

from detector.store.db import database_error_reason
from detector.store.queue import enqueue_items

log = logging.getLogger(__name__)


class _Pending(NamedTuple):
    rows: Sequence[dict[str, object]]
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[None]


@dataclass
class GroupCommitWriter:
    factory: sessionmaker[Session]
    max_rows_per_commit: int = 5000
    linger_seconds: float = 0.002
    """How long a commit waits for more requests when fewer than `linger_rows` are waiting. Evenly spaced
    requests (as browsers send them, unlike a benchmark's bursts) otherwise got commits of one to three
    requests each: at 5,000 events/s, some 2,000 commits a second."""
    linger_rows: int = 32
    _pending: list[_Pending] = field(default_factory=list)
    _cond: threading.Condition = field(default_factory=threading.Condition)
    _thread: threading.Thread | None = None
    _stopping: bool = False
    last_failure: tuple[float, str] | None = None
    """`(time.monotonic(), reason)` of the last commit that failed, None once one succeeds after it: what
    `/healthz` reports while intake cannot write."""

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="intake-writer", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Commit what is queued, then stop; later `write()` calls raise RuntimeError."""
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
        future = loop.create_future()
        with self._cond:
            if self._stopping:
                raise RuntimeError("the intake writer is stopping")
            self._pending.append(_Pending(rows, loop, future))
            if len(self._pending) in (1, self.linger_rows):  # the first wakes the writer; enough ends its wait
                self._cond.notify()
        await future

    def _take(self) -> list[_Pending]:
        with self._cond:
            while not self._pending and not self._stopping:
                self._cond.wait()
            if self.linger_seconds > 0 and not self._stopping:
                until = time.monotonic() + self.linger_seconds
                while len(self._pending) < self.linger_rows and not self._stopping:
                    left = until - time.monotonic()
                    if left <= 0:
                        break
                    self._cond.wait(left)
            cut = count = 0
            while cut < len(self._pending) and count < self.max_rows_per_commit:
                count += len(self._pending[cut].rows)
                cut += 1
            taken = self._pending[:cut]
            del self._pending[:cut]
            return taken

    def _run(self) -> None:
        engine = self.factory.kw["bind"]
        while True:
            batch = self._take()
            if not batch:
                return
            error: BaseException | None = None
            try:
                with engine.begin() as connection:
                    enqueue_items(connection, [row for pending in batch for row in pending.rows])
            except Exception as exc:  # the task boundary: report to every waiting request
                log.exception("intake commit failed for %d requests", len(batch))
                error = exc
                self.last_failure = (time.monotonic(), database_error_reason(exc))
            else:
                self.last_failure = None
            by_loop: dict[asyncio.AbstractEventLoop, list[asyncio.Future[None]]] = defaultdict(list)
            for pending in batch:
                by_loop[pending.loop].append(pending.future)
            for loop, futures in by_loop.items():
                try:
                    loop.call_soon_threadsafe(_resolve, futures, error)
                except RuntimeError:  # that loop is closed: nobody is waiting for these any more
                    log.warning("intake commit finished after its event loop closed")


def _resolve(futures: list[asyncio.Future[None]], error: BaseException | None) -> None:
    for future in futures:
        if future.done():
            continue
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(error)
