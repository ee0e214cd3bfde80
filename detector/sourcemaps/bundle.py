"""Reading an artifact bundle: the zip sentry-cli builds for `sourcemaps upload`.

The zip holds `manifest.json` and the files it lists. The manifest maps each path in the zip to the
file's `url` (such as `~/app.js`), its `type` (`minified_source`, `source_map`, `source`, ...) and its
`headers` (`sourcemap` names the map of a minified file, `debug-id` ties both to events). A bundle is
checked whole before anything is stored: a bad zip, a missing or malformed manifest, a listed file
that is absent, or a source map that does not parse is an :class:`InvalidBundle`.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from symbolic import SymbolicError
from symbolic.sourcemap import SourceMapView

from detector.json_text import NotJson, parse_json
from detector.sourcemaps.names import unsafe_path_problem, unsafe_url_problem

__all__ = ["BundleFile", "InvalidBundle", "ParsedBundle", "UnsafeArtifactName", "parse_bundle", "read_bundle_file"]

MANIFEST = "manifest.json"
SOURCE_MAP_TYPES = frozenset({"source_map", "indexed_source_map"})
MAX_FILES = 10_000


class InvalidBundle(ValueError):
    """The artifact bundle cannot be used; the message says which part and why."""


class UnsafeArtifactName(InvalidBundle):
    """A file's path or URL has a `..` segment or is absolute (`names`): refused, not stored as given."""


@dataclass(frozen=True, slots=True)
class BundleFile:
    """One file of a bundle as the manifest describes it; `path` is its name inside the zip."""

    path: str
    url: str
    file_type: str
    debug_id: str | None = None
    sourcemap: str | None = None


@dataclass(frozen=True, slots=True)
class ParsedBundle:
    manifest: dict[str, Any]
    files: list[BundleFile]
    release: str | None
    dist: str | None
    debug_id: str | None


def _header(headers: Mapping[str, Any], *names: str) -> str | None:
    lowered = {str(k).lower(): v for k, v in headers.items()}
    for name in names:
        value = lowered.get(name)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None


def _open_zip(data: bytes) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError) as exc:
        raise InvalidBundle(f"the artifact bundle is not a valid zip file: {exc}") from None


MAX_RATIO = 100.0
"""The most a member may inflate per compressed byte: source maps and minified code compress 3 to 20 times,
a zip bomb a thousand times."""
RATIO_FLOOR = 1024 * 1024
"""Members that inflate to less than this are not held to `MAX_RATIO` (a small file of one repeated byte)."""
_READ_SIZE = 64 * 1024


@dataclass
class _Budget:
    """What is left of the bundle's `max_uncompressed` bytes, spent as members actually inflate."""

    left: int
    limit: int


def _read_member(
    archive: zipfile.ZipFile,
    path: str,
    max_size: int,
    *,
    keep: bool = True,
    budget: _Budget | None = None,
    max_ratio: float = MAX_RATIO,
) -> bytes:
    """The member's bytes (or b"" with `keep=False`), inflated a slice at a time. Refused before inflating
    when its declared size is over `max_size` or `max_ratio` times its compressed size, and as soon as what
    it actually inflates to passes its declared size or `budget`: a zip whose headers lie never makes this
    hold more than they declare, and a discarded member is never held at all."""
    try:
        info = archive.getinfo(path)
    except KeyError:
        raise InvalidBundle(f"the manifest lists {path!r} but the bundle has no such file") from None
    if info.file_size > max_size:
        raise InvalidBundle(f"{path!r} is {info.file_size} bytes, over the limit of {max_size}")
    if info.file_size > RATIO_FLOOR and info.file_size > max_ratio * max(info.compress_size, 1):
        raise InvalidBundle(
            f"{path!r} inflates to {info.file_size} bytes from {info.compress_size}, more than {max_ratio:g} times: "
            "refused as a zip bomb"
        )
    kept = bytearray()
    inflated = 0
    try:
        with archive.open(info) as handle:
            while piece := handle.read(_READ_SIZE):
                inflated += len(piece)
                if inflated > max_size:
                    raise InvalidBundle(f"{path!r} is over the limit of {max_size} bytes")
                if inflated > info.file_size:
                    raise InvalidBundle(f"{path!r} inflates past the {info.file_size} bytes its zip header declares")
                if budget is not None:
                    budget.left -= len(piece)
                    if budget.left < 0:
                        raise InvalidBundle(f"the bundle unpacks to more than the limit of {budget.limit} bytes")
                if keep:
                    kept += piece
    except (zipfile.BadZipFile, NotImplementedError, EOFError, OSError, ValueError) as exc:
        raise InvalidBundle(f"cannot read {path!r} from the artifact bundle: {exc}") from None
    return bytes(kept)


