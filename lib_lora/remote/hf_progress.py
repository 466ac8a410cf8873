"""Byte progress and mid-transfer cancel for one ``huggingface_hub.hf_hub_download`` call.

Two ways, chosen at run time because the installed ``huggingface_hub`` differs between the WebUIs
(A1111 1.10 / Forge ship an old 0.2x, the app extra pins 0.26.2) and newer environments:

- **progress bar class** — when ``hf_hub_download`` takes ``tqdm_class`` (newer versions), it gets a
  tqdm-compatible class built here. The library creates it with ``unit``/``unit_scale``/``total``/
  ``initial``/``desc`` (plain HTTP) or ``desc``/``total``/``unit``/``unit_scale``/``position``/
  ``bar_format``/``leave`` (Xet), uses it as a context manager and calls ``update(n)`` (``n`` may be
  negative when a server ignored a ``Range``), ``update_transfer(n)`` when the class has it (defining it
  makes Xet use one bar for both its counters), ``set_postfix_str(s, refresh=False)``, ``refresh()``,
  ``close()`` and reads/sets ``n`` and ``total``. ``update`` reports the bytes (at most
  :data:`MAX_REPORTS_PER_S` times a second) and raises :class:`TransferStopped` once ``should_stop()`` is
  true, which ends the transfer in the middle of the stream. Whether the partial blob stays for a resume
  is the library's choice: 0.2x/0.3x keep ``<etag>.incomplete`` and resume it; versions that download to
  a per-process ``<etag>.<random>.incomplete`` delete it on any error, so the next try starts over.
- **polling** — older versions run in a worker thread while this thread polls the size of the
  ``*.incomplete`` blob under the staging folder. Those versions fetch through a ``requests.Session``
  that is private to the calling thread (``huggingface_hub.get_session()``); the worker adds a response
  hook to its own session that makes the body iterator check ``should_stop()`` before each chunk of at
  most :data:`NET_CHUNK` bytes and raise :class:`TransferStopped`, so a cancel ends the transfer at once
  and the ``.incomplete`` blob stays for the resume. When that cannot work (``hf_transfer``/Xet, or a
  library whose session is not a ``requests.Session``), the cancel is reported after
  :data:`GRACE_S` seconds and says plainly that the transfer finishes in the background — into the
  staging folder only, never into the LoRA folder.
"""

from __future__ import annotations

import glob
import inspect
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from lib_lora.remote.common import Cancelled

MAX_REPORTS_PER_S = 4
NET_CHUNK = 1 << 16  # the polled path's read size: a cancel waits for at most one of these
POLL_S = 0.25
GRACE_S = 2.0  # how long a cancel waits for the worker thread to end before reporting anyway
WORKER_NAME = "lora-studio-hf-download"

KEPT = "download cancelled (the partial file is kept in the staging folder for a resume)"
ARRIVED = "download cancelled (the file had arrived in the staging folder; a retry uses it)"
BACKGROUND = ("download cancelled; huggingface_hub could not be interrupted, so the transfer finishes in the "
              "background into the staging folder (nothing is put in the LoRA folder; a retry uses what it fetched)")


class TransferStopped(Exception):
    """Raised inside ``huggingface_hub``'s download loop to end a cancelled transfer."""


@dataclass
class ByteSink:
    """Where the bytes are reported and the cancel flag read, for one download."""

    progress: Callable[[int, int, str], None] | None
    should_stop: Callable[[], bool]
    total: int = 0  # from the metadata request; 0: unknown
    min_interval: float = field(default_factory=lambda: 1.0 / MAX_REPORTS_PER_S)
    _last: float = field(default=-1e9, init=False, repr=False)
    _done: int = field(default=-1, init=False, repr=False)

    def report(self, done: int, total: int | None = None, *, force: bool = False) -> None:
        """Report ``done`` bytes of ``total`` (throttled; a change to the final size is always reported)."""
        total = self.total or int(total or 0)
        if self.progress is None or done == self._done:
            return
        now = time.monotonic()
        if not force and now - self._last < self.min_interval and not (total and done >= total):
            return
        self._last, self._done = now, done
        self.progress(max(0, done), total, "downloading")


def accepts_tqdm_class(hub: Any) -> bool:
    """Whether this ``huggingface_hub``'s ``hf_hub_download`` takes ``tqdm_class``."""
    try:
        return "tqdm_class" in inspect.signature(hub.hf_hub_download).parameters
    except (TypeError, ValueError):
        return False


