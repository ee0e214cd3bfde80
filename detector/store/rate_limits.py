"""The per-project rate limit, counted in the database so every API process shares one count: a fixed
one-minute window per project (`models.RateWindow`), taken with one atomic upsert."""

from __future__ import annotations

from sqlalchemy import delete
from sqlalchemy.orm import Session

from detector.store.dialect import upsert_insert
from detector.store.models import RateWindow


def take_from_window(session: Session, *, project_id: int, minute: int, n: int, limit: int) -> int | None:
    """Count `n` events against the project's window of `minute` if the window stays within `limit`; the
    window's count after, or None (nothing counted) when they do not fit. Concurrent callers, in any
    process, never together pass the limit: the check and the increment are one statement."""
    if n > limit:
        return None
    stmt = upsert_insert(session, RateWindow).values(project_id=project_id, minute=minute, used=n)
    stmt = stmt.on_conflict_do_update(
        index_elements=["project_id", "minute"],
        set_={"used": RateWindow.used + stmt.excluded.used},
        where=RateWindow.used + stmt.excluded.used <= limit,
    ).returning(RateWindow.used)
    used = session.execute(stmt).scalar_one_or_none()
    if used is not None and used == n:  # the window's first events: earlier windows are spent
        session.execute(delete(RateWindow).where(RateWindow.project_id == project_id, RateWindow.minute < minute))
    return used
