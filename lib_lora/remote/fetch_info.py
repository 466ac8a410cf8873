"""The fetch-info job: for each LoRA file, its SHA-256 -> Civitai version + model -> sidecars and preview.

Hashes are looked up 100 at a time with the bulk endpoint (one request per hundred files); then the
model objects (one per distinct model, cached) and previews are fetched with at most ``workers``
requests in flight. Files that already have a ``.civitai.info`` are skipped unless ``refetch``; a file
Civitai does not know is remembered for a week (:class:`UnknownMemory`) unless ``refetch``. When
Civitai cannot be reached the job stops at once with one message instead of failing file by file.
"""

from __future__ import annotations

import dataclasses
import json
import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from lib_lora import sidecars as sc
from lib_lora.errors import LoraStudioError
from lib_lora.remote import sidecar_out as out
from lib_lora.remote.civitai import BULK_LIMIT, CivitaiClient
from lib_lora.remote.common import Cancelled, RemoteError

UNKNOWN_TTL = 7 * 24 * 3600
UNKNOWN_FILE = "civitai-unknown.json"

FETCHED = "fetched"
UNKNOWN = "unknown"  # Civitai does not know the file (asked now)
REMEMBERED = "remembered"  # Civitai did not know it less than a week ago: not asked again
SKIPPED = "skipped"  # already has a .civitai.info
FAILED = "failed"
CANCELLED = "cancelled"

Progress = Callable[[int, int, str], None]


@dataclass(frozen=True)
class FetchOptions:
    refetch: bool = False  # also files with info, and forget the one-week memory
    previews: bool = True
    nsfw_max_level: int = 2  # Civitai bit value: 1 PG, 2 PG-13, 4 R, 8 X, 16 XXX
    nsfw_mode: str = out.NSFW_BLUR  # "blur" or "skip" images above the limit
    workers: int = 4

    @classmethod
    def from_settings(cls, settings: Any = None, **changes: Any) -> FetchOptions:
        kw: dict[str, Any] = {}
        if settings is not None:
            level = getattr(settings, "civitai_preview_nsfw", None)
            if isinstance(level, str) and level in out.NSFW_LEVELS:
                kw["nsfw_max_level"] = out.NSFW_LEVELS[level]
            mode = getattr(settings, "civitai_preview_mode", None)
            if mode in (out.NSFW_BLUR, out.NSFW_SKIP):
                kw["nsfw_mode"] = mode
        kw.update(changes)
        return cls(**kw)


@dataclass(frozen=True)
class FileResult:
    path: str
    status: str
    message: str = ""
    sha256: str | None = None
    version_id: int | None = None
    model_id: int | None = None
    base_model: str | None = None
    filled: tuple[str, ...] = ()
    preview: str | None = None
    problems: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return sc.to_jsonable(self)


@dataclass(frozen=True)
class FetchReport:
    results: tuple[FileResult, ...] = ()
    offline: str | None = None  # the one message when Civitai could not be reached
    cancelled: bool = False

    def count(self, status: str) -> int:
        return sum(1 for r in self.results if r.status == status)

    @property
    def ok(self) -> bool:
        """Every file was fetched, or is unknown to Civitai, or needed nothing."""
        return not self.cancelled and self.offline is None and self.count(FAILED) == 0

    def summary(self) -> str:
        parts = [f"{self.count(FETCHED)} fetched", f"{self.count(UNKNOWN) + self.count(REMEMBERED)} unknown to Civitai"]
        if self.count(SKIPPED):
            parts.append(f"{self.count(SKIPPED)} already had info")
        parts.append(f"{self.count(FAILED)} failed")
        if self.count(CANCELLED):
            parts.append(f"{self.count(CANCELLED)} cancelled")
        line = "fetch-info: " + ", ".join(parts)
        if self.offline:
            line += f" — {self.offline}"
        return line

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "summary": self.summary(), "offline": self.offline, "cancelled": self.cancelled,
                "results": [r.to_dict() for r in self.results]}