def bar_class(sink: ByteSink) -> type:
    """A tqdm-compatible class reporting to ``sink`` (see the module docstring for what is called)."""

    class _Bar:
        def __init__(self, *args: Any, total: int | None = None, initial: int = 0, desc: str | None = None,
                     **kwargs: Any) -> None:
            self.n = int(initial or 0)
            self.total = total
            self.desc = desc
            if sink.should_stop():
                raise TransferStopped()
            sink.report(self.n, total)

        def __enter__(self) -> _Bar:
            return self

        def __exit__(self, *exc: Any) -> None:
            self.close()

        def update(self, n: int | float | None = 1) -> None:
            self.n += int(n or 0)
            if sink.should_stop():
                raise TransferStopped()
            sink.report(self.n, self.total)

        def update_transfer(self, n: int | float | None = 1) -> None:
            if sink.should_stop():  # network bytes (Xet): the file bytes come through update()
                raise TransferStopped()

        def set_postfix_str(self, s: str = "", refresh: bool = True) -> None:
            pass

        def refresh(self) -> None:
            pass

        def close(self) -> None:
            pass

    return _Bar


def incomplete_size(staging: str) -> int:
    """The size of the largest ``*.incomplete`` blob under ``staging`` (0 when there is none)."""
    sizes = []
    for path in glob.glob(os.path.join(glob.escape(staging), "**", "*.incomplete"), recursive=True):
        try:
            sizes.append(os.path.getsize(path))
        except OSError:
            pass
    return max(sizes, default=0)


def _stop_hook(hub: Any, should_stop: Callable[[], bool]) -> Callable[[], None] | None:
    """Make the calling thread's own ``huggingface_hub`` session check ``should_stop`` between body chunks;
    the function that undoes it, or ``None`` where the library has no such per-thread ``requests.Session``."""
    get_session = getattr(hub, "get_session", None)
    if get_session is None:
        return None
    try:
        import requests

        session = get_session()
    except Exception:
        return None
    if not isinstance(session, requests.Session):
        return None

    def hook(response: Any, *args: Any, **kwargs: Any) -> Any:
        if getattr(response.request, "method", "") != "GET":
            return response
        plain = response.iter_content

        def iter_content(chunk_size: int | None = 1, decode_unicode: bool = False) -> Any:
            size = min(chunk_size or NET_CHUNK, NET_CHUNK)
            for chunk in plain(chunk_size=size, decode_unicode=decode_unicode):
                if should_stop():
                    raise TransferStopped()
                yield chunk

        response.iter_content = iter_content
        return response

    hooks = session.hooks.setdefault("response", [])
    hooks.append(hook)

    def undo() -> None:
        try:
            hooks.remove(hook)
        except ValueError:
            pass

    return undo


@dataclass
class _Outcome:
    path: str | None = None
    error: BaseException | None = None


def download_polled(hub: Any, call: Callable[[], str], staging: str, sink: ByteSink) -> str:
    """Run ``call()`` (an ``hf_hub_download``) in a worker thread, reporting the growing blob's size;
    :class:`Cancelled` when ``sink.should_stop()`` turns true. Other errors are the call's own."""
    out = _Outcome()

    def work() -> None:
        undo = _stop_hook(hub, sink.should_stop)
        try:
            out.path = call()
        except BaseException as exc:  # handed to the waiting thread
            out.error = exc
        finally:
            if undo is not None:
                undo()

    worker = threading.Thread(target=work, name=WORKER_NAME, daemon=True)
    worker.start()
    while True:
        worker.join(POLL_S)
        if not worker.is_alive():
            break
        sink.report(incomplete_size(staging))
        if sink.should_stop():
            worker.join(GRACE_S)
            if worker.is_alive():
                raise Cancelled(BACKGROUND)
            break
    if isinstance(out.error, TransferStopped):
        raise Cancelled(KEPT)
    if sink.should_stop():
        raise Cancelled(ARRIVED if out.error is None else KEPT)
    if out.error is not None:
        raise out.error
    assert out.path is not None
    return out.path


def download_with_progress(hub: Any, staging: str, sink: ByteSink, **kwargs: Any) -> str:
    """``hub.hf_hub_download(**kwargs)`` with byte progress and cancel (see the module docstring)."""
    if accepts_tqdm_class(hub):
        try:
            path = str(hub.hf_hub_download(tqdm_class=bar_class(sink), **kwargs))
        except TransferStopped:
            raise Cancelled(KEPT if incomplete_size(staging) else
                            "download cancelled (this huggingface_hub deletes the partial file, so a retry "
                            "starts over)") from None
    else:
        path = download_polled(hub, lambda: str(hub.hf_hub_download(**kwargs)), staging, sink)
    try:
        sink.report(os.path.getsize(path), force=True)
    except OSError:
        pass
    return path
