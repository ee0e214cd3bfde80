"""The chunk-upload protocol sentry-cli speaks for `sourcemaps upload`, as pure functions.

sentry-cli asks for the server's options, cuts the bundle into chunks of `chunkSize` bytes named by
their SHA-1, asks `assemble` which chunks are missing, posts those (gzip-compressed, several per
request) and asks `assemble` again. The server concatenates the chunks in order and checks the SHA-1
of the whole against the announced checksum.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from detector.errors import InvalidInput, PayloadTooLarge

__all__ = [
    "AssembleRequest",
    "ChecksumMismatch",
    "ChunkLimits",
    "assemble_file",
    "chunk_upload_options",
    "parse_assemble_request",
    "verify_chunk",
]

_SHA1 = re.compile(r"^[0-9a-f]{40}$")

# sentry-cli 2.x reads `accept` to choose its upload path; only artifact bundles are implemented here,
# so only they are announced (listing `release_files` would invite the legacy release-file assemble).
ACCEPT = ["artifact_bundles", "artifact_bundles_v2"]


@dataclass(frozen=True, slots=True)
class ChunkLimits:
    """Sizes the server announces and enforces (Sentry's defaults, with a smaller whole-file cap)."""

    chunk_size: int = 8 * 1024 * 1024
    chunks_per_request: int = 64
    max_request_size: int = 32 * 1024 * 1024
    max_file_size: int = 128 * 1024 * 1024
    concurrency: int = 4


@dataclass(frozen=True, slots=True)
class AssembleRequest:
    checksum: str
    chunks: list[str]
    projects: list[str]
    version: str | None
    dist: str | None


def chunk_upload_options(upload_url: str, limits: ChunkLimits) -> dict[str, Any]:
    """The answer to `GET /api/0/organizations/{org}/chunk-upload/`."""
    return {
        "url": upload_url,
        "chunkSize": limits.chunk_size,
        "chunksPerRequest": limits.chunks_per_request,
        "maxFileSize": limits.max_file_size,
        "maxRequestSize": limits.max_request_size,
        "concurrency": limits.concurrency,
        "hashAlgorithm": "sha1",
        "compression": ["gzip"],
        "accept": list(ACCEPT),
    }


def is_sha1(value: object) -> bool:
    return isinstance(value, str) and bool(_SHA1.match(value))


def verify_chunk(name: str | None, data: bytes, limits: ChunkLimits) -> str:
    """The chunk's SHA-1 (lower case) once `data` is within size and hashes to its name `name`.

    Raises :class:`PayloadTooLarge` over `chunk_size` and :class:`InvalidInput` for a name that is not
    a SHA-1 or does not match the content (the message names the chunk).
    """
    declared = (name or "").strip().lower()
    if not is_sha1(declared):
        raise InvalidInput(f"chunk file name must be the SHA-1 of the chunk, got {name!r}")
    if len(data) > limits.chunk_size:
        raise PayloadTooLarge(f"chunk {declared} is {len(data)} bytes, over the chunk size of {limits.chunk_size}")
    actual = hashlib.sha1(data).hexdigest()
    if actual != declared:
        raise InvalidInput(f"chunk {declared} does not match its content (SHA-1 of the content is {actual})")
    return actual


def _optional_str(payload: dict[str, Any], key: str, max_length: int) -> str | None:
    value = payload.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) > max_length:
        raise InvalidInput(f"'{key}' must be a string of at most {max_length} characters")
    return value


def parse_assemble_request(payload: Any, limits: ChunkLimits) -> AssembleRequest:
    """Validate the body of `POST .../artifactbundle/assemble/`; :class:`InvalidInput` says what is wrong."""
    if not isinstance(payload, dict):
        raise InvalidInput("assemble request must be a JSON object")
    checksum = payload.get("checksum")
    if not is_sha1(checksum):
        raise InvalidInput("'checksum' must be a lower-case hex SHA-1 (40 characters)")
    chunks = payload.get("chunks")
    if not isinstance(chunks, list) or not all(is_sha1(c) for c in chunks):
        raise InvalidInput("'chunks' must be a list of lower-case hex SHA-1 values")
    max_chunks = -(-limits.max_file_size // limits.chunk_size)
    if len(chunks) > max_chunks:
        raise PayloadTooLarge(f"{len(chunks)} chunks make a file over the limit of {limits.max_file_size} bytes")
    projects = payload.get("projects")
    if not isinstance(projects, list) or not projects or not all(isinstance(p, str) and p for p in projects):
        raise InvalidInput("'projects' must be a non-empty list of project slugs")
    return AssembleRequest(
        checksum=checksum,
        chunks=list(chunks),
        projects=list(dict.fromkeys(projects)),
        version=_optional_str(payload, "version", 250),
        dist=_optional_str(payload, "dist", 64),
    )


class ChecksumMismatch(ValueError):
    """The assembled file does not hash to the checksum sentry-cli announced."""


def assemble_file(checksum: str, parts: Sequence[bytes], limits: ChunkLimits) -> bytes:
    """The chunks concatenated in order, checked against `checksum` and `max_file_size`.

    Raises :class:`ChecksumMismatch` or :class:`PayloadTooLarge`.
    """
    total = sum(len(p) for p in parts)
    if total > limits.max_file_size:
        raise PayloadTooLarge(f"the assembled file is {total} bytes, over the limit of {limits.max_file_size}")
    data = b"".join(parts)
    actual = hashlib.sha1(data).hexdigest()
    if actual != checksum:
        raise ChecksumMismatch(f"the assembled file's SHA-1 is {actual}, not the announced {checksum}")
    return data
