"""The digest's symbolicator: minified JavaScript frames resolved through uploaded source maps.

For each distinct file URL in an event's frames, the source map is found by debug ID (the event's
`debug_meta` image whose `code_file` is that URL) or else by release and URL (`http://host/app.js`
served by the artifact `~/app.js`, then its `sourcemap` header, its `sourceMappingURL` comment, or
`app.js.map` beside it). Parsed maps are kept in a bounded in-memory LRU keyed by bundle and path, so
a map is parsed once per worker process, not once per event. Frames that cannot be resolved are kept
as they came; nothing here raises for a missing or unusable map.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from sqlalchemy.orm import Session
from symbolic import SymbolicError
from symbolic.sourcemap import SourceMapView, SourceView

from detector.intake.normalize import Frame, NormalizedEvent
from detector.sourcemaps.bundle import SOURCE_MAP_TYPES, InvalidBundle, read_bundle_file
from detector.sourcemaps.resolve import LoadedSourceMap, resolve_frame
from detector.sourcemaps.urls import artifact_url_candidates, decode_data_url, join_url, source_mapping_url
from detector.store import artifacts
from detector.store.artifacts import ArtifactRef

if TYPE_CHECKING:
    from detector.intake.digest import Symbolicator

__all__ = ["ArtifactSymbolicator", "SourceMapCache", "make_symbolicator"]

log = logging.getLogger(__name__)

MINIFIED_TYPES = frozenset({"minified_source", "source"})
DEFAULT_MAX_FILE_BYTES = 256 * 1024 * 1024

CacheKey = tuple[int, str, int | None, str | None]
LookupKey = tuple[str, str, str, tuple[str, ...]]
MAX_LOOKUPS = 10_000
Generation = tuple[int, int]
"""`artifacts.bundles_generation`: changes whenever a bundle of the org is stored."""
FrameKey = tuple[int | None, int | None, str | None, str | None, str | None]
MAX_FRAMES_PER_MAP = 4096


@dataclass
class CachedMap:
    """A parsed map and the frames already resolved through it (the same error repeats a lot)."""

    loaded: LoadedSourceMap
    frames: dict[FrameKey, Frame | None] = field(default_factory=dict)

    def resolve(self, frame: Frame, url: str) -> Frame | None:
        key = (frame.lineno, frame.colno, frame.function, frame.module, url)
        if key in self.frames:
            return self.frames[key]
        resolved = resolve_frame(frame, self.loaded, frame_url=url)
        if len(self.frames) >= MAX_FRAMES_PER_MAP:
            self.frames.clear()
        self.frames[key] = resolved
        return resolved


@dataclass
class SourceMapCache:
    """Parsed source maps, least recently used evicted first, bounded by the bytes they were parsed from."""

    max_bytes: int = 512 * 1024 * 1024
    max_entries: int = 128
    _entries: OrderedDict[CacheKey, tuple[CachedMap, int]] = field(default_factory=OrderedDict)
    _size: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    hits: int = 0
    misses: int = 0

    def get(self, key: CacheKey) -> CachedMap | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                self.misses += 1
                return None
            self._entries.move_to_end(key)
            self.hits += 1
            return entry[0]

    def put(self, key: CacheKey, value: CachedMap, weight: int) -> None:
        with self._lock:
            previous = self._entries.pop(key, None)
            if previous is not None:
                self._size -= previous[1]
            self._entries[key] = (value, weight)
            self._size += weight
            while self._entries and (self._size > self.max_bytes or len(self._entries) > self.max_entries):
                _key, (_value, dropped) = self._entries.popitem(last=False)
                self._size -= dropped

    def __len__(self) -> int:
        return len(self._entries)


@dataclass(frozen=True, slots=True)
class _Located:
    """Where a frame URL's map (and the minified file it maps, if uploaded) is stored."""

    map_ref: ArtifactRef | None
    minified_ref: ArtifactRef | None
    inline_map: bytes | None = None


def _matching_urls(url: str) -> set[str]:
    return {url, *artifact_url_candidates(url)}


def _frame_url(frame: Frame) -> str | None:
    return frame.abs_path or frame.filename


def _resolvable(frame: Frame) -> bool:
    return frame.lineno is not None and frame.colno is not None and bool(_frame_url(frame))


def _best(refs: Sequence[ArtifactRef], urls: Sequence[str], types: frozenset[str]) -> ArtifactRef | None:
    """The newest file of one of `types` at the best-ranked URL of `urls`."""
    for url in urls:
        for ref in refs:  # newest bundle first
            if ref.url == url and ref.file_type in types:
                return ref
    return None


