from __future__ import annotations

import gzip
import time
import tracemalloc
import zlib

import pytest

from detector.intake.decode import BodyTooLarge, CorruptBody, UnsupportedEncoding, decode_body

BODY = b'{"event_id":"cf6f6b56de78421ba53414ce703d646b"}\n{"type":"event"}\n{"level":"error"}\n' * 20


def raw_deflate(data: bytes) -> bytes:
    compressor = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    return compressor.compress(data) + compressor.flush()


@pytest.fixture(scope="module")
def gzip_bomb() -> bytes:
    """300 MB of zeros, gzip-compressed in 1 MB steps so building it needs little memory (~1.3 MB)."""
    compressor = zlib.compressobj(1, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    zeros = bytes(1 << 20)
    parts = [compressor.compress(zeros) for _ in range(300)]
    parts.append(compressor.flush())
    return b"".join(parts)


@pytest.mark.parametrize("encoding", [None, "", "identity", " Identity "])
def test_identity_returns_body_unchanged(encoding: str | None) -> None:
    assert decode_body(BODY, encoding, max_size=len(BODY)) == BODY


def test_identity_larger_than_limit_is_too_large() -> None:
    with pytest.raises(BodyTooLarge, match=f"exceeds {len(BODY) - 1} bytes"):
        decode_body(BODY, None, max_size=len(BODY) - 1)


@pytest.mark.parametrize("encoding", ["gzip", "GZIP", "x-gzip"])
def test_gzip(encoding: str) -> None:
    assert decode_body(gzip.compress(BODY), encoding, max_size=10_000) == BODY


def test_concatenated_gzip_members_are_joined() -> None:
    body = gzip.compress(BODY[:100]) + gzip.compress(BODY[100:])
    assert decode_body(body, "gzip", max_size=10_000) == BODY


def test_deflate_accepts_zlib_and_raw_streams() -> None:
    assert decode_body(zlib.compress(BODY), "deflate", max_size=10_000) == BODY
    assert decode_body(raw_deflate(BODY), "deflate", max_size=10_000) == BODY


def test_stacked_codings_are_undone_in_reverse_order() -> None:
    body = gzip.compress(zlib.compress(BODY))
    assert decode_body(body, "deflate, gzip", max_size=10_000) == BODY


def test_exact_limit_is_allowed_and_one_byte_more_is_not() -> None:
    assert decode_body(gzip.compress(BODY), "gzip", max_size=len(BODY)) == BODY
    with pytest.raises(BodyTooLarge):
        decode_body(gzip.compress(BODY), "gzip", max_size=len(BODY) - 1)
    with pytest.raises(BodyTooLarge):
        decode_body(raw_deflate(BODY), "deflate", max_size=len(BODY) - 1)


def test_gzip_bomb_is_stopped_quickly_with_little_memory(gzip_bomb: bytes) -> None:
    tracemalloc.start()
    started = time.perf_counter()
    try:
        with pytest.raises(BodyTooLarge):
            decode_body(gzip_bomb, "gzip", max_size=1 << 20)
        elapsed = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert elapsed < 0.5
    # The output buffer is capped at max_size + 1; allow a few copies of it, nothing near 300 MB.
    assert peak < 8 * (1 << 20)


@pytest.mark.parametrize("encoding", ["br", "zstd", "compress", "gzip, br"])
def test_unsupported_encodings(encoding: str) -> None:
    with pytest.raises(UnsupportedEncoding, match="unsupported Content-Encoding"):
        decode_body(BODY, encoding, max_size=10_000)


@pytest.mark.parametrize(
    ("body", "encoding", "fragment"),
    [
        (BODY, "gzip", "missing gzip header"),
        (gzip.compress(BODY)[:-12], "gzip", "truncated gzip"),
        (gzip.compress(BODY)[:-4] + b"\0\0\0\0", "gzip", "invalid gzip data"),
        (gzip.compress(BODY) + b"garbage", "gzip", "unexpected bytes after the end"),
        (b"\x1f\x8b\x08\x00garbage-garbage", "gzip", "invalid gzip data"),
        (b"", "gzip", "missing gzip header"),
        (b"", "deflate", "truncated deflate"),
        (zlib.compress(BODY)[:20], "deflate", "truncated deflate"),
        (b"\xff\xff\xff not deflate", "deflate", "invalid deflate data"),
    ],
)
def test_corrupt_bodies(body: bytes, encoding: str, fragment: str) -> None:
    with pytest.raises(CorruptBody, match=fragment):
        decode_body(body, encoding, max_size=10_000)
