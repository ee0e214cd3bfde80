"""Undo the ``Content-Encoding`` of a request body without ever holding more than the size limit.

SDKs and browsers send envelopes as identity, gzip or deflate. "deflate" is ambiguous in practice: the
HTTP spec means a zlib stream, but some clients send a raw deflate stream, so both are accepted. The
decompressor is fed with ``max_length`` so a small compressed "bomb" stops after ``max_size + 1`` bytes
of output instead of inflating into memory.
"""

from __future__ import annotations

import zlib

__all__ = ["BodyTooLarge", "CorruptBody", "UnsupportedEncoding", "decode_body"]

# wbits values for zlib.decompressobj: a gzip wrapper, a zlib wrapper, no wrapper (raw deflate).
_GZIP_WBITS = 16 + zlib.MAX_WBITS
_ZLIB_WBITS = zlib.MAX_WBITS
_RAW_WBITS = -zlib.MAX_WBITS
_GZIP_MAGIC = b"\x1f\x8b"
# Compressed input is fed in slices so one call never has to look at a huge input buffer at once.
_INPUT_SLICE = 64 * 1024


class BodyTooLarge(Exception):
    """The decoded body is larger than the allowed size."""

    def __init__(self, max_size: int) -> None:
        super().__init__(f"decoded body exceeds {max_size} bytes")
        self.max_size = max_size


class UnsupportedEncoding(ValueError):
    """The ``Content-Encoding`` names a coding this server does not decode."""


class CorruptBody(ValueError):
    """The body is not valid data for its ``Content-Encoding`` (bad header, checksum or truncated)."""


def _inflate(data: bytes, wbits: int, *, max_size: int, coding: str) -> bytes:
    """Inflate one or more concatenated streams of the same wrapper, stopping past ``max_size`` bytes."""
    out = bytearray()
    pending = data
    while True:
        decompressor = zlib.decompressobj(wbits)
        try:
            for start in range(0, max(len(pending), 1), _INPUT_SLICE):
                chunk = pending[start : start + _INPUT_SLICE]
                while chunk:
                    out += decompressor.decompress(chunk, max_size + 1 - len(out))
                    if len(out) > max_size:
                        raise BodyTooLarge(max_size)
                    chunk = decompressor.unconsumed_tail
                    if decompressor.eof:
                        break
                if decompressor.eof:
                    break
            out += decompressor.flush()
        except zlib.error as exc:
            raise CorruptBody(f"invalid {coding} data: {exc}") from None
        if len(out) > max_size:
            raise BodyTooLarge(max_size)
        if not decompressor.eof:
            raise CorruptBody(f"truncated {coding} data")
        consumed = len(pending) - len(decompressor.unused_data)
        rest = pending[consumed:]
        if not rest:
            return bytes(out)
        # RFC 1952 allows several gzip members back to back; anything else after the stream is garbage.
        if wbits == _GZIP_WBITS and rest.startswith(_GZIP_MAGIC):
            pending = rest
            continue
        raise CorruptBody(f"{len(rest)} unexpected bytes after the end of the {coding} stream")


def _looks_like_zlib(data: bytes) -> bool:
    """True when ``data`` starts with a valid zlib header (RFC 1950: CM=8, header checksum)."""
    return len(data) >= 2 and data[0] & 0x0F == 8 and (data[0] << 8 | data[1]) % 31 == 0


def _decode_one(body: bytes, coding: str, *, max_size: int) -> bytes:
    if coding in ("", "identity"):
        if len(body) > max_size:
            raise BodyTooLarge(max_size)
        return body
    if coding in ("gzip", "x-gzip"):
        if not body.startswith(_GZIP_MAGIC):
            raise CorruptBody("invalid gzip data: missing gzip header")
        return _inflate(body, _GZIP_WBITS, max_size=max_size, coding="gzip")
    if coding == "deflate":
        wbits = _ZLIB_WBITS if _looks_like_zlib(body) else _RAW_WBITS
        return _inflate(body, wbits, max_size=max_size, coding="deflate")
    raise UnsupportedEncoding(f"unsupported Content-Encoding: {coding!r}")


def decode_body(body: bytes, content_encoding: str | None, *, max_size: int) -> bytes:
    """Return ``body`` decoded according to ``content_encoding``.

    Accepts ``None``/``""``/``identity``, ``gzip``/``x-gzip`` and ``deflate`` (zlib-wrapped or raw), case
    and whitespace insensitive; a comma-separated list of codings is undone last-applied first. Raises
    :class:`BodyTooLarge` as soon as the output would exceed ``max_size`` bytes (at most ``max_size + 1``
    bytes are ever inflated per coding), :class:`UnsupportedEncoding` for any other coding, and
    :class:`CorruptBody` for data that does not decode.
    """
    if not content_encoding:  # what browsers send: no coding at all (the split below costs a few us)
        if len(body) > max_size:
            raise BodyTooLarge(max_size)
        return body
    codings = [c.strip().lower() for c in content_encoding.split(",")]
    for coding in reversed(codings):
        body = _decode_one(body, coding, max_size=max_size)
    return body
