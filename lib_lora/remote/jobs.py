"""In-process jobs for fetches and downloads, answered in the same shape as the training ``/jobs``:
``{"id", "kind", "created_at", "meta", "status": {"state", "step", "total", "fraction", "message", "errors",
"output_path", "started_at", "ended_at"}, "result"}`` with the states ``queued``, ``running``,
``cancelling``, ``cancelled``, ``failed``, ``succeeded``.

:class:`RemoteService` runs them for a host (the WebUI adapter or the standalone host): fetch info for
named LoRAs or the whole library, download by URL, check for new versions. Each job runs in its own
daemon thread; at most :data:`MAX_RUNNING` run at once (others wait queued). Jobs are kept in memory
(the last :data:`KEEP` of them) — they are minutes long and need no history across restarts.
"""

from __future__ import annotations

import os
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from lib_lora.errors import LoraStudioError

QUEUED, RUNNING, CANCELLING, CANCELLED, FAILED, SUCCEEDED = (
    "queued", "running", "cancelling", "cancelled", "failed", "succeeded")
TERMINAL = frozenset({CANCELLED, FAILED, SUCCEEDED})
KEEP = 100
MAX_RUNNING = 2


@dataclass
class RemoteJob:
    id: str
    kind: str  # "civitai-fetch" | "download" | "civitai-versions"
    meta: dict[str, Any] = field(default_factory=dict)
    created_at: float = field(default_factory=time.time)
    state: str = QUEUED
    step: int = 0
    total: int = 0
    message: str = ""
    errors: list[str] = field(default_factory=list)
    output_path: str | None = None
    result: Any = None
    started_at: float | None = None
    ended_at: float | None = None
    stop: threading.Event = field(default_factory=threading.Event, repr=False)

    @property
    def done(self) -> bool:
        return self.state in TERMINAL

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "created_at": self.created_at,
            "meta": dict(self.meta),
            "status": {
                "state": self.state,
                "step": self.step,
                "total": self.total,
                "fraction": min(1.0, self.step / self.total) if self.total else (1.0 if self.state == SUCCEEDED else 0.0),
                "message": self.message,
                "errors": list(self.errors[-20:]),
                "output_path": self.output_path,
                "started_at": self.started_at,
                "ended_at": self.ended_at,
            },
            "result": self.result,
        }


class JobContext:
    """What a job function gets: progress reporting and the cancel flag."""

    def __init__(self, job: RemoteJob, lock: threading.Lock) -> None:
        self.job = job
        self._lock = lock

    def progress(self, step: int, total: int, message: str = "") -> None:
        with self._lock:
            self.job.step, self.job.total = step, total
            if message:
                self.job.message = message

    def should_stop(self) -> bool:
        return self.job.stop.is_set()


class JobRegistry:
    def __init__(self, max_running: int = MAX_RUNNING) -> None:
        self._lock = threading.Lock()
        self._jobs: OrderedDict[str, RemoteJob] = OrderedDict()
        self._slots = threading.Semaphore(max_running)

    def start(self, kind: str, fn: Callable[[JobContext], tuple[str, Any, str | None]], meta: dict[str, Any]) -> RemoteJob:
        """Run ``fn(ctx) -> (message, result, output_path)`` in a thread; its :class:`LoraStudioError` fails
        the job with its message, a cancel (``ctx.should_stop()``) ends it as cancelled."""
        job = RemoteJob(id=f"{kind}-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}", kind=kind, meta=meta)
        with self._lock:
            self._jobs[job.id] = job
            while len(self._jobs) > KEEP:
                oldest = next((k for k, j in self._jobs.items() if j.done), None)
                if oldest is None:
                    break
                del self._jobs[oldest]
        ctx = JobContext(job, self._lock)

        def runner() -> None:
            with self._slots:
                with self._lock:
                    if job.stop.is_set():
                        job.state, job.message, job.ended_at = CANCELLED, "cancelled before it started", time.time()
                        return
                    job.state, job.started_at = RUNNING, time.time()
                try:
                    message, result, output = fn(ctx)
                except LoraStudioError as exc:
                    with self._lock:
                        cancelled = job.stop.is_set() or getattr(exc, "kind", "") == "cancelled"
                        job.state = CANCELLED if cancelled else FAILED
                        job.message = exc.message
                        if not cancelled:
                            job.errors.append(exc.message)
                except Exception as exc:  # a bug must still end the job
                    with self._lock:
                        job.state, job.message = FAILED, f"internal error: {type(exc).__name__}: {exc}"
                        job.errors.append(job.message)
                else:
                    with self._lock:
                        job.result, job.output_path, job.message = result, output, message
                        ok = not (isinstance(result, dict) and result.get("ok") is False)
                        job.state = CANCELLED if job.stop.is_set() else (SUCCEEDED if ok else FAILED)
                        if not ok:
                            job.errors.append(message)
                finally:
                    with self._lock:
                        job.ended_at = time.time()

        threading.Thread(target=runner, daemon=True, name=f"lora-studio-{job.id}").start()
        return job

    def get(self, job_id: str) -> RemoteJob:
        with self._lock:
            job = self._jobs.get(job_id)
        if job is None:
            raise KeyError(job_id)
        return job

    def list(self, kind: str | None = None) -> list[RemoteJob]:
        with self._lock:
            jobs = [j for j in self._jobs.values() if kind is None or j.kind == kind]
        return list(reversed(jobs))

    def cancel(self, job_id: str) -> RemoteJob:
        job = self.get(job_id)
        with self._lock:
            if not job.done:
                job.stop.set()
                if job.state == RUNNING:
                    job.state = CANCELLING
        return job

    def wait(self, job_id: str, timeout: float | None = None) -> RemoteJob:
        end = None if timeout is None else time.monotonic() + timeout
        job = self.get(job_id)
        while not job.done and (end is None or time.monotonic() < end):
            time.sleep(0.02)
        return job


