"""Automatic fetching, only when the user turned it on (setting ``civitai_auto_fetch``): when the browser
shows the library, fetch info for LoRAs that have none (files Civitai did not know stay quiet for a week)
and check for new versions once a day. At most one automatic round per :data:`INTERVAL` per host, and
never while one of its jobs still runs.
"""

from __future__ import annotations

import threading
import time
from typing import Any

INTERVAL = 600.0

_lock = threading.Lock()
_last: dict[int, tuple[float, list[str]]] = {}  # id(host) -> (time, job ids)


def maybe_start(host: Any, now: float | None = None) -> list[str]:
    """Start the automatic jobs when due; their ids (empty when nothing was started)."""
    try:
        settings = host.settings()
    except Exception:
        return []
    if not getattr(settings, "civitai_auto_fetch", False):
        return []
    from lib_lora.remote.jobs import service_for
    from lib_lora.remote.versions import due

    now = time.time() if now is None else now
    svc = service_for(host)
    with _lock:
        last = _last.get(id(host))
        if last is not None:
            if now - last[0] < INTERVAL:
                return []
            for jid in last[1]:
                try:
                    if not svc.jobs.get(jid).done:
                        return []
                except KeyError:
                    pass
        started = [svc.start_fetch(None).id]
        if due(host.data_dir(), True, now):
            started.append(svc.start_version_check().id)
        _last[id(host)] = (now, started)
        return started