@dataclass
class ArtifactSymbolicator:
    """Callable as a digest `Symbolicator`; holds the parsed-map cache (one per worker process)."""

    cache: SourceMapCache = field(default_factory=SourceMapCache)
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES
    found_ttl: float = 60.0
    missing_ttl: float = 2.0
    clock: Callable[[], float] = time.monotonic
    _orgs: dict[int, str] = field(default_factory=dict)
    _lookups: dict[LookupKey, tuple[float, _Located | None, Generation]] = field(default_factory=dict)
    _generations: dict[str, tuple[float, Generation]] = field(default_factory=dict)
    _releases: dict[tuple[str, str], tuple[Generation, bool]] = field(default_factory=dict)

    def __call__(self, session: Session, project_id: int, event: NormalizedEvent) -> NormalizedEvent:
        if not event.frames:
            return event
        org = self._org(session, project_id)
        if org is None:
            return event
        generation = self._generation(session, org)
        if not event.debug_ids and not self._release_has_files(session, org, event.release, generation):
            return event  # nothing to find a map by: the common case of a release without uploads
        urls = list(dict.fromkeys(url for f in event.frames if _resolvable(f) and (url := _frame_url(f))))
        if not urls:
            return event
        maps = {url: self._source_map_for(session, org, event, url, generation) for url in urls}
        if not any(maps.values()):
            return event
        frames: list[Frame] = []
        for frame in event.frames:
            url = _frame_url(frame)
            cached = maps.get(url) if url and _resolvable(frame) else None
            resolved = cached.resolve(frame, url) if cached is not None and url else None
            frames.append(resolved or frame)
        return replace(event, frames=frames)

    def _generation(self, session: Session, org: str) -> Generation:
        """The org's bundles generation, read again at most every `missing_ttl` seconds: a bundle
        uploaded (by any process) is seen within that time, and every answer remembered before it is
        dropped."""
        now = self.clock()
        known = self._generations.get(org)
        if known is not None and known[0] > now:
            return known[1]
        generation = artifacts.bundles_generation(session, org)
        self._generations[org] = (now + self.missing_ttl, generation)
        return generation

    def _release_has_files(self, session: Session, org: str, release: str, generation: Generation) -> bool:
        if not release:
            return False  # files are found by release and URL (debug IDs aside)
        key = (org, release)
        known = self._releases.get(key)
        if known is not None and known[0] == generation:
            return known[1]
        found = artifacts.release_has_files(session, org=org, release=release)
        if len(self._releases) >= MAX_LOOKUPS:
            self._releases.clear()
        self._releases[key] = (generation, found)
        return found

    def _org(self, session: Session, project_id: int) -> str | None:
        org = self._orgs.get(project_id)
        if org is None:
            org = artifacts.project_org(session, project_id)
            if org is not None:
                self._orgs[project_id] = org
        return org

    # --- finding the map ------------------------------------------------------------------------

    def _locate_by_debug_id(self, session: Session, org: str, debug_ids: Sequence[str]) -> _Located | None:
        refs = artifacts.find_artifacts_by_debug_id(session, org=org, debug_ids=debug_ids)
        map_ref = next((r for r in refs if r.file_type in SOURCE_MAP_TYPES), None)
        if map_ref is None:
            return None
        minified = next((r for r in refs if r.bundle_id == map_ref.bundle_id and r.file_type in MINIFIED_TYPES), None)
        return _Located(map_ref=map_ref, minified_ref=minified)

    def _locate_by_release(self, session: Session, org: str, release: str, url: str) -> _Located | None:
        candidates = artifact_url_candidates(url)
        if not candidates:
            return None
        map_guesses = [f"{c.split('?', 1)[0]}.map" for c in candidates]
        refs = artifacts.find_artifacts_by_url(session, org=org, release=release, urls=candidates + map_guesses)
        minified = _best(refs, candidates, MINIFIED_TYPES)
        if minified is None:
            map_only = _best(refs, map_guesses, SOURCE_MAP_TYPES)
            return _Located(map_ref=map_only, minified_ref=None) if map_only else None
        reference = minified.sourcemap
        if reference is None:
            content = self._read(session, minified)
            reference = source_mapping_url(content) if content is not None else None
        if reference is not None and reference.startswith("data:"):
            inline = decode_data_url(reference)
            return _Located(map_ref=None, minified_ref=minified, inline_map=inline) if inline else None
        map_urls = [join_url(minified.url, reference)] if reference else []
        map_urls.append(f"{minified.url.split('?', 1)[0]}.map")
        map_ref = artifacts.find_bundle_file(session, bundle_id=minified.bundle_id, urls=map_urls)
        if map_ref is None:
            others = artifacts.find_artifacts_by_url(session, org=org, release=release, urls=map_urls)
            map_ref = _best(others, map_urls, SOURCE_MAP_TYPES)
        return _Located(map_ref=map_ref, minified_ref=minified) if map_ref else None

    def _locate(
        self, session: Session, org: str, event: NormalizedEvent, url: str, generation: Generation
    ) -> _Located | None:
        """Where `url`'s map is, remembered while the org's bundles stay the same (a found map at most
        `found_ttl` seconds); a map uploaded after the first events of a release is picked up once
        the generation is read again, within `missing_ttl` seconds."""
        debug_ids = tuple(
            sorted(
                str(image["debug_id"])
                for image in event.debug_ids
                if image.get("debug_id") and image.get("code_file") in _matching_urls(url)
            )
        )
        key: LookupKey = (org, event.release, url, debug_ids)
        now = self.clock()
        remembered = self._lookups.get(key)
        if remembered is not None and remembered[2] == generation and (remembered[1] is None or remembered[0] > now):
            return remembered[1]
        located = self._locate_by_debug_id(session, org, debug_ids) if debug_ids else None
        if located is None and event.release:
            located = self._locate_by_release(session, org, event.release, url)
        if len(self._lookups) >= MAX_LOOKUPS:
            self._lookups.clear()
        self._lookups[key] = (now + self.found_ttl, located, generation)
        return located

    def _source_map_for(
        self, session: Session, org: str, event: NormalizedEvent, url: str, generation: Generation
    ) -> CachedMap | None:
        try:
            located = self._locate(session, org, event, url, generation)
            return self._load(session, located) if located is not None else None
        except (SymbolicError, InvalidBundle) as exc:
            # validated at upload, so this is a damaged row or a map symbolic reads differently now
            log.warning("source map for %s in org %s is unusable: %s", url, org, exc)
            return None

    # --- loading, through the cache -------------------------------------------------------------

    def _read(self, session: Session, ref: ArtifactRef, bundles: dict[int, bytes | None] | None = None) -> bytes | None:
        """The file's bytes; `bundles` memoises bundle blobs within one load (map and minified file
        usually share a bundle, and a bundle can be large)."""
        bundles = {} if bundles is None else bundles
        if ref.bundle_id not in bundles:
            bundles[ref.bundle_id] = artifacts.load_bundle_data(session, ref.bundle_id)
        data = bundles[ref.bundle_id]
        if data is None:
            return None
        return read_bundle_file(data, ref.path, max_size=self.max_file_bytes)

    def _load(self, session: Session, located: _Located) -> CachedMap | None:
        minified = located.minified_ref
        map_ref = located.map_ref
        if map_ref is not None:
            key: CacheKey = (
                map_ref.bundle_id,
                map_ref.path,
                minified.bundle_id if minified else None,
                minified.path if minified else None,
            )
        elif minified is not None:
            key = (minified.bundle_id, f"{minified.path}#inline", minified.bundle_id, minified.path)
        else:
            return None
        cached = self.cache.get(key)
        if cached is not None:
            return cached
        bundles: dict[int, bytes | None] = {}
        map_bytes = located.inline_map if map_ref is None else self._read(session, map_ref, bundles)
        if map_bytes is None:
            return None
        minified_bytes = self._read(session, minified, bundles) if minified is not None else None
        loaded = CachedMap(
            LoadedSourceMap(
                sourcemap=SourceMapView.from_json_bytes(map_bytes),
                minified=SourceView.from_bytes(minified_bytes) if minified_bytes is not None else None,
                map_url=map_ref.url if map_ref is not None else (minified.url if minified else ""),
            )
        )
        self.cache.put(key, loaded, len(map_bytes) + len(minified_bytes or b""))
        return loaded


def make_symbolicator(*, cache_bytes: int = 512 * 1024 * 1024, cache_entries: int = 128) -> Symbolicator:
    """A `Symbolicator` for the digest, with its own parsed-map cache of at most `cache_bytes` of input."""
    return ArtifactSymbolicator(cache=SourceMapCache(max_bytes=cache_bytes, max_entries=cache_entries))