_REGISTRIES: dict[str, JobRegistry] = {}
_REG_LOCK = threading.Lock()


def registry_for(host: Any) -> JobRegistry:
    """The process's one registry per data folder (shared by the API and the UI of one host)."""
    try:
        key = str(host.data_dir())
    except Exception:
        key = f"host-{id(host)}"
    with _REG_LOCK:
        reg = _REGISTRIES.get(key)
        if reg is None:
            reg = _REGISTRIES[key] = JobRegistry()
        return reg


class RemoteService:
    """Fetch / download / version-check jobs for one host."""

    def __init__(self, host: Any, registry: JobRegistry | None = None) -> None:
        self.host = host
        self.jobs = registry or registry_for(host)

    def _settings(self) -> Any:
        try:
            return self.host.settings()
        except Exception:
            from lib_lora.settings import Settings

            return Settings()

    def _client(self, ctx: JobContext) -> Any:
        from lib_lora.remote.civitai import CivitaiClient

        return CivitaiClient.from_settings(self._settings(), should_stop=ctx.should_stop)

    def _rescan(self) -> None:
        try:
            self.host.rescan(wait=True)
        except Exception:
            pass

    def start_fetch(self, paths: Sequence[str] | None, *, refetch: bool = False) -> RemoteJob:
        """Fetch info for ``paths`` (``None``: every LoRA in the library)."""
        from lib_lora.remote.fetch_info import FetchOptions, fetch_info, memory_for

        settings = self._settings()
        meta = {"files": len(paths) if paths is not None else None, "all": paths is None, "refetch": refetch}

        def run(ctx: JobContext) -> tuple[str, Any, str | None]:
            lib = self.host.library()
            chosen = list(paths) if paths is not None else [e.path for e in lib.entries() if not e.legacy and not e.error]
            ctx.progress(0, len(chosen), "hashing and asking Civitai")

            def hasher(path: str) -> str:
                sha = lib.ensure_hashes(path).sha256
                if not sha:
                    raise LoraStudioError(f"{path}: no hash")
                return str(sha)

            report = fetch_info(chosen, self._client(ctx), FetchOptions.from_settings(settings, refetch=refetch),
                                hasher=hasher, memory=memory_for(self.host.data_dir()), progress=ctx.progress,
                                should_stop=ctx.should_stop)
            self._rescan()
            return report.summary(), report.to_dict(), None

        return self.jobs.start("civitai-fetch", run, meta)

    def lora_dir(self) -> str:
        roots = list(self.host.lora_roots())
        if not roots:
            raise LoraStudioError("no LoRA folder is configured")
        return str(roots[0])

    def start_download(self, url: str, *, subfolder: str | None = None) -> RemoteJob:
        from lib_lora.remote.common import civitai_base_url, safe_url
        from lib_lora.remote.download import download, parse_source
        from lib_lora.remote.fetch_info import FetchOptions

        settings = self._settings()
        parse_source(url, civitai_base_url(getattr(settings, "civitai_url", None)))  # refuse bad URLs at once
        lora_dir = self.lora_dir()

        def run(ctx: JobContext) -> tuple[str, Any, str | None]:
            result = download(url, lora_dir, client=self._client(ctx), subfolder=subfolder,
                              subfolder_mode=getattr(settings, "download_subfolder", "none"),
                              options=FetchOptions.from_settings(settings), progress=ctx.progress,
                              should_stop=ctx.should_stop,
                              staging_dir=os.path.join(str(self.host.data_dir()), "staging"))
            if result.version_id is not None:
                from lib_lora.remote.versions import installed_now

                installed_now(self.host.data_dir(), result.version_id)
            self._rescan()
            msg = ("already present: " if result.already_present else "downloaded: ") + result.path
            return msg, result.to_dict(), result.path

        return self.jobs.start("download", run, {"url": safe_url(url) if "://" in url else url, "subfolder": subfolder})

    def start_version_check(self) -> RemoteJob:
        from lib_lora.remote.versions import check_library, save_checks

        def run(ctx: JobContext) -> tuple[str, Any, str | None]:
            found = check_library(self.host.library(), self._client(ctx), progress=ctx.progress)
            save_checks(self.host.data_dir(), found)
            return f"{len(found)} LoRA(s) have a newer version", {"ok": True, "newer": found}, None

        return self.jobs.start("civitai-versions", run, {})


_SERVICES: dict[int, RemoteService] = {}


def service_for(host: Any) -> RemoteService:
    svc = _SERVICES.get(id(host))
    if svc is None or svc.host is not host:
        svc = _SERVICES[id(host)] = RemoteService(host)
    return svc
