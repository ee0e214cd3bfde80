"""Upload chunks, artifact bundles and their files: storage and lookup.

Chunks are kept until a bundle made of them is stored (that transaction deletes them). A bundle is
stored once per (org, checksum), with one `artifact_files` row per file so lookups by release and URL
or by debug ID never have to open a zip.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, func, insert, select
from sqlalchemy.orm import Session

from detector.store.dialect import upsert_insert
from detector.store.models import ArtifactBundle, ArtifactFile, Project, UploadChunk

__all__ = [
    "ArtifactRef",
    "BundleFileRow",
    "bundles_generation",
    "delete_stale_chunks",
    "existing_chunk_ids",
    "find_artifacts_by_debug_id",
    "find_artifacts_by_url",
    "find_bundle_file",
    "get_bundle_id",
    "load_bundle_data",
    "load_chunks",
    "org_has_projects",
    "project_org",
    "projects_in_org",
    "release_has_files",
    "save_chunks",
    "store_bundle",
]


@dataclass(frozen=True, slots=True)
class BundleFileRow:
    """A file to index: its path in the zip, URL, type, debug ID and `sourcemap` header."""

    path: str
    url: str
    file_type: str
    debug_id: str | None
    sourcemap: str | None


@dataclass(frozen=True, slots=True)
class ArtifactRef:
    """An indexed file, enough to find its bytes (`bundle_id`, `path`) and its source map."""

    bundle_id: int
    path: str
    url: str
    file_type: str
    debug_id: str | None
    sourcemap: str | None


def _ref(row: ArtifactFile) -> ArtifactRef:
    return ArtifactRef(
        bundle_id=row.bundle_id,
        path=row.path,
        url=row.url,
        file_type=row.file_type,
        debug_id=row.debug_id,
        sourcemap=row.sourcemap,
    )


def org_has_projects(session: Session, org: str) -> bool:
    return session.scalar(select(Project.id).where(Project.org == org).limit(1)) is not None


def projects_in_org(session: Session, org: str, slugs: Sequence[str]) -> list[Project]:
    return list(session.scalars(select(Project).where(Project.org == org, Project.slug.in_(list(slugs)))))


def project_org(session: Session, project_id: int) -> str | None:
    return session.scalar(select(Project.org).where(Project.id == project_id))


def save_chunks(session: Session, *, org: str, chunks: dict[str, bytes], now: datetime | None = None) -> None:
    """Store chunks by SHA-1; a chunk already stored is left as it is (same name, same bytes)."""
    if not chunks:
        return
    created = now or datetime.now(UTC)
    stmt = upsert_insert(session, UploadChunk).on_conflict_do_nothing(index_elements=["sha1"])
    session.execute(
        stmt,
        [{"sha1": sha1, "org": org, "data": data, "created_at": created} for sha1, data in chunks.items()],
    )


def delete_stale_chunks(session: Session, *, older_than: datetime) -> int:
    """Delete chunks stored before `older_than` that no assemble consumed (an upload abandoned midway);
    returns how many were deleted."""
    result = session.execute(delete(UploadChunk).where(UploadChunk.created_at < older_than))
    return int(getattr(result, "rowcount", 0) or 0)


def existing_chunk_ids(session: Session, sha1s: Iterable[str]) -> set[str]:
    wanted = list(set(sha1s))
    if not wanted:
        return set()
    return set(session.scalars(select(UploadChunk.sha1).where(UploadChunk.sha1.in_(wanted))))


def load_chunks(session: Session, sha1s: Iterable[str]) -> dict[str, bytes]:
    wanted = list(set(sha1s))
    if not wanted:
        return {}
    rows = session.execute(select(UploadChunk.sha1, UploadChunk.data).where(UploadChunk.sha1.in_(wanted)))
    return {sha1: bytes(data) for sha1, data in rows}


def get_bundle_id(session: Session, *, org: str, checksum: str) -> int | None:
    return session.scalar(
        select(ArtifactBundle.id).where(ArtifactBundle.org == org, ArtifactBundle.checksum == checksum)
    )


def store_bundle(
    session: Session,
    *,
    org: str,
    checksum: str,
    release: str | None,
    dist: str | None,
    debug_id: str | None,
    manifest: dict[str, Any],
    data: bytes,
    files: Sequence[BundleFileRow],
    consumed_chunks: Sequence[str] = (),
    now: datetime | None = None,
) -> int:
    """Store a bundle and index its files, deleting `consumed_chunks`; returns the bundle's id.

    Idempotent per (org, checksum): when another request stored the same bundle first, its id is
    returned and nothing is written twice.
    """
    stmt = (
        upsert_insert(session, ArtifactBundle)
        .values(
            org=org,
            checksum=checksum,
            release=release,
            dist=dist,
            debug_id=debug_id,
            manifest=manifest,
            data=data,
            created_at=now or datetime.now(UTC),
        )
        .on_conflict_do_nothing(index_elements=["org", "checksum"])
        .returning(ArtifactBundle.id)
    )
    bundle_id = session.scalar(stmt)
    if bundle_id is None:
        existing = get_bundle_id(session, org=org, checksum=checksum)
        assert existing is not None  # the conflict that skipped our insert is this row
        return existing
    if files:
        session.execute(
            insert(ArtifactFile),
            [
                {
                    "bundle_id": bundle_id,
                    "org": org,
                    "release": release,
                    "path": f.path,
                    "url": f.url,
                    "file_type": f.file_type,
                    "debug_id": f.debug_id,
                    "sourcemap": f.sourcemap,
                }
                for f in files
            ],
        )
    if consumed_chunks:
        session.execute(delete(UploadChunk).where(UploadChunk.sha1.in_(list(set(consumed_chunks)))))
    return int(bundle_id)


def bundles_generation(session: Session, org: str) -> tuple[int, int]:
    """What changes whenever a bundle of `org` is stored: (how many, the largest id).

    The count catches bundles committed out of id order; bundles are never updated in place.
    """
    count, largest = session.execute(
        select(func.count(ArtifactBundle.id), func.max(ArtifactBundle.id)).where(ArtifactBundle.org == org)
    ).one()
    return int(count or 0), int(largest or 0)


def release_has_files(session: Session, *, org: str, release: str) -> bool:
    """Whether any stored bundle of `org` has files for `release`."""
    found = session.scalar(
        select(ArtifactFile.id).where(ArtifactFile.org == org, ArtifactFile.release == release).limit(1)
    )
    return found is not None


def find_artifacts_by_url(session: Session, *, org: str, release: str, urls: Sequence[str]) -> list[ArtifactRef]:
    """Files of `release` whose URL is one of `urls`, newest bundle first."""
    if not urls:
        return []
    rows = session.scalars(
        select(ArtifactFile)
        .where(ArtifactFile.org == org, ArtifactFile.release == release, ArtifactFile.url.in_(list(urls)))
        .order_by(ArtifactFile.bundle_id.desc(), ArtifactFile.id)
    )
    return [_ref(r) for r in rows]


def find_artifacts_by_debug_id(session: Session, *, org: str, debug_ids: Sequence[str]) -> list[ArtifactRef]:
    """Files carrying one of `debug_ids` (lower case), newest bundle first."""
    if not debug_ids:
        return []
    rows = session.scalars(
        select(ArtifactFile)
        .where(ArtifactFile.org == org, ArtifactFile.debug_id.in_(list(debug_ids)))
        .order_by(ArtifactFile.bundle_id.desc(), ArtifactFile.id)
    )
    return [_ref(r) for r in rows]


def find_bundle_file(session: Session, *, bundle_id: int, urls: Sequence[str]) -> ArtifactRef | None:
    """The file of `bundle_id` with the first of `urls` it has."""
    if not urls:
        return None
    rows = {
        r.url: r
        for r in session.scalars(
            select(ArtifactFile).where(ArtifactFile.bundle_id == bundle_id, ArtifactFile.url.in_(list(urls)))
        )
    }
    for url in urls:
        if url in rows:
            return _ref(rows[url])
    return None


def load_bundle_data(session: Session, bundle_id: int) -> bytes | None:
    data = session.scalar(select(ArtifactBundle.data).where(ArtifactBundle.id == bundle_id))
    return bytes(data) if data is not None else None
