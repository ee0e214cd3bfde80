"""The part of Sentry's web API that `sentry-cli sourcemaps upload` speaks: chunk upload and assemble.

`GET  /api/0/organizations/{org}/chunk-upload/`            the server's chunking options
`POST /api/0/organizations/{org}/chunk-upload/`            chunks, multipart, named by their SHA-1
`POST /api/0/organizations/{org}/artifactbundle/assemble/` chunks -> stored artifact bundle

Assemble answers as Sentry does: `not_found` with the missing chunks, `ok` once stored (assembly runs
within the request), or `error` with a `detail` that sentry-cli prints ("Failed to process uploaded
files: ...") for a bundle that cannot be used. Malformed requests are 400s; nothing is half-written.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser

from api.deps import IngestToken, SessionDep, StateDep
from api.routes.intake import read_bounded_body
from api.state import AppState
from detector.errors import InvalidInput, NotFound, PayloadTooLarge
from detector.intake.decode import BodyTooLarge, CorruptBody, decode_body
from detector.json_text import NotJson, parse_json
from detector.sourcemaps.bundle import InvalidBundle, UnsafeArtifactName, parse_bundle
from detector.sourcemaps.chunks import (
    AssembleRequest,
    ChecksumMismatch,
    ChunkLimits,
    assemble_file,
    chunk_upload_options,
    parse_assemble_request,
    verify_chunk,
)
from detector.store import artifacts
from detector.store.db import transaction

router = APIRouter(prefix="/api/0/organizations/{org}", tags=["sentry-cli"])

LIMITS = ChunkLimits()
CHUNK_FIELDS = ("file_gzip", "file")
MAX_ASSEMBLE_BODY = 1024 * 1024
# source maps compress several times over; this bounds what validating one bundle may inflate
MAX_UNPACKED_BYTES = 4 * LIMITS.max_file_size
# multipart framing (boundaries, part headers) on top of the announced request size
MULTIPART_OVERHEAD = 64 * 1024


def _require_org(session: Session, state: AppState, org: str) -> None:
    if org != state.settings.org and not artifacts.org_has_projects(session, org):
        raise NotFound(f"no organization {org!r}")


def _public_base(request: Request, state: AppState) -> str:
    # An explicitly configured public URL wins (a proxy may rewrite the host); else the request's own.
    if "public_url" in state.settings.model_fields_set:
        return state.settings.public_url.rstrip("/")
    return str(request.base_url).rstrip("/")


@router.get("/chunk-upload/")
def get_chunk_upload_options(
    org: str, request: Request, session: SessionDep, state: StateDep, _token: IngestToken
) -> dict[str, Any]:
    _require_org(session, state, org)
    return chunk_upload_options(f"{_public_base(request, state)}/api/0/organizations/{org}/chunk-upload/", LIMITS)


async def _once(body: bytes) -> AsyncIterator[bytes]:
    yield body


async def _read_chunks(request: Request) -> dict[str, bytes]:
    """The chunks of a multipart body, each decompressed and verified against its SHA-1 name."""
    content_type = request.headers.get("content-type", "")
    if not content_type.lower().startswith("multipart/form-data"):
        raise InvalidInput(f"chunks must be sent as multipart/form-data, not {content_type or 'no content type'}")
    body = await read_bounded_body(request, LIMITS.max_request_size + MULTIPART_OVERHEAD)
    parser = MultiPartParser(
        request.headers, _once(body), max_files=LIMITS.chunks_per_request, max_fields=LIMITS.chunks_per_request
    )
    try:
        form = await parser.parse()
    except MultiPartException as exc:
        raise InvalidInput(f"malformed multipart body: {exc.message}") from exc
    chunks: dict[str, bytes] = {}
    try:
        for field_name, value in form.multi_items():
            if field_name not in CHUNK_FIELDS or not isinstance(value, UploadFile):
                continue
            raw = await value.read()
            if field_name == "file_gzip":
                try:
                    # inflating is CPU work: in a thread, so other requests go on
                    raw = await run_in_threadpool(decode_body, raw, "gzip", max_size=LIMITS.chunk_size)
                except BodyTooLarge as exc:
                    raise PayloadTooLarge(
                        f"chunk {value.filename} inflates past the chunk size of {LIMITS.chunk_size} bytes"
                    ) from exc
                except CorruptBody as exc:
                    raise InvalidInput(f"chunk {value.filename} is not valid gzip data: {exc}") from exc
            sha1 = verify_chunk(value.filename, raw, LIMITS)
            chunks[sha1] = raw
    finally:
        await form.close()
    if not chunks:
        raise InvalidInput("no chunks: send each chunk as a file part named 'file_gzip' (gzip) or 'file'")
    return chunks


def _save_chunks(state: AppState, org: str, chunks: dict[str, bytes]) -> None:
    with transaction(state.factory) as session:
        _require_org(session, state, org)
        artifacts.save_chunks(session, org=org, chunks=chunks)


@router.post("/chunk-upload/")
async def post_chunks(org: str, request: Request, state: StateDep, _token: IngestToken) -> dict[str, Any]:
    chunks = await _read_chunks(request)
    await run_in_threadpool(_save_chunks, state, org, chunks)
    return {"chunks": sorted(chunks)}


def _assemble(state: AppState, org: str, req: AssembleRequest) -> dict[str, Any]:
    with transaction(state.factory) as session:
        _require_org(session, state, org)
        found = {p.slug for p in artifacts.projects_in_org(session, org, req.projects)}
        unknown = [p for p in req.projects if p not in found]
        if unknown:
            raise InvalidInput(f"unknown project(s) in organization {org!r}: {', '.join(unknown)}")
        if artifacts.get_bundle_id(session, org=org, checksum=req.checksum) is not None:
            return {"state": "ok", "missingChunks": []}
        present = artifacts.existing_chunk_ids(session, req.chunks)
        missing = [c for c in dict.fromkeys(req.chunks) if c not in present]
        if missing:
            return {"state": "not_found", "missingChunks": missing}
        stored = artifacts.load_chunks(session, req.chunks)
        try:
            data = assemble_file(req.checksum, [stored[c] for c in req.chunks], LIMITS)
            bundle = parse_bundle(data, max_uncompressed=MAX_UNPACKED_BYTES)
        except UnsafeArtifactName as exc:
            # 400, not sentry-cli's "error" state: a name that points outside the release is refused loudly
            raise InvalidInput(f"artifact bundle refused: {exc}") from exc
        except (ChecksumMismatch, InvalidBundle) as exc:
            return {"state": "error", "detail": str(exc), "missingChunks": []}
        artifacts.store_bundle(
            session,
            org=org,
            checksum=req.checksum,
            release=req.version or bundle.release,
            dist=req.dist or bundle.dist,
            debug_id=bundle.debug_id,
            manifest=bundle.manifest,
            data=data,
            files=[
                artifacts.BundleFileRow(
                    path=f.path, url=f.url, file_type=f.file_type, debug_id=f.debug_id, sourcemap=f.sourcemap
                )
                for f in bundle.files
            ],
            consumed_chunks=req.chunks,
        )
    return {"state": "ok", "missingChunks": []}


@router.post("/artifactbundle/assemble/")
async def assemble_artifact_bundle(org: str, request: Request, state: StateDep, _token: IngestToken) -> dict[str, Any]:
    body = await read_bounded_body(request, MAX_ASSEMBLE_BODY)
    try:
        payload = parse_json(body, "assemble request")
    except NotJson as exc:
        raise InvalidInput(str(exc)) from exc
    req = parse_assemble_request(payload, LIMITS)
    return await run_in_threadpool(_assemble, state, org, req)
