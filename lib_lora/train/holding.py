"""Holding the GPU for training: the WebUI's generation queue lock, taken in a thread of its own, and the
WebUI's checkpoint moved out of GPU memory, both shared by every job the training service started and
handed back when the last of them ends.

Neither survives the process: after a restart a trainer that is still running is followed, but the lock
is not taken again.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from lib_lora.errors import TrainingError

log = logging.getLogger(__name__)


class LockHolder:
    """Holds a context manager (the WebUI's queue lock) in a thread of its own, so it is entered and
    exited on the same thread whatever thread asks — an ``RLock`` would refuse a release from another
    thread, and the release comes from the thread that saw the job end."""

    def __init__(self, factory: Callable[[], Any]) -> None:
        self._factory = factory
        self._acquired = threading.Event()
        self._release = threading.Event()
        self._thread: threading.Thread | None = None
        self.error: BaseException | None = None

    def acquire(self, timeout: float) -> bool:
        self._thread = threading.Thread(target=self._hold, name="lora-studio-queue-lock", daemon=True)
        self._thread.start()
        if self._acquired.wait(timeout) and self.error is None:
            return True
        self._release.set()  # if it is acquired later, it is let go at once
        return False

    def _hold(self) -> None:
        try:
            with self._factory():
                self._acquired.set()
                self._release.wait()
        except BaseException as exc:  # the lock could not be taken: acquire() reports it
            self.error = exc
            self._acquired.set()

    def release(self, timeout: float = 10.0) -> None:
        self._release.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    @property
    def held(self) -> bool:
        return self._acquired.is_set() and not self._release.is_set() and self.error is None


class GpuHold:
    """The queue lock and the freed VRAM, shared by every job the service started until the last ends."""

    def __init__(self, host: Any, lock_timeout: float) -> None:
        self.host = host
        self.lock_timeout = lock_timeout
        self._lock = threading.Lock()
        self._jobs: set[str] = set()
        self._pending = 0
        self._holder: LockHolder | None = None
        self._vram: Any = None

    @property
    def locked(self) -> bool:
        with self._lock:
            return self._holder is not None and self._holder.held

    @property
    def vram_freed(self) -> bool:
        with self._lock:
            return bool(getattr(self._vram, "freed", False))

    def reserve(self, *, hold_queue: bool, free_vram: bool) -> bool:
        """Take the queue lock (and free VRAM) for a job about to start; False when nothing is held."""
        if not hold_queue and not free_vram:
            return False
        with self._lock:
            if self._holder is None:
                holder = LockHolder(self.host.queue_lock)
                if not holder.acquire(self.lock_timeout):
                    if holder.error is not None:
                        raise TrainingError(f"cannot take the WebUI's generation queue: {holder.error}")
                    raise TrainingError(
                        f"the WebUI is still generating after {self.lock_timeout:.0f} s: start the training "
                        "when it has finished (training holds the generation queue)"
                    )
                self._holder = holder
            self._pending += 1
            if free_vram and self._vram is None:
                try:
                    self._vram = self.host.free_vram()
                except Exception as exc:  # training can still run; the report says why memory is short
                    log.warning("LoRA Studio: could not free the WebUI's GPU memory: %s", exc)
                    self._vram = None
            return True

    def holds(self, job_id: str) -> bool:
        with self._lock:
            return job_id in self._jobs

    def bind(self, job_id: str) -> None:
        with self._lock:
            self._pending = max(0, self._pending - 1)
            self._jobs.add(job_id)

    def cancel_reservation(self) -> None:
        with self._lock:
            self._pending = max(0, self._pending - 1)
            self._release_if_idle_locked()

    def release(self, job_id: str) -> bool:
        with self._lock:
            if job_id not in self._jobs:
                return False
            self._jobs.discard(job_id)
            self._release_if_idle_locked()
            return True

    def release_all(self) -> None:
        with self._lock:
            self._jobs.clear()
            self._pending = 0
            self._release_if_idle_locked()

    def _release_if_idle_locked(self) -> None:
        if self._jobs or self._pending:
            return
        token, self._vram = self._vram, None
        holder, self._holder = self._holder, None
        try:
            if token is not None:
                try:
                    self.host.restore_vram(token)
                except Exception as exc:  # never keep the queue locked because the model did not come back
                    log.warning("LoRA Studio: could not restore the WebUI's model to the GPU: %s", exc)
        finally:
            if holder is not None:
                holder.release()


__all__ = ["GpuHold", "LockHolder"]
