"""Sentry's intake protocol: `POST /api/{project_id}/envelope/` and `/store/`, as relay answers it."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from api.deps import StateDep
from api.errors import error_response, status_for
from detector.errors import DetectorError, PayloadTooLarge
from detector.intake.accept import Accepted, IntakeLimits, accept_envelope, accept_store

router = APIRouter(tags=["intake"])


async def read_bounded_body(request: Request, limit: int) -> bytes:
    """The request body, refused as soon as it passes `limit` bytes (before reading the rest)."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"body of {declared} bytes is over the limit of {limit}")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"body is over the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def _ingest(
    request: Request, state: StateDep, project_id: int, accept: Callable[..., Accepted]
) -> JSONResponse:
    started = time.perf_counter()
    settings = state.settings
    limits = IntakeLimits(
        max_body_bytes=settings.max_envelope_bytes,
        max_decoded_bytes=settings.max_decoded_bytes,
        max_event_bytes=settings.max_event_bytes,
        max_items=settings.max_items_per_envelope,
    )
    try:
        body = await read_bounded_body(request, limits.max_body_bytes)
        received_at = datetime.now(UTC)
        accepted = accept(
            project_id=project_id,
            body=body,
            content_encoding=request.headers.get("content-encoding"),
            query=request.query_params,
            auth_header=request.headers.get("x-sentry-auth"),
            lookup=state.keys.get,
            limits=limits,
            received_at=received_at,
        )
        key = state.keys.get(accepted.project_id)
        if key is not None:
            state.limiter.take(key, accepted.error_count, received_at)
        await state.writer.write(
            [
                {
                    "project_id": accepted.project_id,
                    "item_type": item.item_type,
                    "event_id": item.event_id,
                    "received_at": received_at,
                    "payload": item.payload,
                }
                for item in accepted.items
            ]
        )
    except DetectorError as exc:
        state.metrics.intake_rejected.labels(status=str(status_for(exc))).inc()
        return error_response(exc)
    for item in accepted.items:
        state.metrics.intake_items.labels(item_type=item.item_type).inc()
    state.metrics.intake_latency.observe(time.perf_counter() - started)
    return JSONResponse({"id": accepted.event_id} if accepted.event_id else {})


@router.post("/api/{project_id}/envelope/", summary="Sentry envelope intake")
@router.post("/api/{project_id}/envelope", include_in_schema=False)
async def envelope(project_id: int, request: Request, state: StateDep) -> JSONResponse:
    return await _ingest(request, state, project_id, accept_envelope)


@router.post("/api/{project_id}/store/", summary="Sentry legacy store intake")
@router.post("/api/{project_id}/store", include_in_schema=False)
async def store(project_id: int, request: Request, state: StateDep) -> JSONResponse:
    return await _ingest(request, state, project_id, accept_store)
