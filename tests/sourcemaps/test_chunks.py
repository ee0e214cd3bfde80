from __future__ import annotations

import hashlib

import pytest

from detector.errors import InvalidInput, PayloadTooLarge
from detector.sourcemaps.chunks import (
    ChecksumMismatch,
    ChunkLimits,
    assemble_file,
    chunk_upload_options,
    parse_assemble_request,
    verify_chunk,
)

LIMITS = ChunkLimits(chunk_size=16, max_file_size=64)


def sha1(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest()


def test_options_announce_what_sentry_cli_needs() -> None:
    options = chunk_upload_options("http://h/api/0/organizations/acme/chunk-upload/", ChunkLimits())
    assert options["url"] == "http://h/api/0/organizations/acme/chunk-upload/"
    assert options["hashAlgorithm"] == "sha1"
    assert options["compression"] == ["gzip"]
    assert "artifact_bundles" in options["accept"]
    for key in ("chunkSize", "chunksPerRequest", "maxRequestSize", "maxFileSize", "concurrency"):
        assert isinstance(options[key], int) and options[key] > 0
    assert options["chunkSize"] <= options["maxRequestSize"]


def test_a_chunk_is_accepted_under_its_sha1_name_in_any_case() -> None:
    data = b"chunk of bundle"
    assert verify_chunk(sha1(data).upper(), data, LIMITS) == sha1(data)


def test_a_chunk_whose_content_does_not_match_its_name_is_refused_naming_it() -> None:
    name = sha1(b"what was announced")
    with pytest.raises(InvalidInput, match=f"chunk {name} does not match its content"):
        verify_chunk(name, b"what arrived", LIMITS)


@pytest.mark.parametrize("name", [None, "", "app.js", "g" * 40, "a" * 39])
def test_a_chunk_name_must_be_a_sha1(name: str | None) -> None:
    with pytest.raises(InvalidInput, match="must be the SHA-1"):
        verify_chunk(name, b"x", LIMITS)


def test_a_chunk_over_the_chunk_size_is_too_large() -> None:
    data = b"x" * 17
    with pytest.raises(PayloadTooLarge, match="over the chunk size of 16"):
        verify_chunk(sha1(data), data, LIMITS)


def test_assemble_request_is_read_like_sentry_cli_sends_it() -> None:
    checksum = sha1(b"bundle")
    request = parse_assemble_request(
        {"checksum": checksum, "chunks": [checksum], "projects": ["web", "web"], "version": "web@1.2.0"},
        LIMITS,
    )
    assert request.checksum == checksum
    assert request.chunks == [checksum]
    assert request.projects == ["web"]
    assert (request.version, request.dist) == ("web@1.2.0", None)


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ([], "JSON object"),
        ({"chunks": [], "projects": ["web"]}, "'checksum'"),
        ({"checksum": "A" * 40, "chunks": [], "projects": ["web"]}, "'checksum'"),
        ({"checksum": "a" * 40, "chunks": "a" * 40, "projects": ["web"]}, "'chunks'"),
        ({"checksum": "a" * 40, "chunks": ["nope"], "projects": ["web"]}, "'chunks'"),
        ({"checksum": "a" * 40, "chunks": [], "projects": []}, "'projects'"),
        ({"checksum": "a" * 40, "chunks": []}, "'projects'"),
        ({"checksum": "a" * 40, "chunks": [], "projects": ["web"], "version": 3}, "'version'"),
        ({"checksum": "a" * 40, "chunks": [], "projects": ["web"], "dist": "d" * 65}, "'dist'"),
    ],
)
def test_malformed_assemble_requests_say_which_field(payload: object, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        parse_assemble_request(payload, LIMITS)


def test_assemble_requests_past_the_file_size_are_too_large() -> None:
    with pytest.raises(PayloadTooLarge):
        parse_assemble_request({"checksum": "a" * 40, "chunks": ["a" * 40] * 5, "projects": ["w"]}, LIMITS)


def test_chunks_are_concatenated_in_order_and_checked_against_the_checksum() -> None:
    parts = [b"first-", b"second-", b"third"]
    assert assemble_file(sha1(b"first-second-third"), parts, LIMITS) == b"first-second-third"
    with pytest.raises(ChecksumMismatch, match="not the announced"):
        assemble_file(sha1(b"first-second-third"), list(reversed(parts)), LIMITS)
    with pytest.raises(PayloadTooLarge):
        assemble_file(sha1(b""), [b"x" * 40, b"y" * 40], LIMITS)
