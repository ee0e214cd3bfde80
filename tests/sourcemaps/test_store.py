from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy.orm import Session, sessionmaker

from detector.store import artifacts
from detector.store.db import transaction
from tests.sourcemaps.conftest import sha1


def test_chunks_are_stored_once_and_abandoned_ones_can_be_deleted(factory: sessionmaker[Session]) -> None:
    now = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
    old, fresh = b"abandoned upload", b"upload in progress"
    with transaction(factory) as session:
        artifacts.save_chunks(session, org="default", chunks={sha1(old): old}, now=now - timedelta(days=2))
        artifacts.save_chunks(session, org="default", chunks={sha1(fresh): fresh}, now=now)
        # the same chunk again (a retried request) is not an error and changes nothing
        artifacts.save_chunks(session, org="default", chunks={sha1(fresh): fresh}, now=now)
    with transaction(factory) as session:
        assert artifacts.existing_chunk_ids(session, [sha1(old), sha1(fresh), "0" * 40]) == {sha1(old), sha1(fresh)}
        assert artifacts.delete_stale_chunks(session, older_than=now - timedelta(days=1)) == 1
    with factory() as session:
        assert artifacts.load_chunks(session, [sha1(old), sha1(fresh)]) == {sha1(fresh): fresh}