class UnknownMemory:
    """SHA-256 of files Civitai did not know, with the time asked (a JSON file in the data folder)."""

    def __init__(self, path: str | os.PathLike[str] | None, ttl: float = UNKNOWN_TTL) -> None:
        self.path = os.fspath(path) if path is not None else None
        self.ttl = ttl
        self._lock = threading.Lock()
        self._data: dict[str, float] = {}
        if self.path is not None:
            try:
                with open(self.path, encoding="utf-8") as fh:
                    raw = json.load(fh)
                if isinstance(raw, dict):
                    self._data = {str(k): float(v) for k, v in raw.items() if isinstance(v, (int, float))}
            except (OSError, ValueError):
                self._data = {}

    def recent(self, sha256: str, now: float | None = None) -> bool:
        t = self._data.get(sha256.lower())
        return t is not None and (now or time.time()) - t < self.ttl

    def remember(self, hashes: Sequence[str]) -> None:
        with self._lock:
            now = time.time()
            for h in hashes:
                self._data[h.lower()] = now

    def forget(self, hashes: Sequence[str]) -> None:
        with self._lock:
            for h in hashes:
                self._data.pop(h.lower(), None)

    def save(self) -> None:
        if self.path is None:
            return
        with self._lock:
            now = time.time()
            keep = {k: v for k, v in self._data.items() if now - v < self.ttl}
            try:
                os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
                sc.atomic_write_text(self.path, json.dumps(keep, separators=(",", ":")))
            except (OSError, LoraStudioError):
                pass  # a memory we cannot keep only costs a re-query


def memory_for(data_dir: str | os.PathLike[str] | None) -> UnknownMemory:
    return UnknownMemory(os.path.join(os.fspath(data_dir), UNKNOWN_FILE) if data_dir is not None else None)


def _default_hasher(path: str) -> str:
    from lib_lora.hashing import hash_file

    return hash_file(path).sha256


class _ModelCache:
    """One ``GET /api/v1/models/{id}`` per model, shared by the workers."""

    def __init__(self, client: CivitaiClient) -> None:
        self.client = client
        self._lock = threading.Lock()
        self._events: dict[int, threading.Event] = {}
        self._values: dict[int, dict[str, Any] | None] = {}
        self._errors: dict[int, RemoteError] = {}

    def get(self, model_id: int) -> dict[str, Any] | None:
        with self._lock:
            ev = self._events.get(model_id)
            owner = ev is None
            if owner:
                ev = self._events[model_id] = threading.Event()
        assert ev is not None
        if owner:
            try:
                self._values[model_id] = self.client.model(model_id)
            except RemoteError as exc:
                self._errors[model_id] = exc
            finally:
                ev.set()
        else:
            ev.wait()
        if model_id in self._errors:
            raise self._errors[model_id]
        return self._values.get(model_id)


def apply_version(path: str, version: dict[str, Any], model: dict[str, Any] | None, client: CivitaiClient,
                  options: FetchOptions) -> FileResult:
    """Write the sidecars of ``path`` from a version object (and model object) and fetch its preview."""
    problems: list[str] = []
    out.write_civitai_info(path, version)
    if model is not None:
        out.write_api_info(path, model)
    filled: tuple[str, ...] = ()
    try:
        filled = out.fill_from_version(path, version, model)
    except LoraStudioError as exc:
        problems.append(exc.message)
    preview: str | None = None
    if options.previews and not out.has_preview(path):
        choice = out.pick_preview(version.get("images"), options.nsfw_max_level, options.nsfw_mode)
        if choice is not None:
            try:
                preview = out.download_preview(path, choice, client.auth, client.should_stop)
            except Cancelled:
                raise
            except RemoteError as exc:
                problems.append(exc.message)
    return FileResult(
        path=path,
        status=FETCHED,
        message="; ".join(problems),
        version_id=version.get("id") if isinstance(version.get("id"), int) else None,
        model_id=version.get("modelId") if isinstance(version.get("modelId"), int) else None,
        base_model=version.get("baseModel") if isinstance(version.get("baseModel"), str) else None,
        filled=filled,
        preview=preview,
        problems=tuple(problems),
    )