def _manifest_files(manifest: dict[str, Any]) -> list[BundleFile]:
    raw_files = manifest.get("files")
    if not isinstance(raw_files, dict):
        raise InvalidBundle("manifest.json has no 'files' object")
    if len(raw_files) > MAX_FILES:
        raise InvalidBundle(f"the bundle lists {len(raw_files)} files, over the limit of {MAX_FILES}")
    files: list[BundleFile] = []
    for path, entry in raw_files.items():
        if not isinstance(entry, dict):
            raise InvalidBundle(f"manifest entry for {path!r} is not an object")
        url = entry.get("url")
        if not isinstance(url, str) or not url.strip():
            raise InvalidBundle(f"manifest entry for {path!r} has no 'url'")
        if (problem := unsafe_path_problem(path)) is not None:
            raise UnsafeArtifactName(f"artifact file {path!r} {problem}")
        if (problem := unsafe_url_problem(url.strip())) is not None:
            raise UnsafeArtifactName(f"artifact URL {url.strip()!r} (file {path!r}) {problem}")
        headers = entry.get("headers") if isinstance(entry.get("headers"), dict) else {}
        file_type = entry.get("type") if isinstance(entry.get("type"), str) else "unknown"
        debug_id = _header(headers, "debug-id", "debug_id")
        files.append(
            BundleFile(
                path=path,
                url=url.strip(),
                file_type=file_type,
                debug_id=debug_id.lower() if debug_id else None,
                sourcemap=_header(headers, "sourcemap", "x-sourcemap"),
            )
        )
    return files


def parse_bundle(data: bytes, *, max_uncompressed: int, max_ratio: float = MAX_RATIO) -> ParsedBundle:
    """Check `data` is a usable artifact bundle and describe its files.

    Every listed file must be present, and every `source_map` must parse; their total uncompressed
    size must stay within `max_uncompressed` bytes, and no member may inflate more than `max_ratio` times
    its compressed size. Raises :class:`InvalidBundle` otherwise. CPU-bound: call it off the event loop.
    """
    with _open_zip(data) as archive:
        total = sum(info.file_size for info in archive.infolist())
        if total > max_uncompressed:
            raise InvalidBundle(f"the bundle unpacks to {total} bytes, over the limit of {max_uncompressed}")
        if MANIFEST not in archive.namelist():
            raise InvalidBundle("the artifact bundle has no manifest.json")
        # the declared sizes are the sender's word: what members actually inflate to is counted as they do
        budget = _Budget(max_uncompressed, max_uncompressed)
        try:
            manifest = parse_json(
                _read_member(archive, MANIFEST, max_uncompressed, budget=budget, max_ratio=max_ratio), MANIFEST
            )
        except NotJson as exc:
            raise InvalidBundle(str(exc)) from None
        if not isinstance(manifest, dict):
            raise InvalidBundle("manifest.json is not a JSON object")
        files = _manifest_files(manifest)
        for file in files:
            # only source maps are parsed, so only they are held; the others are inflated to check, then dropped
            is_map = file.file_type in SOURCE_MAP_TYPES
            content = _read_member(
                archive, file.path, max_uncompressed, keep=is_map, budget=budget, max_ratio=max_ratio
            )
            if is_map:
                try:
                    SourceMapView.from_json_bytes(content)
                except SymbolicError as exc:
                    raise InvalidBundle(f"source map {file.url!r} ({file.path}) does not parse: {exc}") from None
    debug_id = manifest.get("debug_id")
    return ParsedBundle(
        manifest=manifest,
        files=files,
        release=manifest.get("release") if isinstance(manifest.get("release"), str) else None,
        dist=manifest.get("dist") if isinstance(manifest.get("dist"), str) else None,
        debug_id=debug_id.lower() if isinstance(debug_id, str) and debug_id else None,
    )


def read_bundle_file(data: bytes, path: str, *, max_size: int) -> bytes:
    """The bytes of `path` inside the bundle `data` (already validated by :func:`parse_bundle`)."""
    with _open_zip(data) as archive:
        return _read_member(archive, path, max_size)
