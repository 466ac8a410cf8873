"""Fetch-info, download and new-version-check jobs for a host, answered in the same shape as the
training ``/jobs``: ``{"id", "kind", "created_at", "meta", "status": {"state", "step", "total",
"fraction", "message", "errors", "output_path", "started_at", "ended_at"}, "result"}`` with the states
``queued``, ``running``, ``cancelling``, ``cancelled``, ``failed``, ``succeeded``.

:class:`RemoteService` runs them for a host (the WebUI adapter or the standalone host) on the host's
:class:`JobRegistry`, a :class:`~lib_lora.background.BackgroundJobs` where at most :data:`MAX_RUNNING`
run at once (others wait queued) and the last :data:`KEEP` finished ones are remembered — they are
minutes long and need no history across restarts.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from typing import Any

from lib_lora.background import KEEP, BackgroundJobs, Job, JobContext
from lib_lora.errors import LoraStudioError

MAX_RUNNING = 2

RemoteJob = Job[Any]  # kind: "civitai-fetch" | "download" | "civitai-versions"


class JobRegistry(BackgroundJobs[Any]):
    """The remote jobs of one data folder."""

    def __init__(self, max_running: int = MAX_RUNNING) -> None:
        super().__init__(keep=KEEP, max_running=max_running)

    def start(self, kind: str, fn: Callable[[JobContext[Any]], tuple[str, Any, str | None]],
              meta: dict[str, Any]) -> RemoteJob:
        """Run ``fn(ctx) -> (message, result, output_path)`` in a thread; a result ``{"ok": False, ...}``
        fails the job with that message, a :class:`LoraStudioError` with its message, a cancel
        (``ctx.should_stop()``) ends it as cancelled."""

        def run(ctx: JobContext[Any]) -> Any:
            message, result, output = fn(ctx)
            ctx.update(message=message, output_path=output)
            if isinstance(result, dict) and result.get("ok") is False:
                ctx.fail(message)
            return result

        return self.submit(kind, run, meta)


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