def fetch_info(
    paths: Sequence[str],
    client: CivitaiClient,
    options: FetchOptions | None = None,
    *,
    hasher: Callable[[str], str] | None = None,
    memory: UnknownMemory | None = None,
    progress: Progress | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> FetchReport:
    """Fetch Civitai info for ``paths``. Never raises for one file's trouble; see :class:`FetchReport`."""
    options = options or FetchOptions()
    memory = memory or UnknownMemory(None)
    hasher = hasher or _default_hasher
    stop = should_stop or (lambda: False)
    if client.should_stop is None:  # the caller's client is left as it is
        client = dataclasses.replace(client, should_stop=stop)
    total = len(paths)
    done = 0
    results: dict[str, FileResult] = {}
    lock = threading.Lock()

    def report(path: str, result: FileResult) -> None:
        nonlocal done
        with lock:
            results[path] = result
            done += 1
            n = done
        if progress is not None:
            progress(n, total, f"{os.path.basename(path)}: {result.status}")

    # 1. what to ask about
    todo: dict[str, str] = {}  # path -> sha256
    for path in paths:
        if stop():
            break
        if not options.refetch and os.path.isfile(sc.stem_path(path) + sc.CIVITAI_INFO_SUFFIX):
            report(path, FileResult(path, SKIPPED, "already has a .civitai.info"))
            continue
        if progress is not None:
            progress(done, total, f"hashing {os.path.basename(path)}")
        try:
            sha = hasher(path).lower()
        except LoraStudioError as exc:
            report(path, FileResult(path, FAILED, exc.message))
            continue
        except OSError as exc:
            report(path, FileResult(path, FAILED, f"{path}: cannot read: {exc.strerror or exc}"))
            continue
        if not options.refetch and memory.recent(sha):
            report(path, FileResult(path, REMEMBERED, "unknown to Civitai (asked less than a week ago)", sha256=sha))
            continue
        todo[path] = sha

    offline: str | None = None
    cancelled = False
    by_sha: dict[str, list[str]] = {}
    for path, sha in todo.items():
        by_sha.setdefault(sha, []).append(path)
    shas = list(by_sha)

    # 2. per hundred files: one bulk lookup, then model objects, sidecars and previews, a few in flight.
    # Only one hundred answers are held at a time (real version objects carry long descriptions).
    def work(path: str, sha: str, version: dict[str, Any], cache: _ModelCache) -> None:
        if stop():
            report(path, FileResult(path, CANCELLED, "cancelled", sha256=sha))
            return
        try:
            model: dict[str, Any] | None = None
            mid = version.get("modelId")
            if isinstance(mid, int):
                model = cache.get(mid)
            result = apply_version(path, version, model, client, options)
            report(path, dataclasses.replace(result, sha256=sha))
        except Cancelled:
            report(path, FileResult(path, CANCELLED, "cancelled", sha256=sha))
        except LoraStudioError as exc:
            report(path, FileResult(path, FAILED, exc.message, sha256=sha))
        except OSError as exc:
            report(path, FileResult(path, FAILED, f"{path}: {exc.strerror or exc}", sha256=sha))

    with ThreadPoolExecutor(max_workers=max(1, min(options.workers, 8)), thread_name_prefix="civitai") as pool:
        try:
            for i in range(0, len(shas), BULK_LIMIT):
                if stop():
                    raise Cancelled()
                chunk = shas[i:i + BULK_LIMIT]
                try:
                    found = client.versions_by_hashes(chunk)
                except Cancelled:
                    raise
                except RemoteError as exc:
                    if exc.kind == "offline":
                        offline = exc.message
                        break
                    for sha in chunk:
                        for p in by_sha[sha]:
                            report(p, FileResult(p, FAILED, exc.message, sha256=sha))
                    continue
                unknown = [s for s in chunk if s not in found]
                memory.remember(unknown)
                memory.forget(list(found))
                for sha in unknown:
                    for p in by_sha[sha]:
                        report(p, FileResult(p, UNKNOWN, "unknown to Civitai", sha256=sha))
                cache = _ModelCache(client)
                futures = [pool.submit(work, p, sha, v, cache) for sha, v in found.items() for p in by_sha[sha]]
                for f in futures:
                    f.result()
                del found, cache, futures
        except Cancelled:
            cancelled = True
    cancelled = cancelled or (stop() and any(r.status == CANCELLED for r in results.values()))
    memory.save()
    for path in paths:  # whatever was not reached
        if path not in results:
            status, msg = (FAILED, offline) if offline else (CANCELLED, "cancelled")
            results[path] = FileResult(path, status, msg or "", sha256=todo.get(path))
    cancelled = cancelled or (stop() and offline is None)
    return FetchReport(tuple(results[p] for p in paths if p in results), offline=offline, cancelled=cancelled)
